"""The obskit command line (installed as ``obskit.commands``).

One module per command group, ``commands/<name>.py``, each with ``register(app)``.  ``main``
is the single place where errors become exit codes (see docs/exit-codes.md).

Start-up is part of the product: only the command that runs is imported and turned into a
click command (typer's conversion of every option of every command cost ~250 ms), and
command modules import only typer at module level: heavy libraries are imported inside the
command that needs them.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from obskit import __version__
from obskit.errors import ExitCode, Interrupted, ObskitError
from obskit.output import reset_result, result_shown

from ._common import state

HELP = (
    "obskit: find out what is wrong with a live Python service, fast.\n\n"
    "Profiles (py-spy) with flame graphs and pprof, thread stacks and their states, container "
    "CPU/memory quotas against the workers running, memory growth and GC pauses, incident logs "
    "and OpenTelemetry traces. Every reporting command takes --json."
)

# name -> the one-line help `obskit --help` shows; `commands/<name>.py` registers the command
# (a test checks this table against what the modules register).
COMMANDS: dict[str, str] = {
    "demo": "Start the bundled demo service, profile it for a few seconds and write profile.html.",
    "profile": "Sampling profiles: record, show, diff.",
    "ps": "List every Python process, as a tree of masters and workers.",
    "stacks": "Dump every thread's stack, grouped and classified (lock, I/O, sleeping, running).",
    "top": "Live view: sampled top functions beside CPU, RSS, threads, fds and CPU throttling.",
    "doctor": "Check that obskit can attach here, one line per check with the fix.",
    "quota": "Container CPU and memory quotas against the workers actually running.",
    "mem": "Memory of a process (tree): RSS, PSS, USS, swap and where it is (heap, arenas, libraries, stacks).",
    "gc": "GC collections per generation, pauses, thresholds and advice (needs the obskit agent in the target).",
    "run": "Run a Python command with the obskit agent loaded (for `obskit gc`, `mem top`, `mem diff`).",
    "logs": "Follow, parse, filter and summarise incident logs.",
    "snapshot": "One archive with the whole incident: stacks, profile, memory, GC, quota, logs (for kubectl debug).",
    "serve": "Serve Prometheus metrics of every Python process here; push continuous profiles to Pyroscope.",
    "trace": "OpenTelemetry traces from the terminal (exec, span, event) and of obskit's own work.",
    "bench": "CI performance gate: compare base and head (commands or result files), decide, show where the time went.",
}


def _typer(**kw: Any) -> typer.Typer:
    # Plain help: typer's rich help imports rich.markdown & co (~150 ms) and --help must be instant.
    return typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False, **kw)


def load_command(name: str) -> Any:
    """The click command for ``obskit NAME``, built from ``commands/NAME.py``."""
    module = importlib.import_module(f".{name}", __name__)
    sub = _typer()

    @sub.callback()
    def _group() -> None:  # makes `sub` a group, so the command keeps its own name
        pass

    module.register(sub)
    return typer.main.get_command(sub).commands[name]  # type: ignore[attr-defined]


class LazyGroup(TyperGroup):
    """The root group: lists COMMANDS without importing them; builds only the one invoked."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"obskit {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The root app: global options only; commands come from :class:`LazyGroup`."""
    app = _typer(
        name="obskit",
        help=HELP,
        no_args_is_help=True,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        cls=LazyGroup,
    )

    @app.callback()
    def _root(
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail; tracebacks on errors.")] = False,
        version: Annotated[
            Optional[bool],
            typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
        ] = None,
    ) -> None:
        state.verbose = verbose

    return app


def _print_error(message: str) -> None:
    from obskit.inert import inert

    try:
        # Messages quote paths, agent answers and names from targets: one inert line, always.
        sys.stderr.write(f"obskit: error: {inert(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        _silence(2)  # a hung-up terminal (EIO) or a closed pipe: nobody to tell


# SIGTERM (timeout, Kubernetes, systemd) and SIGHUP (an SSH disconnect) end a long command the
# way Ctrl-C does: the command's KeyboardInterrupt path writes its outputs and prints its report.
# Commands that forward signals to a child (`trace exec`, `run`) install their own handlers.
TERMINATING = ("SIGTERM", "SIGHUP")


class _Signals:
    received: int | None = None
    finishing = False  # the command is over: errors are being reported, a signal only counts


def _on_terminating_signal(signum: int, frame: object) -> None:
    if _Signals.received is not None:
        return  # the first signal is ending the command; a second (TERM after HUP) only waits
    _Signals.received = signum
    if not _Signals.finishing:
        raise KeyboardInterrupt


def _install_signal_handlers() -> dict[int, Any]:
    import signal
    import threading

    old: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return old
    _Signals.received = None
    _Signals.finishing = False
    reset_result()
    for name in TERMINATING:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN:
            continue  # `nohup obskit ...` asked for SIGHUP to be ignored
        old[sig] = signal.signal(sig, _on_terminating_signal)
    return old


def _restore_signal_handlers(old: dict[int, Any]) -> None:
    import signal

    if _Signals.received is not None:
        _ignore_terminating_signals()  # ending anyway: a second TERM/HUP must not cut the exit short
        return
    for sig, handler in old.items():
        signal.signal(sig, handler)


def _ignore_terminating_signals() -> None:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for name in TERMINATING:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def _interrupted_code() -> int:
    """128 + N for the signal that ended a command before it had a result."""
    return 128 + _Signals.received if _Signals.received is not None else int(ExitCode.INTERRUPTED)


def _interrupted_message() -> str:
    import signal

    if _Signals.received is None:
        return "interrupted"
    return f"stopped by {signal.Signals(_Signals.received).name} before there was a result"


def _silence(fd: int) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _in_context(e: BaseException, wanted: Callable[[BaseException], bool]) -> BaseException | None:
    """``e`` or the first exception it happened while handling (its ``__context__`` chain) that is ``wanted``."""
    seen: BaseException | None = e
    for _ in range(20):
        if seen is None:
            return None
        if wanted(seen):
            return seen
        seen = seen.__context__
    return None


def _no_result(e: BaseException) -> bool:
    """True when ``e`` happened while a command was reporting that it had no result yet."""
    return _in_context(e, lambda x: isinstance(x, Interrupted)) is not None


def _is_terminal_gone(e: BaseException) -> bool:
    """EIO on a hung-up terminal, EPIPE on a closed pipe: output nobody can read, not a failure."""
    import errno

    return isinstance(e, OSError) and e.errno in (errno.EIO, errno.EPIPE)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _stdout_is_devnull() -> bool:
    try:
        st, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (null.st_dev, null.st_ino)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (the console script passes it to sys.exit)."""

    args = list(sys.argv[1:] if argv is None else argv)
    state.verbose = "-v" in args[:1] or "--verbose" in args
    stdout_was_devnull = _stdout_is_devnull()
    old_handlers = _install_signal_handlers()
    try:
        return _main(args, stdout_was_devnull)
    except KeyboardInterrupt:
        # A signal while an error was being reported (before `finishing` was set): still one line.
        _Signals.finishing = True
        _print_error(_interrupted_message())
        return _interrupted_code()
    finally:
        _Signals.finishing = True
        if argv is None:
            # The process exits next: a late SIGTERM/SIGHUP (the second of a hang-up) must not kill
            # it on the way out with its result already written.
            _ignore_terminating_signals()
        else:
            _restore_signal_handlers(old_handlers)


def _main(args: list[str], stdout_was_devnull: bool) -> int:
    from typer._click import exceptions as click_exc  # typer ships its own copy of click

    try:
        command = typer.main.get_command(build_app())
        _keep_interrupts_ours(command)
        rv = command.main(args=args, prog_name="obskit", standalone_mode=False)
        _Signals.finishing = True
    except Interrupted as e:
        _Signals.finishing = True
        if _Signals.received is None:
            _print_error(e.one_line())
            return int(e.exit_code)
        _print_error(f"{e.one_line()} ({_interrupted_message()})")
        return _interrupted_code()
    except ObskitError as e:
        _Signals.finishing = True
        if state.verbose:
            import traceback

            traceback.print_exc()
        _print_error(e.one_line())
        return int(e.exit_code)
    except click_exc.NoArgsIsHelpError as e:
        _Signals.finishing = True
        # `obskit` or `obskit profile` alone: the help is what was asked for.
        sys.stdout.write(e.ctx.get_help() + "\n" if e.ctx is not None else "")
        return int(ExitCode.OK)
    except click_exc.UsageError as e:
        _Signals.finishing = True
        where = e.ctx.command_path if e.ctx is not None else "obskit"
        _print_error(f"{e.format_message()} (see `{where} --help`)")
        return int(ExitCode.USAGE)
    except click_exc.ClickException as e:
        _Signals.finishing = True
        _print_error(e.format_message())
        return int(e.exit_code)
    except (typer.Abort, KeyboardInterrupt, _CommandInterrupted) as e:
        _Signals.finishing = True
        if result_shown():
            return int(ExitCode.OK)  # a stream's lines were its result: this is its normal end
        gone = _in_context(e, _is_terminal_gone)  # the EIO/EPIPE this interrupt landed on, if any
        if gone is not None:
            # The terminal hung up while the report was printed, and its SIGHUP landed on the way
            # out: the same end as the hang-up alone.
            _silence(1)
            _silence(2)
            return _interrupted_code() if _no_result(gone) else int(ExitCode.OK)
        _print_error(_interrupted_message())
        return _interrupted_code()
    except BrokenPipeError:
        _Signals.finishing = True
        # Output piped into `head` and similar: not an error of ours.
        _silence_stdout()
        return int(ExitCode.OK)
    except OSError as e:
        _Signals.finishing = True
        if not _is_terminal_gone(e):
            return _internal(e)
        # The terminal hung up (EIO) while the report was printed: outputs are written, nobody
        # reads.  A hang-up signal may still be on its way: it must not kill the exit path.
        _silence(1)
        _silence(2)
        _ignore_terminating_signals()
        return _interrupted_code() if _no_result(e) else int(ExitCode.OK)
    except SystemExit as e:
        _Signals.finishing = True
        # The argument parser turns EPIPE into sys.exit(1) after wrapping stdout; a reader that
        # stopped reading (`obskit ... | head -1`) is not a failure.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper" or (_stdout_is_devnull() and not stdout_was_devnull):
            # (rich's console does the same: stdout redirected to /dev/null, then SystemExit(1).)
            _silence_stdout()
            return int(ExitCode.OK)
        return e.code if isinstance(e.code, int) else int(ExitCode.INTERNAL)
    except Exception as e:
        _Signals.finishing = True
        return _internal(e)
    if isinstance(rv, int):
        return rv
    return int(ExitCode.OK)


class _CommandInterrupted(BaseException):
    """A KeyboardInterrupt that left a command: Typer would turn it into a silent exit 130."""


def _keep_interrupts_ours(command: Any) -> None:
    invoke = command.invoke

    def guarded(ctx: Any) -> Any:
        try:
            return invoke(ctx)
        except KeyboardInterrupt as e:
            raise _CommandInterrupted from e

    command.invoke = guarded


def _internal(e: BaseException) -> int:
    if state.verbose:
        import traceback

        traceback.print_exc()
    _print_error(f"internal error: {type(e).__name__}: {e} (re-run with --verbose and report the traceback)")
    return int(ExitCode.INTERNAL)
