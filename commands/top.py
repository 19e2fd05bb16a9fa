"""`obskit top`: Live view: sampled top functions beside CPU, RSS, threads, fds and CPU throttling."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, SubprocessesOpt, emit, finite, follow_target, require_pid

if TYPE_CHECKING:
    from rich.console import RenderableType

    from obskit.profile.live import TopSession, TopWindow


def register(app: typer.Typer) -> None:
    @app.command("top")
    def top_cmd(
        pid: PidOpt = None,
        subprocesses: SubprocessesOpt = False,
        once: Annotated[bool, typer.Option("--once", help="Sample one window of -d seconds, print it and exit.")] = False,
        duration: Annotated[
            float, typer.Option("--duration", "-d", min=0, max=86400, callback=finite, help="Window for --once (default 2 s); otherwise stop after this long (default: until q).")
        ] = 0.0,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="Functions to show.")] = 25,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """Live view: sampled top functions beside CPU, RSS, threads, fds and CPU throttling.

        Refreshes every second; q or Ctrl-C quits.  `--once -d S --json` samples one
        window of S seconds for scripts.
        """
        from obskit.attach import preflight
        from obskit.errors import UsageError
        from obskit.profile.live import TopSession, render_window
        from obskit.selftrace import span

        pid = require_pid(pid)
        if as_json and not once:
            raise UsageError("--json needs --once", "use `obskit top --pid PID --once -d 5 --json`")
        target = follow_target(pid, proc_root, "top")
        pid, subprocesses = target.pid, subprocesses or target.with_workers
        facts = preflight(pid, proc_root=proc_root)
        from obskit.output import warn
        from obskit.proc import ProcFS

        session = TopSession(pid, subprocesses=subprocesses, procfs=ProcFS(proc_root), limit=limit,
                             on_warning=warn if once else None)
        with span("obskit.top", pid=pid, once=once) as s:
            if once:
                window = _one_window(session, duration or 2.0)
                s.set_attribute("obskit.samples", window.samples)
                emit(window, as_json, lambda w: _show(render_window(w, facts.command)))
            else:
                _live(session, facts.command, duration, limit)


def _one_window(session: TopSession, seconds: float) -> TopWindow:
    import time

    from obskit.errors import TargetExited

    session.start()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not session.exited:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            session.poll_exit()
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the window early: show what was sampled
    window = session.stop()
    if window.target_exited and window.samples == 0:
        raise TargetExited(f"process {session.pid} exited before any sample was taken", "check that the service is running",
                           pid=session.pid)
    return window


def _live(session: TopSession, command: str, duration: float, limit: int) -> None:
    import time

    from rich.live import Live

    from obskit.output import console
    from obskit.profile.live import render_live

    out = console()
    session.start()
    deadline = time.monotonic() + duration if duration else None
    keys = _Keys()
    window = None
    try:
        with keys, Live(render_live(session.pid, None, [], command, limit), console=out, refresh_per_second=4,
                        transient=False) as live:
            while True:
                key = keys.read(1.0)
                if key in ("q", "Q"):
                    break
                window = session.window()
                live.update(render_live(session.pid, window, session.cumulative_functions(), command, limit))
                if window.target_exited:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        try:
            session.stop()
        except Exception:  # the sampler is being torn down; the view is already on screen
            pass
    if window is not None and window.target_exited:
        out.print(f"[yellow]process {session.pid} exited[/]")


class _Keys:
    """Single key presses from a TTY in cbreak mode; with no TTY, only waits."""

    def __init__(self) -> None:
        self._saved: Any = None
        # sys.stdin is None when fd 0 is closed (`obskit top <&-`, some CI runners).
        self._tty = sys.stdin is not None and sys.stdin.isatty()

    def __enter__(self) -> _Keys:
        if self._tty:
            import termios
            import tty

            try:
                self._saved = termios.tcgetattr(sys.stdin.fileno())
                tty.setcbreak(sys.stdin.fileno())
            except termios.error:
                self._tty = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> str | None:
        import select
        import time

        if not self._tty:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        if ready:
            return sys.stdin.read(1)
        return None


def _show(view: RenderableType) -> None:
    from obskit.output import console

    console().print(view, crop=False)
