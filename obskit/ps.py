"""Every Python process visible from here, as a tree of masters and workers (no attaching).

Facts come from /proc (:mod:`obskit.proc`); CPU % from two readings of each process's
CPU time ``interval`` seconds apart, taken for all processes at once so the whole listing
costs one interval, not one per process.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from obskit.errors import ObskitError
from obskit.proc import ProcessFacts, ProcFS, classify_roles


@dataclass
class PsEntry:
    pid: int
    ppid: int
    depth: int
    role: str
    python_version: str | None
    is_python: bool
    cpu_percent: float | None
    rss_bytes: int | None
    threads: int
    uptime_s: float | None
    uid: int | None
    user: str | None
    container_id: str | None
    pod_uid: str | None
    cgroup: str | None
    state: str
    command: str
    children: list[int]


@dataclass
class PsReport:
    SCHEMA = "obskit.ps/1"

    processes: list[PsEntry]
    visible: int  # processes visible in /proc
    python: int  # of which run Python
    interval_s: float
    all: bool
    unreadable: int = 0  # processes whose /proc entries could not be read


def gather_facts(fs: ProcFS, *, python_only: bool = False) -> tuple[dict[int, ProcessFacts], int, int]:
    """Facts for every readable process (or every possible Python one), the number visible, the number unreadable."""
    facts: dict[int, ProcessFacts] = {}
    pids = fs.pids()
    unreadable = 0
    for pid in pids:
        if python_only and not _maybe_python(fs, pid):
            continue
        f = _facts(fs, pid)
        if f is None:
            unreadable += 1
        else:
            facts[pid] = f
    return facts, len(pids), unreadable


_PY_EXE = re.compile(rb"(python|pypy)[\d.]*$")


def _maybe_python(fs: ProcFS, pid: int) -> bool:
    """Cheap pre-filter: a Python-looking exe, or "python" anywhere in the mapped files."""
    try:
        exe = os.readlink(fs.path(pid, "exe")).encode()
        if _PY_EXE.search(exe.rsplit(b"/", 1)[-1]):
            return True
    except OSError:
        pass
    try:
        with open(fs.path(pid, "maps"), "rb") as f:
            return b"python" in f.read()
    except OSError:
        return True  # unreadable: let the full read decide and count it


def _facts(fs: ProcFS, pid: int) -> ProcessFacts | None:
    # Processes exit between listdir and read; that is not an error for a listing.
    try:
        return fs.facts(pid)
    except (ObskitError, OSError, ValueError, IndexError):
        return None


def cpu_percents(fs: ProcFS, pids: list[int], interval: float,
                 sleep: Callable[[float], None] = time.sleep) -> dict[int, float]:
    """CPU % of each pid over ``interval`` seconds (100 = one full core); missing pids exited."""
    if interval <= 0 or not pids:
        return {}
    before = fs.cpu_seconds_of(pids)
    start = time.monotonic()
    sleep(interval)
    elapsed = max(time.monotonic() - start, 1e-6)
    after = fs.cpu_seconds_of(list(before))
    return {pid: round(max(0.0, (after[pid] - cpu) / elapsed * 100), 1) for pid, cpu in before.items() if pid in after}


def collect(
    *,
    include_all: bool = False,
    interval: float = 0.3,
    procfs: ProcFS | None = None,
    pid_filter: list[int] | None = None,
) -> PsReport:
    fs = procfs or ProcFS()
    facts, visible, unreadable = gather_facts(fs, python_only=not include_all)
    classify_roles(facts)
    me = os.getpid() if fs.is_live else None
    chosen = {pid: f for pid, f in facts.items() if (include_all or f.is_python) and pid != me}
    if pid_filter:
        keep: set[int] = set()
        for pid in pid_filter:
            keep.add(pid)
            keep.update(_descendants(facts, pid))
        chosen = {pid: f for pid, f in chosen.items() if pid in keep}
    live = fs.is_live
    cpu = cpu_percents(fs, sorted(chosen), interval) if live else {}
    now = time.time()
    entries: list[PsEntry] = []
    for pid, depth in _tree_order(chosen):
        f = chosen[pid]
        entries.append(
            PsEntry(
                pid=pid,
                ppid=f.ppid,
                depth=depth,
                role=f.role,
                python_version=f.python_version,
                is_python=f.is_python,
                cpu_percent=cpu.get(pid) if live and interval > 0 else None,
                rss_bytes=f.rss_bytes,
                threads=f.threads,
                uptime_s=round(now - f.start_time, 1) if f.start_time is not None else None,
                uid=f.uid,
                user=_user(f.uid),
                container_id=f.container_id,
                pod_uid=f.pod_uid,
                cgroup=f.cgroup,
                state=f.state,
                command=f.command,
                children=sorted(c for c in f.children if c in chosen),
            )
        )
    return PsReport(entries, visible, sum(f.is_python for f in facts.values()), interval, include_all, unreadable)


def _tree_order(chosen: dict[int, ProcessFacts]) -> list[tuple[int, int]]:
    """(pid, depth) with each process right after its parent; roots are those whose parent is not listed."""
    kids: dict[int, list[int]] = {}
    roots: list[int] = []
    for pid, f in chosen.items():
        if f.ppid in chosen and f.ppid != pid:
            kids.setdefault(f.ppid, []).append(pid)
        else:
            roots.append(pid)
    out: list[tuple[int, int]] = []
    stack = [(pid, 0) for pid in sorted(roots, reverse=True)]
    seen: set[int] = set()
    while stack:
        pid, depth = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append((pid, depth))
        stack.extend((c, depth + 1) for c in sorted(kids.get(pid, []), reverse=True))
    return out


def _descendants(facts: dict[int, ProcessFacts], pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for p, f in facts.items():
        kids.setdefault(f.ppid, []).append(p)
    out: set[int] = set()
    todo = list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(kids.get(p, []))
    return out


_users: dict[int, str | None] = {}


def _user(uid: int | None) -> str | None:
    if uid is None:
        return None
    if uid not in _users:
        try:
            import pwd

            _users[uid] = pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError):
            _users[uid] = None
    return _users[uid]
