"""`obskit stacks`: Dump every thread's stack, grouped and classified (lock, I/O, sleeping, running)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, SubprocessesOpt, emit, finite, follow_target, require_pid

if TYPE_CHECKING:
    from obskit.stacks.dump import StacksReport

_STATE_STYLE = {
    "running": "bold green",
    "waiting_lock": "bold red",
    "blocked_io": "yellow",
    "sleeping": "blue",
    "idle_pool": "dim",
    "idle_loop": "dim",
    "idle": "dim",
}


def register(app: typer.Typer) -> None:
    @app.command("stacks")
    def stacks_cmd(
        pid: PidOpt = None,
        subprocesses: SubprocessesOpt = False,
        locals_: Annotated[bool, typer.Option("--locals", "-l", help="Show each frame's arguments and locals.")] = False,
        watch: Annotated[
            int, typer.Option("--watch", "-w", min=1, max=1000, help="Take COUNT dumps to find stuck threads and thread growth.")
        ] = 1,
        interval: Annotated[
            float, typer.Option("--interval", "-i", min=0.05, max=3600, callback=finite, help="Seconds between --watch dumps.")
        ] = 1.0,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """Dump every thread's stack, grouped and classified (lock, I/O, sleeping, running)."""
        from obskit.attach import preflight
        from obskit.proc import ProcFS
        from obskit.selftrace import span
        from obskit.stacks.dump import collect

        target = follow_target(require_pid(pid), proc_root, "stacks")
        pid, subprocesses = target.pid, subprocesses or target.with_workers
        preflight(pid, proc_root=proc_root)
        progress = None
        if watch > 1 and not as_json:
            from obskit.output import info

            def progress(i: int, n: int) -> None:
                info(f"dump {i}/{n}")

        with span("obskit.stacks", pid=pid, subprocesses=subprocesses, watch=watch) as s:
            report = collect(
                pid, subprocesses=subprocesses, locals_=locals_, count=watch, interval=interval,
                procfs=ProcFS(proc_root), on_dump=progress,
            )
            s.set_attribute("obskit.threads", sum(p.thread_count for p in report.processes))
            s.set_attribute("obskit.findings", len(report.findings))
        emit(report, as_json, render)


def render(report: StacksReport) -> None:
    from obskit.output import console, escape

    out = console()
    for p in report.processes:
        states = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(p.states.items(), key=lambda kv: -kv[1]))
        version = f"Python {p.python_version}" if p.python_version else "Python ?"
        command = " ".join(p.command.split())[:200]
        out.print(f"[bold]Process {p.pid}[/]: {escape(command)}")
        out.print(f"  {version} · {p.thread_count} threads ({states})")
        for g in p.groups:
            style = _STATE_STYLE.get(g.state.value, "")
            who = ", ".join(g.threads[:6]) + (f", … {len(g.threads) - 6} more" if len(g.threads) > 6 else "")
            head = f"{g.count} threads" if g.count > 1 else "1 thread"
            out.print(f"\n  [{style}]{head}: {g.state.label}[/] — {escape(g.detail)}")
            out.print(f"    [dim]{escape(who)}[/]")
            for f in g.frames:
                out.print(f"      {escape(f.name)} [dim]({escape(f.short_filename)}:{f.line})[/]")
                if f.locals:
                    for k, v in f.locals.items():
                        out.print(f"          [dim]{escape(k)} = {escape(v[:200])}[/]")
        out.print()
    if report.watch is not None:
        w = report.watch
        counts = "; ".join(f"pid {pid}: {' → '.join(str(c) for c in series)}" for pid, series in w.thread_counts.items())
        out.print(f"[bold]Watch[/]: {w.dumps} dumps over {w.span_s:.1f}s · threads {counts}")
        if w.stopped_early:
            out.print(f"  [yellow]stopped early: {escape(w.stopped_early)}[/]")
    for item in report.skipped:
        out.print(f"[yellow]not dumped:[/] {escape(item)}")
    if report.findings:
        out.print("[bold]Findings[/]")
        for finding in report.findings:
            mark = "[bold red]![/]" if finding.severity == "warning" else "[cyan]i[/]"
            out.print(f"  {mark} {escape(finding.message)}", soft_wrap=True)
    else:
        out.print("[green]No findings[/]: no shared lock wait, no GIL hog, thread count in range.")
