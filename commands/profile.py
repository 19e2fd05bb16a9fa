"""`obskit profile`: sampling profiles of live Python services: record, show, diff."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, SubprocessesOpt, emit, finite, follow_target

if TYPE_CHECKING:
    import subprocess

    from obskit.errors import ObskitError
    from obskit.profile.console import OutputFile
    from obskit.profile.model import Profile

OutputOpt = Annotated[
    Optional[list[str]],
    typer.Option("--output", "-o", help="Output file; the format follows the name (.html .speedscope.json .collapsed "
                 ".pb.gz .trace.json .json). Repeat for several.", show_default=False),
]
FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="Format for every -o instead of the file name: html, speedscope, collapsed, "
                 "pprof, trace-event, json.", show_default=False),
]
TopOpt = Annotated[int, typer.Option("--top", "-n", min=1, max=1000, help="Functions in the table.")]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(name="profile", help="Sampling profiles: record, show, diff.", no_args_is_help=True,
                      rich_markup_mode=None)

    @sub.command("record", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def record_cmd(
        command: Annotated[Optional[list[str]], typer.Argument(help="-- CMD ARGS...: start this command and profile it.",
                                                               show_default=False)] = None,
        pid: PidOpt = None,
        duration: Annotated[Optional[float], typer.Option("--duration", "-d", min=0.1, max=7 * 86400, callback=finite,
                                                          help="Wall-clock seconds to record (default: until Ctrl-C "
                                                          "or the target exits).", show_default=False)] = None,
        rate: Annotated[Optional[int], typer.Option("--rate", "-r", min=1, max=10000,
                                                    help="Samples per second (default: 100, lowered if that would "
                                                    "slow the target beyond --max-overhead).", show_default=False)] = None,
        subprocesses: SubprocessesOpt = False,
        idle: Annotated[bool, typer.Option("--idle", help="Keep samples of idle threads (waiting on I/O, locks).")] = False,
        gil: Annotated[bool, typer.Option("--gil", help="Only samples of threads holding the GIL.")] = False,
        native: Annotated[bool, typer.Option("--native", help="Include native (C/C++) frames.")] = False,
        blocking: Annotated[Optional[bool], typer.Option("--blocking/--nonblocking",
                                                         help="Force py-spy's mode: blocking pauses the target per "
                                                         "sample (exact), nonblocking never pauses it (samples may "
                                                         "fail). Default: chosen to fit --max-overhead.",
                                                         show_default=False)] = None,
        max_overhead: Annotated[float, typer.Option("--max-overhead", min=0.1, max=100, callback=finite,
                                                    help="Budget: percent of the time the target may be paused.")] = 5.0,
        output: OutputOpt = None,
        fmt: FormatOpt = None,
        top: TopOpt = 15,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """Record a profile of a running process (--pid N) or of a command (-- CMD ARGS...).

        Ends on -d, Ctrl-C or the target exiting; every -o is written in all three cases.
        """
        from obskit.errors import UsageError

        if command and command[0].startswith("-"):
            # Extra arguments are the command to run; one that starts with "-" is a mistyped option.
            raise UsageError(f"no such option: {command[0]}", "see `obskit profile record --help`")
        if (pid is None) == (not command):
            raise UsageError("give exactly one target: --pid N or -- CMD ARGS...",
                             "e.g. `obskit profile record --pid 1234 -d 10 -o profile.html`")
        outputs = plan_outputs(output or ["profile.html"], fmt)
        if pid is not None:
            target = follow_target(pid, proc_root, "profile record")
            pid, subprocesses = target.pid, subprocesses or target.with_workers
        _record(pid=pid, command=list(command or []), duration=duration, rate=rate, subprocesses=subprocesses, idle=idle,
                gil=gil, native=native, blocking=blocking, max_overhead=max_overhead / 100.0, outputs=outputs,
                top=top, as_json=as_json, proc_root=proc_root)

    @sub.command("show")
    def show_cmd(
        file: Annotated[str, typer.Argument(help="A saved profile: obskit .json, speedscope JSON, py-spy raw / "
                                            "folded stacks, pprof, Chrome trace JSON.")],
        output: OutputOpt = None,
        fmt: FormatOpt = None,
        top: TopOpt = 20,
        as_json: JsonOpt = False,
    ) -> None:
        """Print a saved profile's top functions, or convert it to another format with -o."""
        from obskit.profile.console import print_report, report
        from obskit.profile.formats import load_profile
        from obskit.selftrace import span

        plan = plan_outputs(output, fmt) if output else []
        with span("obskit.profile.show", file=file):
            prof = load_profile(file)
            written, failed = write_outputs(prof, plan)
        emit_report(report(prof, top=top, outputs=written, source=file), as_json,
                    lambda r: print_report(r, title=f"Top functions of {file}"))
        raise_if_nothing_written(written, failed)

    @sub.command("diff")
    def diff_cmd(
        base: Annotated[str, typer.Argument(help="The baseline profile (any format `profile show` reads).")],
        new: Annotated[str, typer.Argument(help="The profile to compare with it.")],
        output: Annotated[Optional[str], typer.Option("--output", "-o", help="Differential flame graph (.html).",
                                                      show_default=False)] = None,
        top: TopOpt = 15,
        as_json: JsonOpt = False,
    ) -> None:
        """Compare two profiles (normalised by their sample counts); -o diff.html writes a differential flame graph."""
        from obskit.errors import UsageError
        from obskit.profile.console import DiffReport, OutputFile, print_diff
        from obskit.profile.diff import diff_profiles
        from obskit.profile.formats import load_profile
        from obskit.safefile import write_bytes
        from obskit.selftrace import span

        if output and not output.lower().endswith((".html", ".htm")):
            raise UsageError(f"the differential flame graph is HTML: {output!r}", "name it e.g. diff.html")
        if output:
            plan_outputs([output], "html")  # a missing directory is a usage error before any loading
        with span("obskit.profile.diff", base=base, new=new):
            pb, pn = load_profile(base), load_profile(new)
            d = diff_profiles(pb, pn)
            written = []
            if output:
                from obskit.profile.html import render_diff_html

                notes: list[str] = []
                size = _write_checked(output, lambda: render_diff_html(pb, pn, notes=notes), write_bytes)
                written.append(OutputFile(output, "html", size, [f"{output}: {n}" for n in notes]))
        emit(DiffReport(d, written), as_json, lambda r: print_diff(r, top=top))

    app.add_typer(sub)


def plan_outputs(paths: list[str], fmt: str | None) -> list[tuple[str, str]]:
    """(path, format) for every -o, checked before any recording starts.

    An unknown format or a missing directory is a usage error (2); a path that cannot be
    written (read-only directory, a directory name, a link planted by another user) an
    input error (9) -- both before any waiting.
    """
    import os

    from obskit.errors import UsageError
    from obskit.profile.formats import format_for_path
    from obskit.safefile import preflight

    plan = []
    for p in paths:
        f = format_for_path(p, fmt)
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            raise UsageError(f"cannot write {p}: directory {parent} does not exist", "create it or choose another -o")
        preflight(p)
        plan.append((p, f))
    return plan


def _write_checked(path: str, render: Any, writer: Any) -> int:
    from obskit.errors import InputError

    try:
        return int(writer(path, render()))
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}", "check the directory and its permissions") from None


def write_outputs(prof: Profile, plan: list[tuple[str, str]], *, keep: bool = False
                  ) -> tuple[list[OutputFile], list[ObskitError]]:
    """Write every output; one that fails does not stop the others (a recording is not repeatable).

    With ``keep`` (a recording), an output that cannot be written where asked is kept in
    obskit's state directory (:func:`obskit.state.write_or_keep`).  Returns what was written
    and one error per failure (each already warned about).
    """
    from obskit.errors import InputError, ObskitError
    from obskit.output import warn
    from obskit.profile.console import OutputFile
    from obskit.profile.formats import render
    from obskit.safefile import write_bytes
    from obskit.state import write_or_keep

    written: list[OutputFile] = []
    failed: list[ObskitError] = []
    for path, f in plan:
        try:
            notes: list[str] = []  # what the file leaves out (a pruned flame graph says so)
            data = render(prof, f, notes)
            written.append(OutputFile(path, f, write_or_keep(path, data) if keep else write_bytes(path, data),
                                      [f"{path}: {n}" for n in notes]))
        except OSError as e:  # noqa: PERF203 - one failed output must not stop the others
            failed.append(InputError(f"cannot write {path}: {e.strerror or e}", "check the directory"))
            warn(failed[-1].message)
        except ObskitError as e:
            failed.append(e)
            warn(e.message)
    return written, failed


def raise_if_nothing_written(written: list[OutputFile], failed: list[ObskitError]) -> None:
    """After the report is on screen: a result kept elsewhere is exit 11; no output at all exit 9."""
    from obskit.errors import InputError, ResultKeptElsewhere

    kept = [e for e in failed if isinstance(e, ResultKeptElsewhere)]
    if kept:
        raise kept[0]
    if failed and not written:
        raise InputError(f"no output written ({'; '.join(e.message for e in failed)})",
                         "check the directories and their permissions")


def emit_report(result: Any, as_json: bool, render: Any) -> None:
    """Print the report; a terminal that hung up (SIGHUP: EIO) or a closed pipe is not an error."""
    import errno

    try:
        emit(result, as_json, render)
    except OSError as e:
        if e.errno not in (errno.EIO, errno.EPIPE):
            raise


def _record(*, pid: int | None, command: list[str], duration: float | None, rate: int | None, subprocesses: bool,
            idle: bool, gil: bool, native: bool, blocking: bool | None, max_overhead: float,
            outputs: list[tuple[str, str]], top: int, as_json: bool, proc_root: str) -> None:
    import sys

    from obskit.child import spawn_command, stop_on_signals, terminate
    from obskit.errors import TargetExited, TargetNotFound
    from obskit.output import info, warn
    from obskit.proc import ProcFS
    from obskit.profile.console import print_report, report
    from obskit.profile.sampler import SamplerConfig, record, wait_for_interpreter

    child: subprocess.Popen[bytes] | None = None
    config = SamplerConfig(subprocesses=subprocesses, rate=rate, blocking=blocking, max_overhead=max_overhead,
                           idle=idle, gil=gil, native=native, proc_root=proc_root)
    with stop_on_signals() as stop:
        try:
            if command:
                child = spawn_command(command, stdout=sys.stderr.fileno())
                # Reap it as soon as it exits: a zombie would look alive to py-spy and to /proc checks.
                threading.Thread(target=child.wait, name="obskit-reaper", daemon=True).start()
                wait_for_interpreter(child, ProcFS(proc_root))
                pid = child.pid
            assert pid is not None

            def started(sampler: Any) -> None:
                # On stderr even with --json: the JSON is on stdout, and scripts may wait for this line.
                until = f"for {duration:g}s" if duration else "until Ctrl-C or the target exits"
                first = "" if blocking is False else " (calibrating the sampling rate first)"
                info(f"recording process {pid} {until}{first}")

            try:
                rec = record(pid, config, duration=duration, on_warning=warn, on_started=started, stop_event=stop)
            except TargetNotFound:
                if child is None or child.poll() is None:
                    raise
                # The command ran and exited (and was reaped) before the sampler attached: it exited, it was found.
                raise TargetExited(f"the command exited (status {child.returncode}) before it could be sampled",
                                   "for a short command profile a longer run", pid=pid) from None
        finally:
            if child is not None:
                terminate(child)
    prof = rec.profile
    if not prof.total_samples and prof.metadata.end_reason == "target-exited":
        raise TargetExited(f"process {pid} exited before a single sample was taken",
                           "check that the service is running; for a short command profile a longer run", pid=pid)
    written, failed = write_outputs(prof, outputs, keep=True)
    emit_report(report(prof, top=top, outputs=written, per_process=subprocesses or None), as_json, print_report)
    raise_if_nothing_written(written, failed)
