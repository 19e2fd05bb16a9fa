"""`obskit ps`: List every Python process, as a tree of masters and workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, emit, finite

if TYPE_CHECKING:
    from obskit.ps import PsReport


def register(app: typer.Typer) -> None:
    @app.command("ps")
    def ps_cmd(
        show_all: Annotated[bool, typer.Option("--all", "-a", help="Include processes that do not run Python.")] = False,
        pid: PidOpt = None,
        interval: Annotated[
            float, typer.Option("--interval", "-i", min=0.0, max=60.0, callback=finite, help="Seconds over which CPU % is measured (0: skip).")
        ] = 0.3,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """List every Python process, as a tree of masters and workers.

        Shows role (gunicorn/uvicorn/celery master or worker, multiprocessing child),
        the target's Python version (read from its binary, without attaching), CPU %,
        RSS, threads, uptime, container id and command line.  --pid limits the list
        to that process and its descendants.
        """
        from obskit.errors import Interrupted, TargetNotFound, TargetNotPython
        from obskit.proc import ProcFS
        from obskit.ps import collect
        from obskit.selftrace import span

        shown = _pids_for(pid, proc_root) if pid is not None else None
        with span("obskit.ps", all=show_all) as s:
            try:
                report = collect(include_all=show_all, interval=interval, procfs=ProcFS(proc_root), pid_filter=shown)
            except KeyboardInterrupt:
                # Typer turns a bare KeyboardInterrupt into a silent exit 130; say what happened.
                raise Interrupted("interrupted while measuring CPU %", "--interval 0 lists at once, without CPU %") from None
            s.set_attribute("obskit.processes", len(report.processes))
        if pid is not None and shown == [pid] and not any(e.pid == pid for e in report.processes):
            fs = ProcFS(proc_root)
            if not fs.exists(pid):
                raise TargetNotFound(f"process {pid} not found", "run `obskit ps` without --pid to list processes", pid=pid)
            if fs.is_zombie(pid):
                raise fs.zombie_error(pid)
            raise TargetNotPython(f"process {pid} does not run Python", "add --all to list every process", pid=pid)
        emit(report, as_json, _show)


def _pids_for(pid: int, proc_root: str) -> list[int]:
    """--pid: that process, or the Python processes below a wrapper (tini, `sh -c`, ...), said in one line."""
    import os

    from obskit.errors import UsageError
    from obskit.output import info
    from obskit.targets import resolve

    if pid == os.getpid() and proc_root == "/proc":
        raise UsageError(f"process {pid} is this `obskit ps` itself", "give the PID of a service; `obskit ps` lists them",
                         pid=pid)
    res = resolve(pid, proc_root=proc_root)
    line = res.note() or res.below_line()
    if line:
        info(line)
    return [c.pid for c in res.candidates] or [res.pid]


def _show(report: PsReport) -> None:
    from obskit.output import console
    from obskit.ps import render

    console().print(render(report), crop=False)
