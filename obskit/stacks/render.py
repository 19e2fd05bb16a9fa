"""The terminal view of a :class:`~obskit.stacks.dump.StacksReport` (rendered from the same data as ``--json``)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from obskit.output import escape

from .classify import ThreadState
from .dump import ProcessStacks, StackGroup, StacksReport, ThreadInfo

if TYPE_CHECKING:
    from rich.console import RenderableType

STATE_STYLE = {
    "running": "bold green",
    "waiting_lock": "bold red",
    "blocked_io": "yellow",
    "sleeping": "blue",
    "idle_pool": "dim",
    "idle_loop": "dim",
    "idle": "dim",
}
_IDLE = (ThreadState.SLEEPING, ThreadState.IDLE_POOL, ThreadState.IDLE_LOOP, ThreadState.IDLE)


class _Parts:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def line(self, markup: str = "", *, soft: bool = False) -> None:
        from rich.text import Text

        text = Text.from_markup(markup)
        if soft:  # left whole for the terminal to wrap (print with crop=False)
            text.no_wrap, text.overflow = True, "ignore"
        self.items.append(text)


def render(report: StacksReport) -> RenderableType:
    """Per process: its groups of identical stacks; a per-worker summary with -s; watch and findings."""
    from rich.console import Group

    out = _Parts()
    if len(report.processes) > 1:
        out.items.append(worker_table(report))
        out.line()
    for p in report.processes:
        _process(out, p)
        out.line()
    if report.watch is not None:
        w = report.watch
        counts = "; ".join(f"pid {pid}: {' → '.join(str(c) for c in series)}" for pid, series in w.thread_counts.items())
        out.line(f"[bold]Watch[/]: {w.dumps} dumps over {w.span_s:.1f}s · threads {counts}", soft=True)
        if w.stopped_early:
            out.line(f"  [yellow]stopped early: {escape(w.stopped_early)}[/]")
    for item in report.skipped:
        out.line(f"[yellow]not dumped:[/] {escape(item)}", soft=True)
    if report.findings:
        out.line("[bold]Findings[/]")
        for finding in report.findings:
            mark = "[bold red]![/]" if finding.severity == "warning" else "[cyan]i[/]"
            out.line(f"  {mark} {escape(finding.message)}", soft=True)
    else:
        out.line("[green]No findings[/]: no shared lock wait, no GIL hog, thread count in range.")
    return Group(*out.items)


def worker_table(report: StacksReport) -> RenderableType:
    """One row per process (a master and its workers): hot, stuck and idle threads, and where the hot ones are."""
    from rich.table import Table

    stuck = Counter(s.pid for s in report.watch.stuck) if report.watch is not None else Counter()
    table = Table(title=f"Workers (target {report.pid} first)", title_justify="left", title_style="bold", box=None, pad_edge=False,
                  header_style="bold")
    table.add_column("PID", no_wrap=True)
    table.add_column("threads", justify="right")
    table.add_column("hot", justify="right")
    table.add_column("lock", justify="right")
    table.add_column("I/O", justify="right")
    table.add_column("idle", justify="right")
    table.add_column("stuck", justify="right")
    table.add_column("hot in", overflow="fold")
    for p in report.processes:
        c = Counter(t.state for t in p.threads)
        hot = [t for t in p.threads if t.state is ThreadState.RUNNING]
        where = Counter(t.frames[0].label() for t in hot if t.frames)
        spots = ", ".join(f"{escape(label)}" + (f" ×{n}" if n > 1 else "") for label, n in where.most_common(2))
        table.add_row(str(p.pid), str(p.thread_count),
                      _n(c[ThreadState.RUNNING], "bold green"), _n(c[ThreadState.WAITING_LOCK], "bold red"),
                      _n(c[ThreadState.BLOCKED_IO], "yellow"), str(sum(c[s] for s in _IDLE)),
                      _n(stuck[p.pid], "bold red") if report.watch is not None else "-", spots or "[dim]-[/]")
    return table


def _n(value: int, style: str) -> str:
    return f"[{style}]{value}[/]" if value else "0"


def _process(out: _Parts, p: ProcessStacks) -> None:
    states = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(p.states.items(), key=lambda kv: -kv[1]))
    version = f"Python {p.python_version}" if p.python_version else "Python ?"
    command = " ".join(p.command.split())[:200]
    out.line(f"[bold]Process {p.pid}[/]: {escape(command)}", soft=True)
    out.line(f"  {version} · {p.thread_count} threads ({states})")
    for g in p.groups:
        style = STATE_STYLE.get(g.state.value, "")
        who = ", ".join(g.threads[:6]) + (f", … {len(g.threads) - 6} more" if len(g.threads) > 6 else "")
        head = f"{g.count} threads" if g.count > 1 else "1 thread"
        out.line()
        out.line(f"  [{style}]{head}: {g.state.label}[/] — {escape(g.detail)}", soft=True)
        out.line(f"    [dim]{escape(who)}[/]", soft=True)
        members = [t for t in p.threads if t.group == g.id] or []
        for i, f in enumerate(g.frames):
            out.line(f"      {escape(f.name)} [dim]({escape(f.short_filename)}:{f.line})[/]", soft=True)
            _locals(out, g, members, i)


def _locals(out: _Parts, g: StackGroup, members: list[ThreadInfo], index: int) -> None:
    """A frame's locals: once when every thread of the group has the same, else per thread."""
    per_thread = [(t.display, t.frames[index].locals) for t in members if index < len(t.frames)]
    values = [loc for _, loc in per_thread if loc]
    if not values:
        first = g.frames[index].locals
        if first:
            values, per_thread = [first], [("", first)]
        else:
            return
    if all(v == values[0] for v in values) and len(values) == len(per_thread):
        for k, v in values[0].items():
            out.line(f"          [dim]{escape(k)} = {escape(v[:200])}[/]", soft=True)
        return
    out.line(f"          [dim]locals differ between the {len(per_thread)} threads:[/]")
    for who, loc in per_thread:
        shown = ", ".join(f"{k} = {v[:80]}" for k, v in (loc or {}).items()) or "(none)"
        out.line(f"          [dim]{escape(who)}: {escape(shown)}[/]", soft=True)
