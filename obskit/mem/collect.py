"""`obskit mem` collector: one snapshot of a process (tree), or samples over a watch window."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from obskit.errors import ObskitError, PermissionDenied, TargetExited, TargetNotFound
from obskit.mem.growth import Fit, fit
from obskit.mem.smaps import ProcessMemory, Totals, read_process, read_rollup
from obskit.proc import ProcessFacts, ProcFS, classify_roles

VERDICT_ORDER = {"too-few-samples": -1, "steady": 0, "growing": 1, "leak-suspected": 2}


@dataclass
class PythonMemory:
    """Python-level numbers from the agent in the target (when it has one)."""

    tracked_objects: int
    top_types: list[tuple[str, int]]
    gc_count: list[int]
    cost_s: float


@dataclass
class TypeGrowth:
    type: str
    start: int
    end: int
    delta: int


@dataclass
class Series:
    pid: int
    t: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    pss: list[int] = field(default_factory=list)
    uss: list[int] = field(default_factory=list)
    swap: list[int] = field(default_factory=list)
    exited_at: float | None = None
    fit: Fit | None = None


@dataclass
class Watch:
    interval_s: float
    duration_s: float
    interrupted: bool
    series: list[Series]
    total_pss: Series | None  # the whole tree (with -s): PSS adds up without double counting
    verdict: str
    type_growth: list[TypeGrowth] = field(default_factory=list)


@dataclass
class MemReport:
    SCHEMA = "obskit.mem/1"

    pid: int
    processes: list[ProcessMemory]
    total: Totals
    python: PythonMemory | None = None
    watch: Watch | None = None
    notes: list[str] = field(default_factory=list)


def tree(fs: ProcFS, pid: int, subprocesses: bool) -> dict[int, str]:
    """pid → role for the target (and its descendants with -s)."""
    if not fs.exists(pid):
        raise TargetNotFound(f"process {pid} not found", "check the PID with `obskit ps`", pid=pid)
    pids = [pid, *(fs.descendants(pid) if subprocesses else [])]
    facts = {p: f for p, f in ((p, _facts(fs, p)) for p in pids) if f is not None}
    if pid not in facts:
        raise TargetNotFound(f"process {pid} exited", "check the PID with `obskit ps`", pid=pid)
    classify_roles(facts)
    return {p: f.role for p, f in facts.items()}


def snapshot(pid: int, *, subprocesses: bool = False, proc_root: str = "/proc", detail: bool = True) -> MemReport:
    fs = ProcFS(proc_root)
    if fs.is_zombie(pid):
        raise fs.zombie_error(pid)
    roles = tree(fs, pid, subprocesses)
    procs = [read_process(fs, pid, role=roles[pid], detail=detail)]
    procs += [pm for pm in (_read(fs, p, role, detail) for p, role in roles.items() if p != pid) if pm is not None]
    total = Totals()
    for pm in procs:
        for name in ("rss", "pss", "uss", "shared", "swap", "anonymous"):
            setattr(total, name, getattr(total, name) + getattr(pm.total, name))
    report = MemReport(pid, procs, total)
    if len(procs) > 1:
        report.notes.append("the RSS total counts shared pages once per process; PSS adds up correctly")
    return report


def _facts(fs: ProcFS, pid: int) -> ProcessFacts | None:
    try:
        return fs.facts(pid)
    except (TargetNotFound, PermissionDenied):
        return None


def _read(fs: ProcFS, pid: int, role: str, detail: bool) -> ProcessMemory | None:
    try:
        return read_process(fs, pid, role=role, detail=detail)
    except (TargetNotFound, PermissionDenied):
        return None  # a worker that exited (or is not ours) meanwhile


def python_memory(pid: int, *, proc_root: str = "/proc", limit: int = 15, types: bool = False) -> PythonMemory | None:
    """Numbers from the target's agent, or None without one.

    Counting objects by type walks every GC-tracked object holding the GIL (~0.5 µs per
    object: 150 ms for 300k objects), so it is opt-in; the plain count costs ~20 ms there.
    """
    from obskit.agent.client import try_connect

    client = try_connect(pid, proc_root=proc_root)
    if client is None:
        return None
    try:
        types_reply = client.request("types", limit=limit, count_only=not types)
        gcr = client.request("gc")
    except ObskitError:
        return None
    return PythonMemory(
        tracked_objects=int(types_reply["tracked"]),
        top_types=[(str(n), int(c)) for n, c in types_reply["types"]],
        gc_count=[int(x) for x in gcr["gc"]["count"]],
        cost_s=float(types_reply["cost_s"]),
    )


def watch(
    report: MemReport,
    *,
    duration: float,
    interval: float,
    proc_root: str = "/proc",
    with_agent: bool = True,
    types: bool = False,
    on_sample: Any = None,
) -> Watch:
    """Sample smaps_rollup of every process in ``report`` until ``duration`` passes or Ctrl-C."""
    fs = ProcFS(proc_root)
    series = {pm.pid: Series(pm.pid) for pm in report.processes}
    agent_start = python_memory(report.pid, proc_root=proc_root, limit=200, types=types) if with_agent else None
    t0 = time.monotonic()
    interrupted = False
    tick = 0
    try:
        while True:
            now = time.monotonic() - t0
            alive = 0
            for s in series.values():
                if s.exited_at is not None:
                    continue
                try:
                    tot = read_rollup(fs, s.pid)
                except (TargetNotFound, PermissionDenied):
                    s.exited_at = now
                    continue
                alive += 1
                s.t.append(now)
                s.rss.append(tot.rss)
                s.pss.append(tot.pss)
                s.uss.append(tot.uss)
                s.swap.append(tot.swap)
            if on_sample is not None:
                on_sample(now, series)
            if alive == 0 or now >= duration:
                break
            tick += 1
            # Deadline-based ticks: a slow read does not stretch the window.
            time.sleep(max(0.0, min(t0 + tick * interval, t0 + duration) - time.monotonic()))
    except KeyboardInterrupt:
        interrupted = True
    main = series[report.pid]
    if len(main.t) < 2 and main.exited_at is not None:
        raise TargetExited(f"process {report.pid} exited during the watch", "nothing to fit", pid=report.pid)
    for s in series.values():
        s.fit = fit(s.t, [float(v) for v in s.rss]) if s.t else None
    total: Series | None = None
    if len(series) > 1:
        total = Series(report.pid)
        n = min(len(s.t) for s in series.values() if s.t)
        full = [s for s in series.values() if len(s.t) >= n]
        total.t = main.t[:n]
        total.pss = [sum(s.pss[i] for s in full) for i in range(n)]
        total.fit = fit(total.t, [float(v) for v in total.pss])
    verdicts = [s.fit.verdict for s in series.values() if s.fit] + ([total.fit.verdict] if total and total.fit else [])
    w = Watch(interval, time.monotonic() - t0, interrupted, list(series.values()), total,
              max(verdicts, key=lambda v: VERDICT_ORDER.get(v, 0)) if verdicts else "too-few-samples")
    if agent_start is not None:
        agent_end = python_memory(report.pid, proc_root=proc_root, limit=200, types=types)
        if agent_end is not None:
            report.python = agent_end
            w.type_growth = type_growth(agent_start.top_types, agent_end.top_types)
    return w


def type_growth(before: list[tuple[str, int]], after: list[tuple[str, int]], limit: int = 10) -> list[TypeGrowth]:
    b, a = dict(before), dict(after)
    rows = [TypeGrowth(k, b.get(k, 0), a.get(k, 0), a.get(k, 0) - b.get(k, 0)) for k in set(a) | set(b)]
    rows = [r for r in rows if r.delta > 0]
    rows.sort(key=lambda r: -r.delta)
    return rows[:limit]
