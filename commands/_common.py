"""Conventions shared by every command module: global state, common options, JSON output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer


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
