"""The processes in a cgroup, grouped into services (gunicorn, uvicorn, celery, pools), with counts
and where each count came from."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from obskit.cgroups import parse_cgroup_file, read_text
from obskit.errors import PermissionDenied, TargetNotFound
from obskit.proc import ProcFS, python_version_from_paths

from .confparse import (
    CELERY_OPTS,
    GUNICORN_OPTS,
    UVICORN_OPTS,
    gunicorn_config,
    parse_options,
    read_config,
    split_env_args,
)
from .model import Count, Proc, Service, ServiceMemory

ENV_KEYS = (
    "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "UVICORN_WORKERS", "PYTHON_CPU_COUNT", "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS", "LOKY_MAX_CPU_COUNT", "GOMAXPROCS", "CELERYD_CONCURRENCY",
)
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
BLAS_LIBS = ("openblas", "libmkl_rt", "libmkl_core", "libgomp", "libiomp", "libomp", "libblis", "flexiblas")


def cgroup_key(text: str) -> tuple[str, str] | None:
    """Which line of /proc/N/cgroup identifies "the same container": memory (v1), else v2, else cpu."""
    entries = parse_cgroup_file(text)
    for want in ("memory", "", "cpu"):
        for hid, ctrls, path in entries:
            if (want and want in ctrls) or (not want and hid == "0" and not ctrls):
                return want or "0", path
    return None


def in_cgroup(text: str, key: tuple[str, str]) -> bool:
    ctrl, base = key
    for hid, ctrls, path in parse_cgroup_file(text):
        if (ctrl == "0" and hid == "0" and not ctrls) or ctrl in ctrls:
            return path == base or base == "/" or path.startswith(base.rstrip("/") + "/")
    return False


def members(procfs: ProcFS, key: tuple[str, str] | None, exclude: int | None = None) -> list[int]:
    out: list[int] = []
    for pid in procfs.pids():
        if pid == exclude:
            continue
        if key is None:
            out.append(pid)
            continue
        text = read_text(procfs.path(pid, "cgroup"))
        if text is not None and in_cgroup(text, key):
            out.append(pid)
    return out


@dataclass
class Raw:
    proc: Proc
    cmdline: list[str]
    cpu_s: float
    cwd_base: str


def _kb_field(text: str | None, *keys: str) -> dict[str, int]:
    out: dict[str, int] = {}
    if not text:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in keys:
            try:
                out[k] = int(v.split()[0]) * 1024
            except (ValueError, IndexError):
                pass
    return out


def read_proc(procfs: ProcFS, pid: int) -> Raw | None:
    try:
        st = procfs.stat(pid)
        status = procfs.status(pid)
        cmd = procfs.cmdline(pid)
    except (TargetNotFound, PermissionDenied, IndexError):
        return None
    try:
        env_all = procfs.environ(pid)
    except (TargetNotFound, PermissionDenied):
        env_all = {}
    env = {k: env_all[k] for k in ENV_KEYS if k in env_all}
    roll = _kb_field(read_text(procfs.path(pid, "smaps_rollup")), "Pss", "Private_Clean", "Private_Dirty",
                     "Private_Hugetlb")
    uss = pss = shared = None
    if "Pss" in roll:
        uss = roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0) + roll.get("Private_Hugetlb", 0)
        pss = roll["Pss"]
        shared = max(0, pss - uss)
    maps: list[str] = []
    if cmd and st[1] != "sleep":
        maps = procfs.maps_paths(pid) if _maybe_python(cmd, st[1]) else []
    exe = procfs.exe(pid)
    version = python_version_from_paths(([exe] if exe else []) + maps)
    blas = sorted({os.path.basename(p).split(".so")[0] for p in maps
                   if any(b in os.path.basename(p) for b in BLAS_LIBS)})
    nspid = status.get("NSpid", "").split()
    rss = status.get("VmRSS")
    proc = Proc(
        pid=pid,
        ppid=int(st[3]),
        nspid=int(nspid[-1]) if nspid else None,
        name=st[1],
        command=(" ".join(cmd) if cmd else f"[{st[1]}]")[:300],
        role="plain",
        threads=int(status.get("Threads", "1") or 1),
        python_version=version,
        cpu_cores=None,
        rss=int(rss.split()[0]) * 1024 if rss else None,
        uss=uss,
        pss=pss,
        shared=shared,
        oom_score=_int(read_text(procfs.path(pid, "oom_score"))),
        oom_score_adj=_int(read_text(procfs.path(pid, "oom_score_adj"))),
        env=env,
        blas=blas,
    )
    cpu = cpu_seconds(procfs, pid)
    if cpu is None:
        return None
    return Raw(proc, cmd, cpu, str(procfs.path(pid, "cwd")))


def cpu_seconds(procfs: ProcFS, pid: int) -> float | None:
    try:
        return procfs.cpu_seconds(pid)
    except (TargetNotFound, PermissionDenied):
        return None


def _maybe_python(cmd: list[str], name: str) -> bool:
    text = " ".join(cmd[:3]).lower()
    return "python" in text or "python" in name.lower() or any(
        w in text for w in ("gunicorn", "uvicorn", "celery", "hypercorn", "daphne"))


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


# -- grouping ----------------------------------------------------------------


def _words(raw: Raw) -> str:
    return " ".join(os.path.basename(a) for a in raw.cmdline[:4]).lower()


def _kind(raw: Raw) -> str | None:
    w = _words(raw)
    full = " ".join(raw.cmdline).lower()
    if "gunicorn" in w:
        return "gunicorn"
    if "uvicorn" in w:
        return "uvicorn"
    if "celery" in w and ("worker" in full or "-c" in raw.cmdline):
        return "celery"
    return None


def _is_forkserver(raw: Raw) -> bool:
    return "multiprocessing.forkserver" in " ".join(raw.cmdline)


def _is_helper(raw: Raw, raws: dict[int, Raw]) -> bool:
    """multiprocessing's resource tracker and the forkserver itself (not the workers forked from it)."""
    if "multiprocessing.resource_tracker" in " ".join(raw.cmdline):
        return True
    parent = raws.get(raw.proc.ppid)
    return _is_forkserver(raw) and not (parent is not None and _is_forkserver(parent))


def _is_mp_child(raw: Raw) -> bool:
    text = " ".join(raw.cmdline)
    return ("multiprocessing.spawn" in text or "spawn_main" in text or "ForkPoolWorker" in text
            or "multiprocessing.forkserver" in text)


def group(raws: dict[int, Raw], host_cpus: int, affinity: int, config_reader: ConfigReader) -> list[Service]:
    kids: dict[int, list[int]] = {}
    for r in raws.values():
        kids.setdefault(r.proc.ppid, []).append(r.proc.pid)
    # A forkserver's children belong to the process that started the forkserver.
    for r in raws.values():
        if _is_helper(r, raws) and _is_forkserver(r):
            siblings = kids.setdefault(r.proc.ppid, [])
            siblings.extend(kids.get(r.proc.pid, []))
    claimed: set[int] = set()
    services: list[Service] = []
    for pid in sorted(raws):
        r = raws[pid]
        if pid in claimed:
            continue
        parent = raws.get(r.proc.ppid)
        kind = _kind(r)
        if kind and parent is not None and _kind(parent) == kind:
            continue  # a worker: handled with its master
        children = [raws[c] for c in kids.get(pid, []) if c in raws and not _is_helper(raws[c], raws)]
        if kind is None:
            if not r.proc.python_version:
                continue
            if parent is not None and (parent.proc.python_version or _kind(parent)) and (
                    _is_mp_child(r) or r.cmdline == parent.cmdline):
                continue
            if _is_helper(r, raws):
                continue
            pool = [c for c in children if _is_mp_child(c) or c.cmdline == r.cmdline]
            kind = "pool" if pool else "python"
            children = pool
        elif kind == "uvicorn":
            children = [c for c in children if _is_mp_child(c) or _kind(c) == "uvicorn"]
        workers = children
        r.proc.role = f"{kind}-master" if workers else kind
        for w in workers:
            w.proc.role = f"{kind}-worker"
            claimed.add(w.proc.pid)
        claimed.add(pid)
        services.append(_service(kind, r, workers, host_cpus, affinity, config_reader))
    return services


class ConfigReader:
    """Reads files as the target sees them: /proc/N/cwd for relative paths, /proc/N/root for absolute."""

    def __init__(self, procfs: ProcFS) -> None:
        self.procfs = procfs

    def read(self, pid: int, path: str) -> str | None:
        base = self.procfs.path(pid, "root") if path.startswith("/") else self.procfs.path(pid, "cwd")
        return read_config(Path(base) / path.lstrip("/"))


def cpu_count_seen(version: str | None, env: dict[str, str], host: int) -> tuple[int, str]:
    """What os.cpu_count() returns in the target, and why."""
    pcc = env.get("PYTHON_CPU_COUNT", "")
    if pcc.isdigit() and int(pcc) > 0 and _at_least(version, 3, 13):
        return int(pcc), f"PYTHON_CPU_COUNT={pcc}"
    return host, f"{host} is the host CPU count"


def _at_least(version: str | None, major: int, minor: int) -> bool:
    if not version:
        return False
    try:
        a, b = version.split(".")[:2]
        return (int(a), int(b)) >= (major, minor)
    except ValueError:
        return False


def shape(n: int, cpu: int, why: str, affinity: int, thread_pool: bool = True) -> str:
    """Explain a count by the formula that produces it from a CPU count, where one matches
    (``thread_pool``: ThreadPoolExecutor's default is a candidate, for thread counts only)."""
    if cpu > 1 or n > 1:
        if n == 2 * cpu + 1:
            return f"{n} = 2×{cpu}+1 where {why}"
        if n == 2 * cpu:
            return f"{n} = 2×{cpu} where {why}"
        if n == cpu:
            return f"{n} = os.cpu_count() where {why}"
        if n == 4 * cpu:
            return f"{n} = 4×{cpu} where {why}"
        if thread_pool and n == min(32, cpu + 4):
            return f"{n} = min(32, {cpu}+4) (ThreadPoolExecutor default) where {why}"
        if affinity != cpu and n == affinity:
            return f"{n} = the affinity count (os.process_cpu_count())"
    return str(n)


def _service(kind: str, master: Raw, workers: list[Raw], host: int, affinity: int, reader: ConfigReader) -> Service:
    env = master.proc.env
    cpu, why = cpu_count_seen(master.proc.python_version, env, host)
    running = len(workers)
    threads = None
    worker_class = None
    preload = None
    max_requests = None
    if kind == "gunicorn":
        count, threads, worker_class, preload, max_requests = _gunicorn(master, running, cpu, why, affinity, reader)
    elif kind == "uvicorn":
        opts = parse_options(master.cmdline, UVICORN_OPTS)
        if "workers" in opts:
            count = _count(opts["workers"], "cmdline", f"--workers {opts['workers']}", cpu, why, affinity)
        elif "UVICORN_WORKERS" in env:
            count = _count(env["UVICORN_WORKERS"], "env", "UVICORN_WORKERS", cpu, why, affinity)
        elif "WEB_CONCURRENCY" in env:
            count = _count(env["WEB_CONCURRENCY"], "env", "WEB_CONCURRENCY", cpu, why, affinity)
        else:
            count = Count(1, "default", "1 (uvicorn's default: the server runs in this process)")
    elif kind == "celery":
        opts = parse_options(master.cmdline, CELERY_OPTS)
        worker_class = opts.get("pool", "prefork")
        if "concurrency" in opts:
            count = _count(opts["concurrency"], "cmdline", f"-c {opts['concurrency']}", cpu, why, affinity)
        else:
            count = Count(cpu, "default", f"{shape(cpu, cpu, why, affinity)} (celery's default concurrency)")
    elif kind == "pool":
        count = Count(running, "observed", f"{shape(running, cpu, why, affinity)} (children running)"
                      + (" — the default of Pool()/ProcessPoolExecutor()" if running == cpu else ""))
    else:
        count = Count(1, "observed", "1 (a single process)")
    procs = [master, *workers] if workers else [master]
    if threads is None:
        observed = max(w.proc.threads for w in (workers or [master]))
        threads = Count(observed, "observed", f"{observed} threads per process (observed, incl. the main thread)")
    blas = _native_threads(procs, affinity)
    return Service(
        kind=kind,
        master_pid=master.proc.pid,
        command=master.proc.command,
        python_version=master.proc.python_version,
        workers=count,
        running_workers=running,
        worker_pids=[w.proc.pid for w in workers],
        threads_per_worker=threads,
        native_threads=blas,
        worker_class=worker_class,
        preload=preload,
        max_requests=max_requests,
        memory=_memory(master, workers, count.value),
    )


def _count(value: str, source: str, where: str, cpu: int, why: str, affinity: int, thread_pool: bool = False,
           literal: bool = False) -> Count:
    """A count set explicitly.  A literal on the command line is reported as such; a value from the
    environment or a config file is explained by a CPU-count formula where one matches (an
    entrypoint or config may have derived it), ThreadPoolExecutor's only for thread counts."""
    try:
        n = int(value)
    except ValueError:
        return Count(0, source, f"{where}: {value!r} is not a number")
    if source == "cmdline" or literal:
        return Count(n, source, where)
    s = shape(n, cpu, why, affinity, thread_pool)
    return Count(n, source, f"{where}" if s == str(n) else f"{where}: {s}")


def _gunicorn(master: Raw, running: int, cpu: int, why: str, affinity: int, reader: ConfigReader
              ) -> tuple[Count, Count | None, str | None, bool, int | None]:
    env = master.proc.env
    cmd = parse_options(master.cmdline[1:], GUNICORN_OPTS)
    envargs = parse_options(split_env_args(env.get("GUNICORN_CMD_ARGS", "")), GUNICORN_OPTS)
    cfg_path = cmd.get("config") or envargs.get("config") or "gunicorn.conf.py"
    cfg_text = reader.read(master.proc.pid, cfg_path.removeprefix("python:"))
    cfg = gunicorn_config(cfg_text, cpu, env) if cfg_text else None

    def pick(key: str) -> tuple[str, str, str] | None:
        # gunicorn's precedence: command line > GUNICORN_CMD_ARGS > config file > defaults.
        if key in cmd:
            return cmd[key], "cmdline", f"{GUNICORN_OPTS[key][0]} {cmd[key]}"
        if key in envargs:
            return envargs[key], "env", f"GUNICORN_CMD_ARGS {GUNICORN_OPTS[key][0]} {envargs[key]}"
        if cfg and key in cfg.values:
            return str(cfg.values[key]), "config", f"{cfg_path}: {cfg.sources[key]}"
        return None

    def literal(key: str, source: str) -> bool:
        """A config file value written as a number, not computed from the CPU count."""
        return source == "config" and cfg is not None and key not in cfg.used_cpu_count

    w = pick("workers")
    if w is not None:
        workers = _count(w[0], w[1], w[2], cpu, why, affinity, literal=literal("workers", w[1]))
    elif "WEB_CONCURRENCY" in env:
        workers = _count(env["WEB_CONCURRENCY"], "env", "WEB_CONCURRENCY", cpu, why, affinity)
    else:
        workers = Count(1, "default", "1 (gunicorn's default)")
    t = pick("threads")
    threads = _count(t[0], t[1], t[2], cpu, why, affinity, thread_pool=True,
                     literal=literal("threads", t[1])) if t else None
    k = pick("worker_class")
    wc = k[0] if k else ("gthread" if threads and threads.value > 1 else "sync")
    p = pick("preload_app")
    preload = bool(p and p[0].lower() in ("true", "1"))
    m = pick("max_requests")
    try:
        max_requests = int(m[0]) if m else None
    except ValueError:
        max_requests = None
    return workers, threads, wc, preload, max_requests


def _native_threads(procs: list[Raw], affinity: int) -> Count | None:
    libs = sorted({lib for r in procs for lib in r.proc.blas})
    env = procs[0].proc.env
    set_vars = {k: env[k] for k in BLAS_ENV if k in env}
    if not libs and not set_vars:
        return None
    if set_vars:
        k, v = next(iter(set_vars.items()))
        try:
            return Count(int(v), "env", f"{k}={v}" + (f" ({', '.join(libs)} loaded)" if libs else ""))
        except ValueError:
            pass
    return Count(affinity, "default", f"{affinity} per process = the CPUs it may run on "
                 f"({', '.join(libs)} loaded, no OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/MKL_NUM_THREADS)")


def _memory(master: Raw, workers: list[Raw], configured: int) -> ServiceMemory:
    procs = [master, *workers]
    shared_vals = [r.proc.shared for r in procs if r.proc.shared is not None]
    shared = sum(shared_vals) if shared_vals else None
    wuss = [r.proc.uss for r in workers if r.proc.uss is not None]
    if not workers:
        uss = master.proc.uss
        proj = uss + (shared or 0) if uss is not None else None
        return ServiceMemory(uss, None, None, shared, proj, proj, "USS + shared")
    med = int(statistics.median(wuss)) if wuss else None
    mx = max(wuss) if wuss else None
    m_uss = master.proc.uss or 0
    proj = m_uss + configured * med + (shared or 0) if med is not None else None
    worst = m_uss + configured * mx + (shared or 0) if mx is not None else None
    formula = "master USS + N × median worker USS + Σ(PSS − USS)"
    return ServiceMemory(master.proc.uss, med, mx, shared, proj, worst, formula)
