"""`obskit doctor`: Check that obskit can attach here, one line per check with the fix."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, emit, follow_target


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_cmd(
        pid: PidOpt = None,
        output_dir: Annotated[
            str, typer.Option("--output-dir", "-o", help="Directory profiles and bundles will be written to.")
        ] = ".",
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
        sys_root: Annotated[str, typer.Option("--sys-root", hidden=True, help="Root for /sys and /var (captured trees).")] = "/",
    ) -> int:
        """Check that obskit can attach here, one line per check with the fix.

        Exits 0 when every check passes or warns; otherwise with the exit code of the
        first failing check's error (6 permission, 4 not found, 5 not Python, 7 version).
        """
        from obskit.doctor import DoctorContext, render, run_checks
        from obskit.selftrace import span

        if pid is not None:
            pid = follow_target(pid, proc_root, "doctor").pid  # the process `stacks`/`profile record` would attach to
        ctx = DoctorContext(pid=pid, proc_root=proc_root, sys_root=sys_root, output_dir=output_dir)
        with span("obskit.doctor", pid=pid or 0) as s:
            report = run_checks(ctx)
            s.set_attribute("obskit.failed", sum(c.status == "fail" for c in report.checks))
        emit(report, as_json, render)
        err = report.error()
        if err is not None:
            raise err  # the report is on stdout; scripts also get the usual one-line error and its exit code
        return report.exit_code
