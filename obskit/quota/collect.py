"""`obskit quota` collector: locate the cgroup, read budgets, sample the window, judge."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from obskit.cgroups import Roots, for_pid, parse_cpu_list, read_text
from obskit.errors import PermissionDenied, TargetNotFound
from obskit.proc import ProcFS

from .budgets import Counters, cpu_budget, memory_budget, pids_budget, read_counters
from .model import CgroupPath, Evidence, Proc, QuotaReport, Throttling
from .services import ConfigReader, Raw, cgroup_key, cpu_seconds, group, members, read_proc
from .verdicts import BUSY_CORES, demand, findings, forecast, recommendations, size_services


def default_roots(pid: int | None, proc: str = "/proc") -> Roots:
    if pid is None:
        return Roots(proc=proc, fs="/")
    # The target's own view of the filesystem, mounts included (works from a debug container).
    return Roots(proc=proc, fs=f"{proc}/{pid}/root")


def collect(pid: int | None = None, window: float = 5.0, roots: Roots | None = None,
            sleep: Callable[[float], None] = time.sleep, procfs: ProcFS | None = None) -> QuotaReport:
    """Budgets, workers and evidence of ``pid``'s cgroups (None: this process's).

    With ``roots`` (captured trees, ``--fs-root``) the target's mounts are resolved under
    ``roots.fs``; otherwise :func:`obskit.cgroups.for_pid` picks the mounts that hold the
    target's cgroup (this process's own, or the target's through /proc/PID/root).
    """
    explicit = roots is not None
    procfs = procfs or ProcFS(roots.proc if roots is not None else "/proc")
    roots = roots or default_roots(pid, str(procfs.root))
    who: int | str = pid if pid is not None else "self"
    if pid is not None and not procfs.path(pid, "stat").exists():
        raise TargetNotFound(f"process {pid} not found", "list processes with `obskit ps`", pid=pid)
    if pid is not None and procfs.is_zombie(pid):
        raise procfs.zombie_error(pid)
    warnings: list[str] = []
    started = time.monotonic()
    located = for_pid(procfs, pid, roots=roots if explicit else None)
    cg_text = located.cgroup_text
    found = located.hierarchies
    root_readable = os.access(roots.fs, os.R_OK | os.X_OK)
    if pid is not None and not root_readable and (explicit or not ({"cpu", "memory"} & set(found))):
        # The target's cgroup is only reachable through its own mounts, and they are refused.
        raise PermissionDenied(f"cannot read /proc/{pid}/root", "run as root or with CAP_SYS_PTRACE (kubectl debug "
                               "--profile=sysadmin)", pid=pid)
    if not explicit and located.view == "own":
        roots = Roots(proc=roots.proc, fs=located.fs, cgroupfs=roots.cgroupfs)
    if "cpu" not in found and "memory" not in found:
        where = " ".join(cg_text.split())[:200]
        warnings.append(f"no cpu or memory cgroup is visible through the mounts ({where}): budgets are the host's"
                        + ("; with --pid the target's own view is read through /proc/PID/root" if pid is None
                           else ""))
    host = _host_cpus(roots)
    affinity = _affinity(procfs, who, roots, host)
    cpu = cpu_budget(found.get("cpu"), found.get("cpuset"), host, affinity)
    mem = memory_budget(found.get("memory"))
    pids = pids_budget(found.get("pids"))
    for ctrl in ("cpu", "memory"):
        h = found.get(ctrl)
        if h is not None and not h.visible:
            warnings.append(f"{ctrl} cgroup {h.cgroup_path} is not visible under {h.mountpoint}")
    key = cgroup_key(cg_text)
    raws: dict[int, Raw] = {}
    # obskit itself is not part of the workload it judges.
    me = os.getpid() if procfs.is_live else None
    for p in members(procfs, key, me):
        r = read_proc(procfs, p)
        if r is not None:
            raws[p] = r
    c0 = read_counters(found, cpu.limiting_level, procfs)
    t0 = time.monotonic()
    spent = t0 - started
    interrupted = False
    try:
        if window > 0:
            sleep(window)
    except KeyboardInterrupt:
        interrupted = True
        warnings.append("interrupted: the window was cut short")
    t1 = time.monotonic()
    elapsed = t1 - t0
    c1 = read_counters(found, cpu.limiting_level, procfs)
    # --window 0 skips the window: no rate over a few microseconds (nor over a window cut shorter than MIN_WINDOW).
    measured = window > 0 and elapsed >= MIN_WINDOW
    if not measured:
        elapsed = 0.0
    for p, r in list(raws.items()):
        after = cpu_seconds(procfs, p)
        if after is None:
            if pid is not None and p == pid:
                warnings.append(f"process {pid} exited during the window")
            continue
        r.proc.cpu_cores = (after - r.cpu_s) / elapsed if measured else None
    ev = _evidence(c0, c1, elapsed, cpu.limit) if measured else _evidence(c1, c1, 0.0, cpu.limit, windowless=True)
    cpu_h, acct_h = found.get("cpu"), found.get("cpuacct")
    if ev.cpu_usage_cores is None or (cpu_h and acct_h and cpu_h.cgroup_path != acct_h.cgroup_path):
        # cpuacct accounts another cgroup than the quota (separate v1 hierarchies): add up the members.
        cores = [r.proc.cpu_cores for r in raws.values() if r.proc.cpu_cores is not None]
        if cores:
            ev.cpu_usage_cores = round(sum(cores), 4)
            ev.cpu_usage_of_limit = round(ev.cpu_usage_cores / cpu.limit, 4) if cpu.limit else None
            ev.cpu_usage_source = "processes"
    services = group(raws, host, affinity, ConfigReader(procfs))
    procs = [r.proc for r in raws.values()]
    by_pid = {r.proc.pid: r.proc for r in raws.values()}
    for s in services:
        ws = [by_pid[w] for w in s.worker_pids if w in by_pid] or [by_pid[s.master_pid]]
        s.cpu_busy_workers = sum(1 for w in ws if (w.cpu_cores or 0) > BUSY_CORES)
        s.parallel_demand = demand(s)
    in_service = {s.master_pid for s in services} | {w for s in services for w in s.worker_pids}
    others = sum((p.uss or 0) + (p.shared or 0) for p in procs if p.pid not in in_service)
    footprint = {s.master_pid: sum((by_pid[p].uss or 0) + (by_pid[p].shared or 0)
                                   for p in [s.master_pid, *s.worker_pids] if p in by_pid) for s in services}
    size_services(services, cpu, mem, others, footprint)
    projected, formula = _projection(services, others)
    oom = forecast(procs, services, mem.oom_group)
    finds = findings(cpu, mem, pids, ev, procs, services, projected, formula, oom)
    recs = recommendations(cpu, services, procs)
    versions = {h.version for h in found.values()}
    version = "hybrid" if versions == {1, 2} else ("v2" if versions == {2} else ("v1" if versions else "none"))
    kernel = read_text(procfs.root / "sys/kernel/osrelease")
    paths = [CgroupPath(c, h.version, h.cgroup_path, h.leaf, len(h.levels)) for c, h in sorted(found.items())]
    return QuotaReport(
        target_pid=pid,
        view="self" if pid is None else (f"/proc/{pid}/root" if located.view == "target" else "/"),
        cgroup_version=version,
        kernel=kernel.strip() if kernel else None,
        paths=paths,
        cpu=cpu,
        memory=mem,
        pids=pids,
        evidence=ev,
        processes=sorted(procs, key=lambda p: p.pid),
        services=services,
        oom=oom,
        findings=finds,
        recommendations=recs,
        warnings=warnings,
        interrupted=interrupted,
        collect_seconds=round(spent + (time.monotonic() - t1), 4),
    )


def _projection(services: list, others: int) -> tuple[int | None, str]:
    vals = [s.memory.projected for s in services if s.memory and s.memory.projected is not None]
    if not vals:
        return None, ""
    return sum(vals) + others, ("Σ services (master USS + N × median worker USS + Σ(PSS − USS)) "
                                "+ other processes' PSS")


def _host_cpus(roots: Roots) -> int:
    cpus = parse_cpu_list(read_text(roots.under_fs("/sys/devices/system/cpu/online")))
    return len(cpus) or os.cpu_count() or 1


def _affinity(procfs: ProcFS, who: int | str, roots: Roots, host: int) -> int:
    if who == "self" and procfs.is_live and hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    try:
        cpus = parse_cpu_list(procfs.status(who).get("Cpus_allowed_list"))  # type: ignore[arg-type]
    except (TargetNotFound, PermissionDenied):
        cpus = []
    return len(cpus) or host


MIN_WINDOW = 0.05  # seconds; below this no rate is computed


def _evidence(c0: Counters, c1: Counters, elapsed: float, limit: float | None, windowless: bool = False) -> Evidence:
    """Rates over the window (from c0 to c1) beside the lifetime counters; ``windowless``: lifetime only."""
    usage = None
    if c0.cpu_usage_s is not None and c1.cpu_usage_s is not None and elapsed > 0:
        usage = max(0.0, (c1.cpu_usage_s - c0.cpu_usage_s) / elapsed)
    win = None
    if c0.throttle and c1.throttle and not windowless:
        win = Throttling(c1.throttle.periods - c0.throttle.periods, c1.throttle.throttled - c0.throttle.throttled,
                         round(c1.throttle.throttled_s - c0.throttle.throttled_s, 6))
    delta = {} if windowless else {k: v - c0.memory_events.get(k, 0) for k, v in c1.memory_events.items()
                                   if k != "under_oom"}
    return Evidence(
        window_s=round(elapsed, 3),
        cpu_usage_cores=round(usage, 4) if usage is not None else None,
        cpu_usage_of_limit=round(usage / limit, 4) if usage is not None and limit else None,
        cpu_usage_source="cgroup" if usage is not None else None,
        window=win,
        lifetime=c1.throttle,
        throttle_ratio=win.ratio if win else None,
        lifetime_throttle_ratio=c1.throttle.ratio if c1.throttle else None,
        psi_scope=c1.psi_scope,
        psi=c1.psi,
        memory_events=c1.memory_events,
        memory_events_delta=delta,
    )


__all__ = ["Proc", "collect", "default_roots"]
