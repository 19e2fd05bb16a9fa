"""Any PID a user has: from a wrapper (``sh -c``, tini, dumb-init, a bash entrypoint, a pyenv
shim, ``make run``) to the Python process below it.

Container PID 1 is rarely the interpreter.  :func:`resolve` looks below a PID that does not run
Python: with exactly one Python process at the top of the tree below it (a plain interpreter,
or a gunicorn/uvicorn/celery master with its workers), that is the target, followed with one
line saying so; with several unrelated ones there is no right guess, and the caller gets them
all (pid, role, command) to choose from.  A PID that runs Python is never second-guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from obskit.errors import ObskitError, UsageError
from obskit.proc import ProcessFacts, ProcFS, classify_roles

MAX_TREE = 20000  # processes looked at below one PID (a host's PID 1 has a few hundred)


@dataclass
class PythonBelow:
    """A Python process at the top of the tree below a wrapper, with its own Python descendants."""

    pid: int
    role: str  # plain, gunicorn-master, uvicorn-master, celery-main, ...
    command: str  # redacted, one line
    workers: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``gunicorn master``; a plain interpreter by its script or module (``python3 app.py``)."""
        if self.role != "plain":
            return self.role.replace("-", " ")
        return short_command(self.command)


@dataclass
class Resolved:
    """What a command attaches to, for the PID it was given."""

    given: int
    pid: int  # the Python process to attach to (``given`` when it runs Python or nothing is below it)
    given_name: str = ""  # the wrapper's name (comm), e.g. tini
    followed: PythonBelow | None = None  # set when ``pid`` was found below ``given``
    candidates: list[PythonBelow] = field(default_factory=list)  # several unrelated ones: the user picks

    @property
    def with_workers(self) -> bool:
        """A master found below a wrapper: sample it with its workers (as ``-s`` would)."""
        return self.followed is not None and bool(self.followed.workers)

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1

    def note(self) -> str | None:
        """The one line a command prints when it follows (``following python pid 4242 (gunicorn master) under tini pid 1``)."""
        f = self.followed
        if f is None:
            return None
        line = f"following python pid {f.pid} ({f.label}) under {self.given_name or 'process'} pid {self.given}"
        if f.workers:
            n = len(f.workers)
            line += f", with its {n} worker{'s' if n != 1 else ''} ({', '.join(map(str, f.workers[:8]))}" + (
                ", …)" if n > 8 else ")")
        return line

    def choices(self) -> list[str]:
        """One line per candidate: pid, role, command (for the user to pick from)."""
        roles = [c.role.replace("-", " ") if c.role != "plain" else "python" for c in self.candidates]
        width = max(map(len, roles), default=0)
        return [
            f"{c.pid:>7}  {role:<{width}}  {c.command[:160]}" + (f"  (+{len(c.workers)} workers)" if c.workers else "")
            for c, role in zip(self.candidates, roles)
        ]

    def error(self, command: str) -> UsageError:
        """The usage error of an ambiguous PID, naming the next command to type."""
        pids = ", ".join(str(c.pid) for c in self.candidates[:8]) + (", …" if len(self.candidates) > 8 else "")
        first = self.candidates[0].pid
        return UsageError(
            f"process {self.given} ({self.given_name}) is not Python and runs {len(self.candidates)} unrelated Python "
            f"processes ({pids})",
            f"pick one: `obskit {command} --pid {first}`",
            pid=self.given,
        )

    def below_line(self) -> str | None:
        """For commands that take any PID: one line naming the Python processes below a non-Python one."""
        found = self.candidates or ([self.followed] if self.followed else [])
        if not found:
            return None
        items = ", ".join(f"{c.pid} ({c.label}{f' +{len(c.workers)} workers' if c.workers else ''})" for c in found[:6])
        more = f", and {len(found) - 6} more" if len(found) > 6 else ""
        return f"process {self.given} ({self.given_name}) is not Python; Python below it: {items}{more}"


def resolve(pid: int, fs: ProcFS | None = None, *, proc_root: str = "/proc") -> Resolved:
    """The Python process to attach to for ``pid`` (see the module doc).

    Never raises for a PID that is missing, a zombie or unreadable: the attach checks say that
    better; ``pid`` is then returned as it is.
    """
    fs = fs or ProcFS(proc_root)
    try:
        if pid <= 0 or not fs.exists(pid) or fs.is_zombie(pid):
            return Resolved(given=pid, pid=pid)
        top = fs.facts(pid)
    except ObskitError:
        return Resolved(given=pid, pid=pid)
    if top.is_python:
        return Resolved(given=pid, pid=pid, given_name=top.name)
    found = python_below(fs, top)
    res = Resolved(given=pid, pid=pid, given_name=top.name)
    if len(found) == 1:
        res.followed, res.pid = found[0], found[0].pid
    elif found:
        res.candidates = found
    return res


def python_below(fs: ProcFS, top: ProcessFacts) -> list[PythonBelow]:
    """The Python processes below ``top`` with no Python process between them and it, in PID order."""
    kids = fs.children_map()
    # obskit itself, run from a shell under the given PID, is not a candidate (nor what it started)
    mine = {os.getpid()} if fs.is_live else set()
    facts: dict[int, ProcessFacts] = {top.pid: top}
    roots: list[int] = []
    todo = list(kids.get(top.pid, []))
    seen = 0
    while todo and seen < MAX_TREE:
        p = todo.pop(0)
        seen += 1
        if p in mine:
            continue
        try:
            f = fs.facts(p)
        except ObskitError:
            continue  # exited meanwhile, or unreadable
        facts[p] = f
        if f.is_python:
            roots.append(p)
            _collect(fs, kids, p, facts, mine)
        else:
            todo.extend(kids.get(p, []))
    classify_roles(facts)
    out = []
    for r in sorted(roots):
        workers = sorted(_python_descendants(kids, r, facts))
        out.append(PythonBelow(pid=r, role=facts[r].role, command=_command(facts[r]), workers=workers))
    return out


def short_command(command: str, limit: int = 48) -> str:
    """The part of a command line that tells processes apart: the script or module, not the interpreter path."""
    words = command.split()
    if not words:
        return command
    words[0] = os.path.basename(words[0])
    text = " ".join(words)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _collect(fs: ProcFS, kids: dict[int, list[int]], root: int, facts: dict[int, ProcessFacts], mine: set[int]) -> None:
    todo = list(kids.get(root, []))
    while todo and len(facts) < MAX_TREE:
        p = todo.pop(0)
        if p in mine or p in facts:
            continue
        try:
            facts[p] = fs.facts(p)
        except ObskitError:
            continue
        todo.extend(kids.get(p, []))


def _python_descendants(kids: dict[int, list[int]], root: int, facts: dict[int, ProcessFacts]) -> list[int]:
    out: list[int] = []
    todo = list(kids.get(root, []))
    while todo:
        p = todo.pop(0)
        f = facts.get(p)
        if f is None:
            continue
        if f.is_python:
            out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _command(f: ProcessFacts) -> str:
    from obskit.inert import inert
    from obskit.redact import redact_argv

    argv = redact_argv(f.cmdline) if f.cmdline else []
    return inert(" ".join(" ".join(argv).split())) if argv else f"[{f.name}]"
