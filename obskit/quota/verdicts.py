"""Findings and recommendations, each with the formula that produced it."""

from __future__ import annotations

import math

from obskit.output import human_bytes
from obskit.severity import Severity

from .model import (
    CpuBudget,
    Evidence,
    Finding,
    MemoryBudget,
    OomForecast,
    PidsBudget,
    Proc,
    Recommendation,
    Service,
)
from .services import BLAS_ENV, _at_least

HEADROOM = 0.9  # size for 90% of the memory limit: the kernel, page cache and spikes need the rest
FALLBACK_WORKER_BYTES = 256 * 1024 * 1024  # Heroku's per-worker figure when nothing is measured
BUSY_CORES = 0.1  # a worker using more than this over the window counts as CPU-busy


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x) >= 0.01 else f"{x:.3f}"


def size_services(services: list[Service], cpu: CpuBudget, mem: MemoryBudget, others_bytes: int,
                  footprint: dict[int, int] | None = None) -> None:
    """Workers by CPU and by memory (the smaller wins) for each service.

    ``footprint`` is each service's memory now (by master pid): the other services keep theirs.
    """
    L = cpu.effective
    footprint = footprint or {}
    for s in services:
        rest = others_bytes + sum(v for k, v in footprint.items() if k != s.master_pid)
        if s.kind == "python":
            continue
        async_like = s.kind != "gunicorn" or (s.worker_class or "sync") not in ("sync", "gthread")
        if async_like:
            by_cpu = max(1, int(L + 0.5))
            cpu_rule = f"max(1, round_half_up({_fmt(L)})) = {by_cpu}"
        else:
            by_cpu = 2 * math.ceil(L) + 1
            cpu_rule = f"2×ceil({_fmt(L)})+1 = {by_cpu}"
        s.recommended_by_cpu = by_cpu
        formula = f"by CPU: {cpu_rule}"
        m = s.memory
        if mem.limit is not None and m is not None:
            per = m.worker_uss_max or m.worker_uss_median or FALLBACK_WORKER_BYTES
            fixed = (m.master_uss or 0) + (m.shared or 0) + rest
            avail = mem.limit * HEADROOM - fixed
            by_mem = max(0, int(avail // per))
            s.recommended_by_memory = by_mem
            src = "largest worker USS" if m.worker_uss_max else "256 MiB (nothing measured)"
            formula += (f"; by memory: floor(({human_bytes(mem.limit)} × {HEADROOM} − {human_bytes(fixed)} master+shared"
                        f"+other processes) / {human_bytes(per)} {src}) = {by_mem}")
            rec = max(1, min(by_cpu, by_mem))
        else:
            rec = by_cpu
        s.recommended_workers = rec
        short = s.recommended_by_memory == 0
        s.recommendation_formula = formula + (f"; smaller wins → 0, kept at {rec}: memory is already short"
                                              if short else f"; smaller wins → {rec}")


def demand(s: Service) -> int:
    """Threads of this service that can want a CPU at once (a lone idle Python process counts 0)."""
    if s.kind == "python" and not s.cpu_busy_workers:
        return 0
    native = s.native_threads.value if s.native_threads else 1
    return max(s.workers.value, s.running_workers, 1) * max(1, native)


def findings(cpu: CpuBudget, mem: MemoryBudget, pids: PidsBudget, ev: Evidence, procs: list[Proc],
             services: list[Service], projected: int | None, projected_formula: str, oom: OomForecast) -> list[Finding]:
    out: list[Finding] = []
    L = cpu.effective
    if cpu.limit is None:
        out.append(Finding("cpu-unlimited", "info", "no CPU limit",
                           f"no cpu quota on any visible level: the budget is the {cpu.affinity} CPUs this "
                           "process may run on; CPU requests (shares/weight) are scheduling weights, not a budget"))
    total_demand = sum(demand(s) for s in services)
    if total_demand and total_demand / L > 2:
        thr = ev.throttle_ratio or 0.0
        sev: Severity = "error" if thr >= 0.25 and any(s.cpu_busy_workers for s in services) else "warning"
        parts = ", ".join(f"{s.kind} {demand(s)}" for s in services if demand(s) > 1) or "1"
        out.append(Finding(
            "cpu-oversubscribed", sev, f"{total_demand} runnable workers×threads on {_fmt(L)} CPUs",
            f"{parts}; {total_demand / L:.1f}× the effective CPUs"
            + (f"; throttled in {thr:.0%} of periods" if thr else ""),
            "Σ workers × native threads ÷ effective CPUs > 2"))
    if ev.throttle_ratio is not None and ev.window and ev.window.throttled:
        r = ev.throttle_ratio
        if r >= 0.1:
            out.append(Finding(
                "cpu-throttled", "error" if r >= 0.5 else "warning", f"throttled in {r:.0%} of CFS periods",
                f"{ev.window.throttled}/{ev.window.periods} periods, {ev.window.throttled_s:.2f}s stalled over "
                f"{ev.window_s:.1f}s", "Δnr_throttled ÷ Δnr_periods ≥ 10%"))
    if ev.lifetime_throttle_ratio is not None and ev.lifetime_throttle_ratio >= 0.1 and ev.lifetime:
        out.append(Finding(
            "cpu-throttled-since-start", "warning", f"throttled in {ev.lifetime_throttle_ratio:.0%} of periods since start",
            f"{ev.lifetime.throttled}/{ev.lifetime.periods} periods, {ev.lifetime.throttled_s:.1f}s stalled in total",
            "nr_throttled ÷ nr_periods ≥ 10%"))
    if mem.limit is not None:
        if projected is not None and projected > mem.limit:
            out.append(Finding("oom-risk", "error", "projected memory at full scale-out exceeds the limit",
                               f"{human_bytes(projected)} > {human_bytes(mem.limit)}", projected_formula))
        elif projected is not None and projected > mem.limit * HEADROOM:
            out.append(Finding("oom-risk", "warning", "projected memory at full scale-out is near the limit",
                               f"{human_bytes(projected)} > {HEADROOM:.0%} of {human_bytes(mem.limit)}",
                               projected_formula))
        if mem.working_set is not None and mem.working_set > mem.limit * HEADROOM:
            out.append(Finding("memory-near-limit", "warning", "working set is near the memory limit",
                               f"{human_bytes(mem.working_set)} of {human_bytes(mem.limit)}",
                               "working set = current − inactive_file"))
    kills = ev.memory_events_delta.get("oom_kill", 0)
    total_kills = ev.memory_events.get("oom_kill", 0)
    if kills:
        out.append(Finding("oom-kills", "error", f"{kills} OOM kill(s) during the window", oom.explanation,
                           "Δ memory.events oom_kill (v1: memory.oom_control oom_kill)"))
    elif total_kills:
        out.append(Finding("oom-kills", "warning", f"{total_kills} OOM kill(s) since the cgroup was created",
                           oom.explanation, "memory.events oom_kill (v1: memory.oom_control oom_kill)"))
    full = ev.psi.get("memory", {}).get("full")
    if full is not None and full >= 5:
        out.append(Finding("memory-pressure", "warning", f"memory pressure: full avg10={full:.1f}%",
                           f"all tasks stalled on memory {full:.1f}% of the last 10 s ({ev.psi_scope})"))
    pys = [p for p in procs if p.python_version]
    if cpu.limit is not None and pys and cpu.host_cpus > math.ceil(cpu.limit):
        unset = [p for p in pys if "PYTHON_CPU_COUNT" not in p.env]
        if unset:
            out.append(Finding(
                "cpu-count-above-limit", "warning",
                f"os.cpu_count() returns {cpu.host_cpus} but the CPU limit is {_fmt(cpu.limit)}",
                f"{len(unset)} Python process(es) size pools from the host count (Python does not read cgroups)"))
            new = [p for p in unset if _at_least(p.python_version, 3, 13)]
            if new:
                out.append(Finding("python-cpu-count-unset", "warning", "PYTHON_CPU_COUNT is unset on Python 3.13+",
                                   f"{len(new)} process(es) on {new[0].python_version}: set "
                                   f"PYTHON_CPU_COUNT={max(1, math.ceil(cpu.limit))}"))
    for s in services:
        if s.recommended_workers is not None and s.workers.value > s.recommended_workers:
            out.append(Finding(f"workers-{s.kind}-{s.master_pid}", "warning",
                               f"{s.kind} runs {s.workers.value} workers; {s.recommended_workers} fit",
                               s.workers.provenance, s.recommendation_formula))
        if s.native_threads and s.native_threads.source == "default" and s.native_threads.value > 1 and (
                s.native_threads.value * max(1, s.running_workers) > 2 * L):
            out.append(Finding(f"blas-threads-{s.master_pid}", "warning",
                               f"{s.kind}: native thread pools of {s.native_threads.value} per process",
                               s.native_threads.explanation))
    threads = sum(p.threads for p in procs)
    if pids.limit is not None and threads >= 0.8 * pids.limit:
        out.append(Finding("pids-near-limit", "warning", f"{threads} threads of pids.max {pids.limit}",
                           "pids.max counts threads: fork/clone fail with EAGAIN at the limit"))
    return out


def recommendations(cpu: CpuBudget, services: list[Service], procs: list[Proc]) -> list[Recommendation]:
    out: list[Recommendation] = []
    L = cpu.effective
    for s in services:
        n = s.recommended_workers
        if n is None:
            continue
        if s.workers.value != n:
            setting = {
                "gunicorn": f"--workers {n}  (or WEB_CONCURRENCY={n})",
                "uvicorn": f"--workers {n}  (in Kubernetes prefer 1 per pod and more replicas)",
                "celery": f"--concurrency={n}  (and --max-memory-per-child)",
                "pool": f"Pool(processes={n}) / ProcessPoolExecutor(max_workers={n})",
            }.get(s.kind, str(n))
            out.append(Recommendation(f"workers-{s.master_pid}", setting, f"{s.kind} pid {s.master_pid}",
                                      s.recommendation_formula, f"now {s.workers.provenance}"))
        if s.kind == "gunicorn" and s.workers.value > 1 and not s.preload:
            out.append(Recommendation(f"preload-{s.master_pid}", "--preload  (and gc.freeze() in the pre_fork hook)",
                                      f"gunicorn pid {s.master_pid}", "shared = master PSS − USS, kept by COW",
                                      "load the app once before fork; gc.freeze() stops the GC un-sharing pages"))
        if s.kind == "gunicorn" and not s.max_requests:
            out.append(Recommendation(f"max-requests-{s.master_pid}", "--max-requests 1000 --max-requests-jitter 100",
                                      f"gunicorn pid {s.master_pid}", "recycle each worker after N requests",
                                      "bounds slow leaks per worker"))
        if s.native_threads and s.native_threads.source == "default":
            per = max(1, math.floor(L / max(1, s.running_workers or 1)))
            out.append(Recommendation(
                f"blas-{s.master_pid}", " ".join(f"{k}={per}" for k in BLAS_ENV), f"{s.kind} pid {s.master_pid}",
                f"max(1, floor({_fmt(L)} / {max(1, s.running_workers)} processes)) = {per}",
                "native pools size themselves from the CPUs visible, per process"))
    if cpu.limit is not None:
        n = max(1, math.ceil(cpu.limit))
        pys = [p for p in procs if p.python_version and "PYTHON_CPU_COUNT" not in p.env]
        if pys and cpu.host_cpus > n:
            note = "3.13+ only; earlier versions ignore it" if not any(
                _at_least(p.python_version, 3, 13) for p in pys) else "fixes os.cpu_count() and every pool default"
            out.append(Recommendation("python-cpu-count", f"PYTHON_CPU_COUNT={n}", "every Python process",
                                      f"ceil({_fmt(cpu.limit)}) = {n} (a positive integer, or Python will not start)",
                                      note))
    r = cpu.rounding
    out.append(Recommendation(
        "gomaxprocs", f"GOMAXPROCS={r['go125']}", "Go processes (comparison)",
        f"automaxprocs: max(1, floor({_fmt(L)})) = {r['automaxprocs']}; Go 1.25: min(affinity {cpu.affinity}, "
        f"max(2, ceil({_fmt(L)}))) = {r['go125']}; nproc: {r['nproc']}",
        "what Go runtimes in this cgroup would pick"))
    return out


def forecast(procs: list[Proc], services: list[Service], oom_group: bool | None) -> OomForecast:
    cand = [p for p in procs if p.oom_score is not None]
    if not cand:
        return OomForecast(None, None, None, None, "no oom_score readable")
    victim = max(cand, key=lambda p: (p.oom_score or 0, p.rss or 0))
    main = victim.nspid == 1
    master = next((s for s in services if victim.pid in s.worker_pids), None)
    led = next((s for s in services if s.master_pid == victim.pid and s.worker_pids), None)
    if oom_group:
        vis, why = True, "memory.oom.group=1: the whole cgroup is killed together; Kubernetes shows OOMKilled (137)"
    elif main:
        vis, why = True, "it is the container's main process: the container exits 137 and shows OOMKilled"
    elif master is not None:
        vis, why = False, (f"a {master.kind} worker: its master (pid {master.master_pid}) respawns it and the "
                           "container never shows OOMKilled; look at memory.events oom_kill and the kernel log")
    elif led is not None:
        vis, why = False, (f"the {led.kind} master: the service goes down with it, yet the container only shows "
                           "OOMKilled if that master is its main process (it is not); look at memory.events oom_kill")
    else:
        vis, why = False, ("not the container's main process: it dies alone, the container keeps running and "
                           "never shows OOMKilled; look at memory.events oom_kill and the kernel log")
    return OomForecast(victim.pid, victim.command[:200], victim.oom_score, vis,
                       f"the OOM killer would pick pid {victim.pid} (highest oom_score {victim.oom_score}); {why}")


def workers_for_cpu(kind: str, limit: float, worker_class: str | None = None) -> int:
    """Workers a CPU budget of ``limit`` cores sustains, by the rule :func:`size_services` applies."""
    async_like = kind != "gunicorn" or (worker_class or "sync") not in ("sync", "gthread")
    return max(1, int(limit + 0.5)) if async_like else 2 * math.ceil(limit) + 1
