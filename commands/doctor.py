"""`obskit doctor`: Check that obskit can attach here, one line per check with the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, emit

if TYPE_CHECKING:
    from obskit.doctor import DoctorReport

_MARK = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


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
        from obskit.doctor import DoctorContext, run_checks
        from obskit.selftrace import span

        ctx = DoctorContext(pid=pid, proc_root=proc_root, sys_root=sys_root, output_dir=output_dir)
        with span("obskit.doctor", pid=pid or 0) as s:
            report = run_checks(ctx)
            s.set_attribute("obskit.failed", sum(c.status == "fail" for c in report.checks))
        emit(report, as_json, render)
        failed = [c for c in report.checks if c.status == "fail"]
        if failed:
            # The report is on stdout; scripts also get the usual one-line error and its exit code.
            err = failed[0].to_error(pid)
            err.message = f"doctor check {failed[0].name} failed: {err.message}"
            raise err
        return report.exit_code


def render(report: DoctorReport) -> None:
    from obskit.output import console, escape

    out = console()
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        out.print(f"{_MARK[c.status]}  {c.name:<{width}}  {escape(c.message)}", soft_wrap=True)
        if c.fix and c.status in ("fail", "warn"):
            out.print(f"      {'':<{width}}  [dim]fix:[/] {escape(c.fix)}", soft_wrap=True)
        elif c.fix and c.name == "kubernetes":
            out.print(f"      {'':<{width}}  [dim]use:[/] {escape(c.fix)}", soft_wrap=True)
    failed = [c for c in report.checks if c.status == "fail"]
    if failed:
        out.print(f"\n[bold red]{len(failed)} check(s) failed[/]: attaching will not work until the first fix is applied.")
    else:
        target = f"process {report.pid}" if report.pid is not None else "Python processes here"
        out.print(f"\n[green]ready[/]: obskit can attach to {target}.")
