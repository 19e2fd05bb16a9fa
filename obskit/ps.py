"""Every Python process visible from here, as a tree of masters and workers (no attaching).

Facts come from /proc (:mod:`obskit.proc`); CPU % from two readings of each process's
CPU time ``interval`` seconds apart, taken for all processes at once so the whole listing
costs one interval, not one per process.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from obskit.errors import ObskitError
from obskit.proc import ProcessFacts, ProcFS, classify_roles

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult


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
    exe = fs.exe(pid)
    if exe and _PY_EXE.search(exe.encode().rsplit(b"/", 1)[-1]):
        return True
    try:
        return b"python" in fs.read_bytes(pid, "maps")
    except (ObskitError, OSError):
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


# -- terminal view ---------------------------------------------------------------------------------
# Columns dropped first when the terminal is narrow (the PID and the command always stay).
_DROP_ORDER = ("CONTAINER", "USER", "UP", "THR", "RSS", "PY", "ROLE", "CPU%")
_RIGHT = {"CPU%", "RSS", "THR", "UP"}
MIN_COMMAND = 28  # below this the command wraps onto continuation lines rather than being cut
COMMAND_LINES = 3  # a command longer than this many lines ends in "…" (its start tells processes apart)


def render(report: PsReport) -> RenderableType:
    """The process tree as a table that fits the terminal: less important columns are dropped
    first, and the command (the part that tells workers apart) wraps instead of being cut."""
    return _PsView(report)


class _PsView:
    def __init__(self, report: PsReport) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        for line, style in _ps_lines(self.report, options.max_width):
            # Table lines are laid out to the width already; the notes wrap.
            yield Text(line, style=style, no_wrap=True, overflow="ignore") if style != "dim" else Text(line, style)


def _ps_lines(report: PsReport, width: int) -> Iterator[tuple[str, str]]:
    from obskit.inert import inert
    from obskit.output import human_bytes, human_seconds

    if not report.processes:
        what = "processes" if report.all else "Python processes"
        yield (f"No {what} visible ({report.visible} processes in /proc). "
               "From another container, share the PID namespace (`obskit doctor` explains how).", "dim")
        return
    containers = any(e.container_id for e in report.processes)
    headers = ["PID", "ROLE", "PY", "CPU%", "RSS", "THR", "UP", "USER"] + (["CONTAINER"] if containers else [])
    rows: list[dict[str, str]] = []
    commands: list[str] = []
    for e in report.processes:
        indent = "  " * (e.depth - 1) + "└─ " if e.depth else ""
        rows.append({
            "PID": f"{indent}{e.pid}",
            "ROLE": "" if e.role == "plain" else e.role,
            "PY": e.python_version or ("?" if e.is_python else ""),
            "CPU%": "-" if e.cpu_percent is None else f"{e.cpu_percent:.1f}",
            "RSS": human_bytes(e.rss_bytes),
            "THR": str(e.threads),
            "UP": human_seconds(e.uptime_s),
            "USER": e.user or (str(e.uid) if e.uid is not None else "-"),
            "CONTAINER": (e.container_id or "")[:12],
        })
        commands.append(inert(display_command(e.command)))
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    cols = list(headers)
    longest = max(len(c) for c in commands)

    def used(cs: list[str]) -> int:
        return sum(widths[c] + 2 for c in cs)

    for name in _DROP_ORDER:
        if width - used(cols) >= min(MIN_COMMAND, longest) or name not in cols:
            continue
        cols.remove(name)
    head_w = used(cols)
    room = max(12, width - head_w)

    def cells(values: dict[str, str]) -> str:
        return "".join((values[c].rjust(widths[c]) if c in _RIGHT else values[c].ljust(widths[c])) + "  "
                       for c in cols)

    yield cells({h: h for h in headers}) + "COMMAND", "bold"
    for r, cmd in zip(rows, commands):
        first = True
        for chunk in _wrap(cmd, room, COMMAND_LINES):
            yield (cells(r) if first else " " * head_w) + chunk, ""
            first = False
    shown = len(report.processes)
    note = f"{shown} shown; {report.python} Python of {report.visible} visible processes"
    if report.unreadable:
        note += f"; {report.unreadable} unreadable"
    dropped = [h for h in headers if h not in cols]
    if dropped:
        note += f"; narrow terminal: {', '.join(dropped)} not shown (--json has every field)"
    yield note, "dim"


def _wrap(text: str, width: int, max_lines: int) -> list[str]:
    """``text`` in at most ``max_lines`` lines of at most ``width``, broken at spaces where possible."""
    out: list[str] = []
    while len(text) > width:
        if len(out) == max_lines - 1:
            out.append(text[: width - 1] + "…")
            return out
        cut = text.rfind(" ", 0, width + 1)
        if cut <= width // 3:
            cut = width
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    out.append(text)
    return out


_PY_NAME = re.compile(r"^(python|pypy)[\d.]*$")
_PY_FLAGS_WITH_VALUE = {"-X", "-W", "-Q"}


def display_command(command: str, path_room: int = 32) -> str:
    """The part of a command line that tells processes apart, on one line: the script or
    ``-m module`` of a Python process rather than the interpreter's path, other paths shortened
    from the left (``…/app/worker.py``).  The JSON keeps the command whole."""
    words = command.split()
    if not words:
        return command
    if _PY_NAME.match(words[0].rsplit("/", 1)[-1]):
        i = 1
        while i < len(words) and words[i].startswith("-") and words[i] not in ("-m", "-c", "-"):
            i += 2 if words[i] in _PY_FLAGS_WITH_VALUE else 1
        rest = words[i:]
        if rest and rest[0] == "-m" and len(rest) > 1:
            words = [words[0].rsplit("/", 1)[-1], "-m", *rest[1:]]
        elif rest and rest[0] == "-c":
            words = [words[0].rsplit("/", 1)[-1], *rest]
        elif rest:
            words = rest
        else:
            words = [words[0].rsplit("/", 1)[-1]]
    if words[0].startswith("/"):
        words[0] = _script_name(words[0], path_room)
    return " ".join(words)


def _script_name(path: str, room: int) -> str:
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] in ("bin", "sbin"):
        return parts[-1]  # an entry point: /venv/bin/gunicorn is gunicorn
    if len(path) <= room:
        return path
    tail = parts[-1]
    for part in reversed(parts[1:-1]):
        if len(part) + len(tail) + 2 > room:
            break
        tail = f"{part}/{tail}"
    return f"…/{tail}"
