"""`obskit demo`: start the bundled demo service, profile it for a few seconds and write profile.html."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOpt, finite


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

        from obskit.errors import Interrupted, TargetExited, Unavailable
        from obskit.output import info, warn
        from obskit.profile.console import print_report, report
        from obskit.profile.sampler import record

        from .profile import _plan_outputs, _write_all, stop_on_signals, terminate

        plan = _plan_outputs([output], None)
        proc = subprocess.Popen([sys.executable, "-u", "-m", "obskit.demo", "--seconds", str(duration + 120)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        # Ctrl-C while sampling ends the recording early; the flame graph of what was sampled is still written.
        with stop_on_signals() as stop:
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
                         f"4 threads contending for a lock, a slow leak; sampling threads that hold the GIL")
                start = time.monotonic()
                # Threads holding the GIL: what burns CPU.  Lock waiters would otherwise crowd the table.
                rec = record(proc.pid, duration=duration, gil=True, on_warning=warn, stop_event=stop)
                if time.monotonic() - start < 0.2 and not rec.profile.total_samples and not stop.is_set():
                    raise Unavailable("the demo could not be profiled", "run `obskit doctor --pid PID` on a Python process")
            finally:
                terminate(proc)
        written = _write_all(rec.profile, plan)
        result = report(rec.profile, top=10, outputs=written)

        def render(r: object) -> None:
            print_report(result, title="Top functions of the demo service")
            info(f"open {output} in a browser; try `obskit profile record --pid PID -d 10 -o profile.html` "
                 "on your own service")

        from ._common import emit

        emit(result, as_json, render)
