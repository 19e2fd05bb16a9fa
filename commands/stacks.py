"""`obskit stacks`: Dump every thread's stack, grouped and classified (lock, I/O, sleeping, running)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, SubprocessesOpt, emit, finite, follow_target, require_pid

if TYPE_CHECKING:
    from obskit.stacks.dump import StacksReport

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
        emit(report, as_json, _show)


def _show(report: StacksReport) -> None:
    from obskit.output import console
    from obskit.stacks.render import render

    console().print(render(report), crop=False)
