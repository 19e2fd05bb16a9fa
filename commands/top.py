"""`obskit top`: Live view: sampled top functions beside CPU, RSS, threads, fds and CPU throttling."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, SubprocessesOpt, emit, finite, follow_target, require_pid

if TYPE_CHECKING:
    from obskit.profile.live import TopFunction, TopSession, TopWindow


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
        from obskit.profile.live import TopSession
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
                emit(window, as_json, lambda w: _print_window(w, facts.command, None))
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

    out = console()
    session.start()
    deadline = time.monotonic() + duration if duration else None
    keys = _Keys()
    window = None
    try:
        with keys, Live(_view(None, session, command, limit), console=out, refresh_per_second=4, transient=False) as live:
            while True:
                key = keys.read(1.0)
                if key in ("q", "Q"):
                    break
                window = session.window()
                live.update(_view(window, session, command, limit))
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


def _stats_line(w: TopWindow) -> str:
    from obskit.output import escape, human_bytes

    threads = sum(p.threads or 0 for p in w.processes if not p.exited)
    fds = [p.fds for p in w.processes if p.fds is not None]
    cpu = "-" if w.cpu_percent is None else f"{w.cpu_percent:.0f}%"
    parts = [f"CPU [bold]{cpu}[/]", f"RSS [bold]{human_bytes(w.rss_bytes)}[/]", f"threads [bold]{threads}[/]",
             f"fds [bold]{sum(fds) if fds else '-'}[/]"]
    if len(w.processes) > 1:
        parts.append(f"processes {sum(not p.exited for p in w.processes)}")
    t = w.throttle
    if t is not None:
        ratio = "-" if t.throttled_ratio is None else f"{t.throttled_ratio:.0%}"
        style = "bold red" if t.throttled_periods else "green"
        parts.append(f"throttled [{style}]{ratio}[/] of periods ({t.throttled_s:.2f}s; quota {t.quota_cpus:g} CPUs)")
    else:
        parts.append(f"[dim]{escape(w.quota_note)}[/]")
    return " · ".join(parts)


def _function_table(rows: list[tuple[TopFunction, TopFunction | None]], title: str) -> Any:
    from rich.table import Table

    from obskit.output import escape

    table = Table(box=None, pad_edge=False, header_style="bold", title=title, title_justify="left", title_style="dim")
    table.add_column("%Own", justify="right")
    table.add_column("%Total", justify="right")
    table.add_column("Own", justify="right")
    table.add_column("Total", justify="right")
    table.add_column("Function (file:line)", no_wrap=True, overflow="ellipsis")
    for f, cum in rows:
        own = cum.self_samples if cum is not None else f.self_samples
        tot = cum.total_samples if cum is not None else f.total_samples
        short = f.file.rsplit("/", 1)[-1] if f.file else ""
        table.add_row(f"{f.self_share:.1%}", f"{f.total_share:.1%}", str(own), str(tot),
                      f"{escape(f.name)} [dim]({escape(short)}:{f.line})[/]")
    return table


def _view(w: TopWindow | None, session: TopSession, command: str, limit: int) -> Any:
    from rich.console import Group
    from rich.text import Text

    from obskit.output import escape

    head = Text.from_markup(f"[bold]obskit top[/] · pid {session.pid} · {escape(_one_line(command))}  [dim](q quits)[/]")
    if w is None:
        return Group(head, Text("sampling…", style="dim"))
    cum = {(f.name, f.file): f for f in session.cumulative_functions()}
    rows = [(f, cum.get((f.name, f.file))) for f in w.functions[:limit]]
    acc = w.sampler
    rate = acc.get("effective_rate") or acc.get("rate")
    sampler = f"{w.samples} samples in {w.duration_s:.1f}s" + (f" · {rate:.0f} Hz" if isinstance(rate, (int, float)) else "")
    parts: list[Any] = [head, Text.from_markup(_stats_line(w)), Text(sampler, style="dim")]
    parts += [Text(f"sampler: {msg}", style="yellow") for msg in acc.get("warnings") or []]
    parts.append(_function_table(rows, "%Own/%Total: last second · Own/Total: samples since start"))
    return Group(*parts)


def _print_window(w: TopWindow, command: str, _unused: object) -> None:
    from rich.text import Text

    from obskit.output import console, escape

    out = console()
    out.print(Text.from_markup(f"[bold]obskit top[/] · pid {w.pid} · {escape(_one_line(command))}"))
    out.print(Text.from_markup(_stats_line(w)))
    out.print(Text(f"{w.samples} samples in {w.duration_s:.1f}s", style="dim"))
    out.print(_function_table([(f, None) for f in w.functions], "functions by own samples in the window"))


def _one_line(command: str, limit: int = 100) -> str:
    """The command line on one line: `python -c` code has newlines that would break the header."""
    return " ".join(command.split())[:limit]
