"""`obskit gc`: GC collections and pauses of a process, from the obskit agent inside it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from obskit.agent.client import AgentClient

from ._common import JsonOpt, PidOpt, ProcRootOpt, SubprocessesOpt, emit, finite, follow_target, require_pid

InjectOpt = Annotated[
    bool,
    typer.Option("--inject", help="Load the agent into a process started without it: gdb on Python 3.9-3.13, "
                 "sys.remote_exec on 3.14+; pauses it briefly (see docs/run.md, 'Injecting the agent')."),
]


def agent_for(pid: int, inject: bool, proc_root: str, as_json: bool, subprocesses: bool = False,
              offer: bool = True) -> AgentClient:
    """The target's agent client; loads the agent with --inject, or after a yes on a terminal."""
    import sys

    from obskit.agent.inject import agent_client
    from obskit.output import info

    confirm = None
    if offer and sys.stdin.isatty() and sys.stderr.isatty() and not as_json:
        def confirm(question: str) -> bool:
            return typer.confirm(question, default=False, err=True)
    return agent_client(pid, inject_ok=inject, proc_root=proc_root, confirm=confirm, announce=info,
                        subprocesses=subprocesses)


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
        inject: InjectOpt = False,
        detach: Annotated[
            bool, typer.Option("--detach", help="Remove the agent from the process (callbacks, tracemalloc it started, socket).")
        ] = False,
        subprocesses: SubprocessesOpt = False,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """GC collections per generation, pauses, thresholds and advice (needs the obskit agent in the target).

        Get an agent with `obskit run -- CMD`, OBSKIT_AGENT=1, obskit.agent.start(), or --inject
        (loads it into the running process; --inject -s also into its Python workers).
        """
        from obskit.errors import UsageError
        from obskit.mem import gcview
        from obskit.selftrace import span

        pid = follow_target(require_pid(pid), proc_root, "gc").pid
        if duration is not None and duration <= 0:
            raise UsageError("--duration must be positive", "e.g. --duration 10")
        with span("obskit.gc", pid=pid, trace=trace):
            if detach:
                if inject or trace:
                    raise UsageError("--detach goes alone", f"obskit gc --detach --pid {pid}")
                from obskit.agent.inject import detach as do_detach
                from obskit.output import emit_json, info

                reply = do_detach(pid, proc_root=proc_root)
                if as_json:
                    emit_json({"schema": "obskit.detach/1", "pid": pid, **{k: v for k, v in reply.items() if k != "ok"}})
                else:
                    info(f"removed the obskit agent from pid {pid}"
                         + (" (and stopped the tracemalloc it had started)" if reply.get("tracemalloc_stopped") else ""))
                return
            if subprocesses and not inject:
                raise UsageError("-s goes with --inject (attach the agent to each worker)",
                                 f"obskit gc --pid {pid} --inject -s")
            client = agent_for(pid, inject, proc_root, as_json, subprocesses)
            if trace:
                gcview.trace(client, duration=duration, as_json=as_json)
                return
            summary = gcview.collect(client, duration=duration)
            emit(summary, as_json, gcview.render)
