"""`obskit demo`: start the bundled demo service, profile it for a few seconds and write profile.html."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import JsonOpt, finite

if TYPE_CHECKING:
    from obskit.profile.demo_report import ThreadNote


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        duration: Annotated[float, typer.Option("--duration", "-d", min=0.5, max=600, callback=finite,
                                                             help="Seconds to profile.")] = 5.0,
        output: Annotated[str, typer.Option("--output", "-o", help="Where to write the flame graph.")] = "profile.html",
        as_json: JsonOpt = False,
    ) -> None:
        """Start the bundled demo service, profile it for a few seconds and write profile.html."""
        import subprocess
        import sys
        import time
        from dataclasses import fields

        from obskit.child import spawn_command, stop_on_signals, terminate
        from obskit.errors import Interrupted, TargetExited, Unavailable
        from obskit.output import info, warn
        from obskit.profile.console import report
        from obskit.profile.demo_report import DemoReport, print_demo
        from obskit.profile.sampler import SamplerConfig, record

        from .profile import emit_report, plan_outputs, raise_if_nothing_written, write_outputs

        plan = plan_outputs([output], None)
        # Ctrl-C (or SIGTERM/SIGHUP) while sampling ends the recording early; what was sampled is still written.
        with stop_on_signals() as stop:
            proc = spawn_command([sys.executable, "-u", "-m", "obskit.demo", "--seconds", str(duration + 120)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()  # the demo prints `ready PID` once its threads run
                if not line.startswith("ready"):
                    err = proc.stderr.read() if proc.stderr else ""
                    raise TargetExited(f"the demo service did not start: {err.strip()[-300:] or 'no output'}",
                                       "run `python -m obskit.demo` to see why")
                if stop.is_set():
                    raise Interrupted("interrupted before the demo service was profiled", "run `obskit demo` again")
                if not as_json:
                    info(f"demo service running as pid {proc.pid}: a CPU hot path (compute_checksum), "
                         f"4 threads contending for a lock, a slow leak; sampling threads that hold the GIL "
                         f"(the lock waiters are listed from a stacks dump afterwards)")
                start = time.monotonic()
                # Threads holding the GIL: what burns CPU.  The lock waiters come from a dump, not as CPU.
                rec = record(proc.pid, SamplerConfig(gil=True), duration=duration, on_warning=warn, stop_event=stop)
                if time.monotonic() - start < 0.2 and not rec.profile.total_samples and not stop.is_set():
                    raise Unavailable("the demo could not be profiled", "run `obskit doctor --pid PID` on a Python process")
                on_cpu = {s.tid for s in rec.profile.samples}  # the threads the GIL profile shows
                off_cpu, note = (([], "interrupted: no stacks dump taken") if stop.is_set()
                                 else _off_cpu(proc.pid, on_cpu))
            finally:
                terminate(proc)
        written, failed = write_outputs(rec.profile, plan, keep=True)
        base = report(rec.profile, top=10, outputs=written)
        result = DemoReport(**{f.name: getattr(base, f.name) for f in fields(base)}, off_cpu=off_cpu,
                            off_cpu_note=note)

        def render(r: DemoReport) -> None:
            print_demo(r)
            info(f"open {output} in a browser; try `obskit profile record --pid PID -d 10 -o profile.html` "
                 "on your own service")

        emit_report(result, as_json, render)
        raise_if_nothing_written(written, failed)


def _off_cpu(pid: int, on_cpu: set[int]) -> tuple[list[ThreadNote], str]:
    """The threads of ``pid`` that are not running and not in the GIL profile (``on_cpu``: their thread ids),
    from one stacks dump; and why it is missing, if it is."""
    from obskit.errors import ObskitError
    from obskit.profile.demo_report import ThreadNote
    from obskit.stacks.classify import ThreadState
    from obskit.stacks.dump import collect

    try:
        rep = collect(pid)
    except ObskitError as e:
        return [], f"the lock waiters are not in the GIL profile, and the stacks dump failed: {e.message}"
    notes = []
    for proc in rep.processes:
        for t in proc.threads:
            if t.state == ThreadState.RUNNING or t.thread_id in on_cpu or t.os_thread_id in on_cpu:
                continue  # on CPU: already in the profile (a CPU thread waits for the GIL now and then)
            where = t.frames[0].label() if t.frames else ""
            notes.append(ThreadNote(t.display, t.state.value, t.state.label, where))
    return notes, ""
