"""`obskit gc`: GC collections and pauses of a process, from the obskit agent inside it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, emit, finite, follow_target, require_pid


def register(app: typer.Typer) -> None:
    @app.command("gc")
    def gc_cmd(
        pid: PidOpt = None,
        trace: Annotated[
            bool, typer.Option("--trace", help="Print one line per collection as it happens (gctrace style).")
        ] = False,
        duration: Annotated[
            Optional[float],
            typer.Option("--duration", "-d", callback=finite,
                         help="Summary: measure over this many seconds. --trace: stop after it."),
        ] = None,
        inject: Annotated[
            bool,
            typer.Option("--inject", help="Python 3.14+: load the agent into the running process (sys.remote_exec; see docs/gc.md)."),
        ] = False,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """GC collections per generation, pauses, thresholds and advice (needs the obskit agent in the target).

        Get an agent with `obskit run -- CMD`, OBSKIT_AGENT=1, obskit.agent.start(), or --inject on 3.14+.
        """
        from obskit.agent.client import connect
        from obskit.errors import UsageError
        from obskit.mem import gcview
        from obskit.selftrace import span

        pid = follow_target(require_pid(pid), proc_root, "gc").pid
        if duration is not None and duration <= 0:
            raise UsageError("--duration must be positive", "e.g. --duration 10")
        with span("obskit.gc", pid=pid, trace=trace):
            if inject:
                from obskit.agent.bootstrap import inject as do_inject
                from obskit.agent.client import find_socket
                from obskit.proc import ProcFS

                if find_socket(pid, proc_root=proc_root) is None:
                    do_inject(pid, ProcFS(proc_root).facts(pid).python_version, proc_root=proc_root)
            client = connect(pid, proc_root=proc_root)
            if trace:
                gcview.trace(client, duration=duration, as_json=as_json)
                return
            summary = gcview.collect(client, duration=duration)
            emit(summary, as_json, gcview.render)
