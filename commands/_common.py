"""Conventions shared by every command module: global state, common options, JSON output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from obskit.targets import Resolved


@dataclass
class State:
    verbose: bool = False


state = State()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (the canonical, versioned output).")]
PidOpt = Annotated[Optional[int], typer.Option("--pid", "-p", help="Target process ID.", show_default=False)]
SubprocessesOpt = Annotated[
    bool, typer.Option("--subprocesses", "-s", help="Include the target's child processes (workers).")
]
ProcRootOpt = Annotated[str, typer.Option("--proc-root", hidden=True, help="Root of /proc (for captured trees).")]


def emit(result: Any, as_json: bool, render: Any = None) -> None:
    """Print ``result`` as JSON, or its terminal view for people.

    ``render`` is a function of the result from the core; what it returns (a rich renderable) is
    printed on the shared console.  (Renderers that still print themselves return None.)
    """
    from obskit.output import emit_json

    if as_json or render is None:
        emit_json(result)
        return
    view = render(result)
    if view is not None:
        from obskit.output import console

        console().print(view)


def require_pid(pid: int | None) -> int:
    """The --pid of a command that attaches to one process."""
    if pid is None:
        from obskit.errors import UsageError

        raise UsageError("--pid is required", "find the PID with `obskit ps`")
    return pid


def finite(value: Optional[float]) -> Optional[float]:
    """Option callback: NaN and infinity pass click's range checks (every comparison with NaN is false)."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def follow_target(pid: int, proc_root: str, command: str) -> Resolved:
    """The Python process to attach to for ``pid`` (a wrapper such as tini or `sh -c` is followed).

    Prints the one line that says so; several unrelated Python processes below a wrapper are a
    usage error, after a list of them (pid, role, command) on stderr.  Returns the resolution
    (:class:`obskit.targets.Resolved`: ``.pid``, ``.with_workers``).
    """
    from obskit.output import info
    from obskit.targets import resolve

    res = resolve(pid, proc_root=proc_root)
    if res.ambiguous:
        for line in res.choices():
            info(line)
        raise res.error(command)
    note = res.note()
    if note:
        info(note)
    return res


def note_python_below(pid: int, proc_root: str) -> None:
    """For commands that take any PID: one stderr line naming the Python processes below a non-Python one."""
    from obskit.output import info
    from obskit.targets import resolve

    line = resolve(pid, proc_root=proc_root).below_line()
    if line:
        info(line)
