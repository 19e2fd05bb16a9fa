"""`obskit quota`: Container CPU and memory quotas against the workers actually running."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, emit, note_python_below

if TYPE_CHECKING:
    from obskit.quota.model import QuotaReport

FAIL_LEVELS = ("warn", "error")


def register(app: typer.Typer) -> None:
    @app.command("quota")
    def quota_cmd(
        pid: PidOpt = None,
        window: Annotated[
            float, typer.Option("--window", "-w", help="Seconds of evidence (throttling, PSI, OOM events); 0 skips.")
        ] = 5.0,
        as_json: JsonOpt = False,
        fail_on: Annotated[
            Optional[str], typer.Option("--fail-on", help="Exit 3 when a finding is at least this severe: warn|error.")
        ] = None,
        proc_root: ProcRootOpt = "/proc",
        fs_root: Annotated[
            Optional[str], typer.Option("--fs-root", hidden=True, help="Filesystem root the cgroup mounts live under.")
        ] = None,
    ) -> None:
        """Container CPU and memory quotas against the workers actually running.

        Reads cgroup v1/v2 limits (the minimum over every visible ancestor), samples throttling,
        pressure and OOM events over --window, finds gunicorn/uvicorn/celery/pool workers and
        BLAS threads, and says how many workers fit, with the formula.
        """
        from obskit.errors import FindingsError, UsageError
        from obskit.selftrace import span

        if fail_on is not None and fail_on not in FAIL_LEVELS:
            raise UsageError(f"--fail-on must be warn or error, not {fail_on!r}", "see `obskit quota --help`")
        if not 0 <= window <= 3600:  # also NaN
            raise UsageError(f"--window must be between 0 and 3600 seconds, not {window:g}",
                             "see `obskit quota --help`")
        if pid is not None and pid <= 0:
            raise UsageError(f"--pid must be a positive process ID, not {pid}", "list processes with `obskit ps`")
        from obskit.proc import ProcFS
        from obskit.quota.collect import collect, default_roots

        roots = None
        if fs_root is not None:
            roots = default_roots(pid, proc_root)
            roots.fs = fs_root
        if pid is not None:
            note_python_below(pid, proc_root)
        with span("obskit.quota", pid=pid or 0, window=window) as s:
            report = collect(pid, window, roots, procfs=ProcFS(proc_root))
            s.set_attribute("quota.findings", len(report.findings))
            s.set_attribute("quota.worst", report.worst)

        def show(r: QuotaReport) -> None:
            from obskit.output import console
            from obskit.quota.render import render

            console().print(render(r), crop=False)

        emit(report, as_json, show)
        if fail_on is not None:
            order = {"ok": -1, "info": 0, "warn": 1, "error": 2}
            if order[report.worst] >= order[fail_on]:
                bad = [f.id for f in report.findings if order[f.severity] >= order[fail_on]]
                raise FindingsError(f"{len(bad)} finding(s) at or above {fail_on}: {', '.join(bad)}",
                                    "see the report above; --fail-on gates CI on it")
