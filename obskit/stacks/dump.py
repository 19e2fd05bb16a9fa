"""Thread stacks of a live process: py-spy dumps, classified, grouped, and turned into findings.

``collect`` takes one dump (or ``count`` dumps ``interval`` apart with ``--watch``) and
returns a :class:`StacksReport`.  Ctrl-C or the target exiting during a watch keeps the
dumps already taken.
"""

from __future__ import annotations

import itertools
import os
import platform
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obskit.errors import ObskitError, TargetExited, TargetNotFound
from obskit.proc import ProcFS
from obskit.stacks.classify import Classification, FrameRef, ThreadState, classify


@dataclass
class StackFrame:
    name: str
    filename: str
    short_filename: str
    line: int
    locals: dict[str, str] | None = None

    def label(self) -> str:
        return f"{self.name} ({self.short_filename}:{self.line})" if self.line else f"{self.name} ({self.short_filename})"


@dataclass
class ThreadInfo:
    pid: int
    thread_id: int
    os_thread_id: int | None
    name: str
    state: ThreadState
    rule: str
    detail: str
    active: bool
    owns_gil: bool
    frames: list[StackFrame]
    group: int = 0

    @property
    def display(self) -> str:
        return f"{self.name or 'thread'} ({self.os_thread_id or self.thread_id})"


@dataclass
class StackGroup:
    """Threads of one process with the same stack and state ("3 threads: ...")."""

    id: int
    pid: int
    state: ThreadState
    detail: str
    count: int
    threads: list[str]
    frames: list[StackFrame]


@dataclass
class Finding:
    severity: str  # info | warning (obskit.severity)
    kind: str  # same_lock | gil_held | too_many_threads | stuck | thread_growth | asyncio
    pid: int
    message: str
    threads: list[str] = field(default_factory=list)


@dataclass
class ProcessStacks:
    pid: int
    command: str
    python_version: str | None
    thread_count: int
    states: dict[str, int]
    threads: list[ThreadInfo]
    groups: list[StackGroup]


@dataclass
class StuckThread:
    pid: int
    thread: str
    state: ThreadState
    frame: str
    seconds: float
    dumps: int
    wakeups: int | None  # context switches between dumps (py-spy's own excluded); 0 = never woke up


@dataclass
class WatchSummary:
    dumps: int
    interval_s: float
    span_s: float
    thread_counts: dict[str, list[int]]  # pid -> count per dump
    stuck: list[StuckThread]
    stopped_early: str | None = None


@dataclass
class StacksReport:
    SCHEMA = "obskit.stacks/1"

    pid: int
    subprocesses: bool
    locals: bool
    taken_at: float
    processes: list[ProcessStacks]
    findings: list[Finding]
    asyncio_tasks: str | None
    watch: WatchSummary | None = None
    skipped: list[str] = field(default_factory=list)  # worker processes that could not be dumped, and why


# -- syscall numbers of the states the classifier knows ------------------------------------------
_SYSCALLS = {
    "x86_64": {0: "read", 1: "write", 7: "poll", 17: "pread64", 19: "readv", 23: "select", 34: "pause",
               35: "nanosleep", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
               47: "recvmsg", 61: "wait4", 128: "rt_sigtimedwait", 130: "rt_sigsuspend", 202: "futex",
               230: "clock_nanosleep", 232: "epoll_wait", 247: "waitid", 270: "pselect6", 271: "ppoll",
               281: "epoll_pwait", 288: "accept4", 441: "epoll_pwait2"},
    "aarch64": {22: "epoll_pwait", 63: "read", 64: "write", 65: "readv", 67: "pread64", 72: "pselect6",
                73: "ppoll", 95: "waitid", 98: "futex", 101: "nanosleep", 115: "clock_nanosleep",
                133: "rt_sigsuspend", 137: "rt_sigtimedwait", 202: "accept", 203: "connect", 206: "sendto",
                207: "recvfrom", 211: "sendmsg", 212: "recvmsg", 242: "accept4", 260: "wait4", 441: "epoll_pwait2"},
}


def thread_syscall(fs: ProcFS, pid: int, tid: int, machine: str | None = None) -> str | None:
    """The system call thread ``tid`` is blocked in ("futex"), "running", or None when unknown.

    A thread just let go by the sampler's stop is briefly "running" on its way back into the
    system call it was blocked in, so "running" is read again a few times before it is believed.
    """
    text: list[str] | None = None
    for attempt in range(4):
        text = fs.syscall(pid, tid)
        if not text or text[0] != "running":
            break
        if attempt < 3:
            time.sleep(0.003)
    if not text:
        return None
    if text[0] == "running":
        return "running"
    try:
        nr = int(text[0])
    except ValueError:
        return None
    table = _SYSCALLS.get(machine or platform.machine(), {})
    name = table.get(nr, f"syscall {nr}")
    # Python < 3.11 sleeps with select(0, NULL, NULL, NULL, &tv): no file descriptors means a sleep.
    if name in ("select", "pselect6") and len(text) >= 5 and all(_hex(a) == 0 for a in text[1:5]):
        return "select_sleep"
    if name in ("poll", "ppoll") and len(text) >= 3 and _hex(text[2]) == 0:
        return "poll_sleep"
    return name


def _hex(value: str) -> int | None:
    try:
        return int(value, 16)
    except ValueError:
        return None


Switches = dict[tuple[int, int], int]


def context_switches(fs: ProcFS, pids: list[int]) -> Switches:
    """(pid, tid) -> voluntary + involuntary context switches, from /proc/PID/task/TID/status."""
    out: Switches = {}
    for pid in pids:
        try:
            tids = fs.tasks(pid)
        except ObskitError:
            continue
        for tid in tids:
            status = fs.task_status(pid, tid)
            if status is not None:
                out[(pid, tid)] = _switches(status)
    return out


def _switches(status: dict[str, str]) -> int:
    values = (status.get(k, "0").split()[:1] for k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
    return sum(int(v[0]) for v in values if v and v[0].isdigit())


class SourceLines:
    """Source lines of the target's files, read through /proc/PID/root so container paths resolve."""

    def __init__(self, fs: ProcFS) -> None:
        self.fs = fs
        self._cache: dict[tuple[int, str], list[str] | None] = {}

    def line(self, pid: int, filename: str, lineno: int) -> str | None:
        key = (pid, filename)
        if key not in self._cache:
            self._cache[key] = self._read(pid, filename)
        lines = self._cache[key]
        if lines is None or not 0 < lineno <= len(lines):
            return None
        return lines[lineno - 1]

    def _read(self, pid: int, filename: str) -> list[str] | None:
        if not filename.startswith("/"):
            return None
        for cand in (self.fs.path(pid, "root") / filename.lstrip("/"), Path(filename)):
            lines = _read_lines(cand)
            if lines is not None:
                return lines
        return None


def _read_lines(path: Path) -> list[str] | None:
    try:
        if path.stat().st_size > 5_000_000:
            return None
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return None


# -- one dump --------------------------------------------------------------------------------------
def parse_dump(
    raw: list[dict[str, Any]],
    *,
    fs: ProcFS | None = None,
    sources: SourceLines | None = None,
    machine: str | None = None,
) -> list[ThreadInfo]:
    """Classified threads from py-spy's ``dump --json`` output."""
    out: list[ThreadInfo] = []
    for t in raw:
        pid = int(t.get("pid") or 0)
        frames = [_frame(f) for f in t.get("frames") or []]
        refs = [FrameRef(f.name, f.filename, f.line) for f in frames]
        tid = t.get("os_thread_id")
        line = sources.line(pid, frames[0].filename, frames[0].line) if sources and frames else None
        syscall = thread_syscall(fs, pid, int(tid), machine) if fs is not None and tid else None
        c: Classification = classify(
            refs, active=bool(t.get("active")), owns_gil=bool(t.get("owns_gil")), source_line=line, syscall=syscall
        )
        out.append(
            ThreadInfo(
                pid=pid,
                thread_id=int(t.get("thread_id") or 0),
                os_thread_id=int(tid) if tid else None,
                name=str(t.get("thread_name") or ""),
                state=c.state,
                rule=c.rule,
                detail=c.detail,
                active=bool(t.get("active")),
                owns_gil=bool(t.get("owns_gil")),
                frames=frames,
            )
        )
    return out


def _frame(f: dict[str, Any]) -> StackFrame:
    filename = str(f.get("filename") or "")
    loc = f.get("locals")
    locals_: dict[str, str] | None = None
    if isinstance(loc, list):
        locals_ = {str(v.get("name")): str(v.get("repr")) for v in loc if isinstance(v, dict)}
    return StackFrame(
        name=str(f.get("name") or "?"),
        filename=filename,
        short_filename=str(f.get("short_filename") or filename.rsplit("/", 1)[-1]),
        line=int(f.get("line") or 0),
        locals=locals_,
    )


def group_threads(threads: list[ThreadInfo]) -> list[StackGroup]:
    """Identical stacks in the same state, biggest group first; sets ``ThreadInfo.group``."""
    buckets: dict[tuple[Any, ...], list[ThreadInfo]] = defaultdict(list)
    for t in threads:
        key = (t.pid, t.state, tuple((f.name, f.filename, f.line) for f in t.frames))
        buckets[key].append(t)
    ordered = sorted(buckets.values(), key=lambda ts: (-len(ts), ts[0].pid, ts[0].state.value, ts[0].display))
    groups: list[StackGroup] = []
    for i, members in enumerate(ordered, 1):
        for t in members:
            t.group = i
        first = members[0]
        groups.append(StackGroup(i, first.pid, first.state, first.detail, len(members), [t.display for t in members], first.frames))
    return groups


# -- findings --------------------------------------------------------------------------------------
def lock_findings(threads: list[ThreadInfo]) -> list[Finding]:
    """Two or more threads waiting at the same place: one lock, and who probably holds it."""
    out: list[Finding] = []
    by_site: dict[tuple[int, str, str, int], list[ThreadInfo]] = defaultdict(list)
    for t in threads:
        if t.state is ThreadState.WAITING_LOCK and t.frames and _is_lock_wait(t):
            f = t.frames[0]
            by_site[(t.pid, f.name, f.filename, f.line)].append(t)
    for (pid, name, filename, line), waiters in by_site.items():
        if len(waiters) < 2:
            continue
        site = waiters[0].frames[0].label()
        holder = _likely_holder(threads, pid, name, filename, line)
        msg = f"{len(waiters)} threads wait on the same lock at {site}"
        if holder is not None:
            where = holder.frames[0].label() if holder.frames else "?"
            msg += f"; probably held by {holder.display}, which is {holder.state.label} in {where}"
        out.append(Finding("warning", "same_lock", pid, msg, [t.display for t in waiters]))
    return out


def _is_lock_wait(t: ThreadInfo) -> bool:
    return t.detail.startswith("Lock.acquire") or t.rule in ("syscall:futex", "frame:threading.py:RLock.acquire")


def _likely_holder(threads: list[ThreadInfo], pid: int, name: str, filename: str, line: int) -> ThreadInfo | None:
    for t in threads:
        if t.pid != pid or not t.frames:
            continue
        f0 = t.frames[0]
        if (f0.name, f0.filename, f0.line) == (name, filename, line):
            continue
        if any(f.name == name and f.filename == filename for f in t.frames):
            return t
    return None


def thread_count_findings(threads: list[ThreadInfo], cpus: int) -> list[Finding]:
    out: list[Finding] = []
    per_pid: dict[int, list[ThreadInfo]] = defaultdict(list)
    for t in threads:
        per_pid[t.pid].append(t)
    limit = max(64, 8 * cpus)
    for pid, ts in per_pid.items():
        if len(ts) <= limit:
            continue
        idle = sum(t.state not in (ThreadState.RUNNING,) for t in ts)
        running = len(ts) - idle
        out.append(
            Finding(
                "warning",
                "too_many_threads",
                pid,
                f"{len(ts)} threads for {cpus} CPU(s): {running} running, {idle} waiting or idle; "
                "a pool sized far above the work it gets costs memory and scheduling (check max_workers/threads settings)",
            )
        )
    return out


def gil_findings(dumps: list[list[ThreadInfo]]) -> list[Finding]:
    """A thread holding the GIL in every dump starves the others of the interpreter."""
    if not dumps:
        return []
    holders = [{(t.pid, t.os_thread_id or t.thread_id): t for t in d if t.owns_gil} for d in dumps]
    common = set(holders[0])
    for h in holders[1:]:
        common &= set(h)
    out: list[Finding] = []
    for key in sorted(common, key=lambda k: (k[0], k[1])):
        t = holders[-1][key]
        where = t.frames[0].label() if t.frames else "?"
        others = sum(1 for x in dumps[-1] if x.pid == t.pid) - 1
        if others == 0:
            when = f"in all {len(dumps)} dumps" if len(dumps) > 1 else "during the dump"
            msg = (f"{t.display} held the GIL {when} (in {where}); it is the only Python thread of process "
                   f"{t.pid}, so no other thread waits for the GIL: CPU-bound Python (`obskit profile record` "
                   "shows where the time goes)")
            out.append(Finding("info", "gil_held", t.pid, msg, [t.display]))
        elif len(dumps) > 1:
            msg = f"{t.display} held the GIL in all {len(dumps)} dumps (in {where}); {others} other thread(s) of process {t.pid} cannot run Python meanwhile"
            out.append(Finding("warning", "gil_held", t.pid, msg, [t.display]))
        else:
            msg = f"{t.display} held the GIL during the dump (in {where}); use --watch to see whether it keeps it"
            out.append(Finding("info", "gil_held", t.pid, msg, [t.display]))
    return out


def watch_summary(
    dumps: list[list[ThreadInfo]],
    times: list[float],
    interval: float,
    switches: list[tuple[Switches, Switches]] | None = None,
) -> tuple[WatchSummary, list[Finding]]:
    """Stuck threads (same frame in every dump and, where measurable, no wake-up between dumps) and growth.

    ``switches`` holds, per dump, the context-switch counts read just before and just after it:
    a dump itself wakes every thread, so only the gaps between dumps count as the thread's own.
    """
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    counts: dict[str, list[int]] = defaultdict(list)
    pids = sorted({t.pid for d in dumps for t in d})
    for d in dumps:
        c = Counter(t.pid for t in d)
        for pid in pids:
            counts[str(pid)].append(c.get(pid, 0))
    findings: list[Finding] = []
    stuck: list[StuckThread] = []
    if len(dumps) > 1:
        first = {(t.pid, t.os_thread_id or t.thread_id): t for t in dumps[0]}
        for key, t0 in first.items():
            seen = [next((t for t in d if (t.pid, t.os_thread_id or t.thread_id) == key), None) for d in dumps]
            if any(s is None for s in seen):
                continue
            tops = {(s.frames[0].name, s.frames[0].filename, s.frames[0].line) if s and s.frames else None for s in seen}
            states = {s.state for s in seen if s is not None}
            if len(tops) != 1 or None in tops or len(states) != 1:
                continue
            state = states.pop()
            if state in (ThreadState.IDLE_POOL, ThreadState.IDLE_LOOP):
                continue
            last = seen[-1]
            assert last is not None
            tid = last.os_thread_id
            wakeups = _wakeups(switches, (t0.pid, tid)) if switches and tid else None
            if state is not ThreadState.RUNNING and wakeups:
                continue  # it woke up between dumps: contended or a timed wait, not stuck
            st = StuckThread(t0.pid, last.display, state, last.frames[0].label(), round(span, 2), len(dumps), wakeups)
            stuck.append(st)
            # A timed Event.wait/queue.get loop sits in the same frame by design; a lock acquire or hot loop does not.
            sev = "warning" if state is ThreadState.RUNNING or _is_lock_wait(last) else "info"
            findings.append(
                Finding(sev, "stuck", t0.pid, f"{st.thread} {state.label} in {st.frame} in all {len(dumps)} dumps"
                        f"{', never woke up' if wakeups == 0 else ''} (at least {span:.1f}s)", [st.thread])
            )
        for spid, series in counts.items():
            if series[-1] > series[0]:
                grew = series[-1] - series[0]
                rate = grew / span * 60 if span > 0 else 0.0
                findings.append(
                    Finding(
                        "warning",
                        "thread_growth",
                        int(spid),
                        f"process {spid}: thread count grew from {series[0]} to {series[-1]} in {span:.1f}s "
                        f"(+{rate:.0f}/min); threads that are started and never end are a leak",
                    )
                )
    return WatchSummary(len(dumps), interval, round(span, 3), dict(counts), stuck), findings


def _wakeups(switches: list[tuple[Switches, Switches]], key: tuple[int, int]) -> int | None:
    total = 0
    for (_, after), (before_next, _) in itertools.pairwise(switches):
        a, b = after.get(key), before_next.get(key)
        if a is None or b is None:
            return None
        total += max(0, b - a)
    return total


def asyncio_note(threads: list[ThreadInfo], versions: dict[int, str | None]) -> str | None:
    loop_pids = sorted({t.pid for t in threads if any(f.filename.endswith("asyncio/base_events.py") for f in t.frames)})
    if not loop_pids:
        return None
    notes = []
    for pid in loop_pids:
        v = versions.get(pid) or "unknown"
        notes.append(
            f"process {pid} runs an asyncio event loop; task introspection from outside is not available for "
            f"Python {v} (py-spy shows threads, not tasks); Python 3.14+ offers `python3.14 -m asyncio ps {pid}` "
            "and `python3.14 -m asyncio pstree " + str(pid) + "`"
        )
    return "; ".join(notes)


# -- collection --------------------------------------------------------------------------------------
DumpFn = Callable[[], list[dict[str, Any]]]


def collect(
    pid: int,
    *,
    subprocesses: bool = False,
    locals_: bool = False,
    count: int = 1,
    interval: float = 1.0,
    procfs: ProcFS | None = None,
    dump_fn: DumpFn | None = None,
    on_dump: Callable[[int, int], None] | None = None,
) -> StacksReport:
    """Dump ``pid`` ``count`` times ``interval`` seconds apart and build the report."""
    from obskit import attach

    fs = procfs or ProcFS()
    proc_root = str(fs.root)
    sources = SourceLines(fs)

    skipped: list[str] = []

    def default_dump() -> list[dict[str, Any]]:
        if not subprocesses:
            return attach.dump(pid, locals_=locals_, proc_root=proc_root)
        # py-spy's `dump --json --subprocesses` prints only the parent: dump each process instead.
        out = attach.dump(pid, locals_=locals_, proc_root=proc_root)
        for child in python_descendants(fs, pid):
            out += _dump_worker(child, locals_, proc_root, skipped)
        return out

    do_dump = dump_fn or default_dump
    dumps: list[list[ThreadInfo]] = []
    times: list[float] = []
    switches: list[tuple[Switches, Switches]] = []
    watched = [pid]
    stopped: str | None = None
    taken_at = time.time()
    for i in range(max(1, count)):
        # A signal (Ctrl-C, SIGTERM, SIGHUP) anywhere in a round ends the watch with the dumps taken so far.
        try:
            if i:
                time.sleep(interval)
            before = context_switches(fs, watched) if count > 1 else {}
            raw = do_dump()
            parsed = parse_dump(raw, fs=fs, sources=sources)
            after = context_switches(fs, sorted({t.pid for t in parsed} | {pid})) if count > 1 else {}
        except KeyboardInterrupt:
            stopped = "interrupted"
            break
        except (TargetExited, TargetNotFound) as e:
            if not dumps:
                raise
            stopped = f"target exited: {e.message}"
            break
        except ObskitError as e:
            if not dumps:
                raise
            stopped = f"dump failed: {e.message}"
            break
        times.append(time.monotonic())
        if count > 1:
            watched = sorted({t.pid for t in parsed} | {pid})
            switches.append((before, after))
        dumps.append(parsed)
        if on_dump is not None:
            try:
                on_dump(i + 1, count)
            except KeyboardInterrupt:
                stopped = "interrupted"
                break
    if not dumps:
        from obskit.errors import Interrupted

        raise Interrupted("interrupted before the first dump", "", pid=pid)
    threads = dumps[-1]
    versions = {p: _version(fs, p) for p in sorted({t.pid for t in threads} | {pid})}
    processes = build_processes(threads, fs, versions)
    cpus = _cpus(fs, pid)
    findings = lock_findings(threads) + gil_findings(dumps) + thread_count_findings(threads, cpus)
    watch = None
    if count > 1:
        watch, wf = watch_summary(dumps, times, interval, switches)
        watch.stopped_early = stopped
        findings += wf
    note = asyncio_note(threads, versions)
    if note:
        findings.append(Finding("info", "asyncio", pid, note))
    return StacksReport(pid, subprocesses, locals_, taken_at, processes, findings, note, watch, sorted(set(skipped)))


def python_descendants(fs: ProcFS, pid: int) -> list[int]:
    try:
        kids = fs.descendants(pid)
    except ObskitError:
        return []
    return [child for child in kids if _is_python(fs, child)]


def _is_python(fs: ProcFS, pid: int) -> bool:
    try:
        return fs.facts(pid).is_python
    except ObskitError:
        return False  # exited meanwhile


def _dump_worker(pid: int, locals_: bool, proc_root: str, skipped: list[str]) -> list[dict[str, Any]]:
    from obskit import attach

    try:
        return attach.dump(pid, locals_=locals_, proc_root=proc_root, retries=2)
    except ObskitError as e:
        # One worker exiting or refusing must not cost the others' stacks.
        skipped.append(f"{pid}: {e.message}")
        return []


def build_processes(threads: list[ThreadInfo], fs: ProcFS, versions: dict[int, str | None]) -> list[ProcessStacks]:
    out: list[ProcessStacks] = []
    for p in sorted({t.pid for t in threads}):
        ts = [t for t in threads if t.pid == p]
        try:
            command = " ".join(fs.cmdline(p))
        except ObskitError:
            command = ""
        states = Counter(t.state.value for t in ts)
        out.append(ProcessStacks(p, command, versions.get(p), len(ts), dict(states), ts, group_threads(ts)))
    return out


def _version(fs: ProcFS, pid: int) -> str | None:
    try:
        return fs.python_version(pid)
    except ObskitError:
        return None


def _cpus(fs: ProcFS, pid: int) -> int:
    """CPUs the target can use: its affinity, capped by its cgroup's CPU quota (a pod limit)."""
    import math

    from obskit import cgroups

    n = 0
    try:
        if fs.is_live:
            n = len(os.sched_getaffinity(pid))
        else:
            from obskit.cgroups import parse_cpu_list

            n = len(parse_cpu_list(fs.status(pid).get("Cpus_allowed_list")))
    except (OSError, ObskitError):
        pass
    n = n or os.cpu_count() or 1
    try:
        quota = cgroups.for_pid(fs, pid, controllers=("cpu",)).cpu_quota()
    except ObskitError:  # the quota is a refinement; without it the affinity stands
        quota = None
    if quota is not None:
        n = min(n, max(1, math.ceil(quota.limit)))
    return n
