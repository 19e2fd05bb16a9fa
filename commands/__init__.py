"""The obskit command line (installed as ``obskit.commands``).

One module per command group; each has ``register(app)``.  ``main`` is the single
place where errors become exit codes (see docs/exit-codes.md).  Command modules import
only typer at module level: heavy libraries are imported inside the command that needs them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from obskit import __version__
from obskit.errors import ExitCode, ObskitError

from . import demo, doctor, gc, logs, mem, profile, ps, quota, run, stacks, top, trace
from ._common import state

HELP = (
    "obskit: find out what is wrong with a live Python service, fast.\n\n"
    "Profiles (py-spy) with flame graphs and pprof, thread stacks and their states, container "
    "CPU/memory quotas against the workers running, memory growth and GC pauses, incident logs "
    "and OpenTelemetry traces. Every reporting command takes --json."
)

_MODULES = (demo, profile, ps, stacks, top, doctor, quota, mem, gc, run, logs, trace)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"obskit {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="obskit",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        # Plain help: typer's rich help imports rich.markdown & co (~150 ms) and --help must be instant.
        rich_markup_mode=None,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
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

    for module in _MODULES:
        module.register(app)
    return app


def _print_error(message: str) -> None:
    sys.stderr.write(f"obskit: error: {message}\n")
    sys.stderr.flush()


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
    from typer._click import exceptions as click_exc  # typer ships its own copy of click

    args = list(sys.argv[1:] if argv is None else argv)
    state.verbose = "-v" in args[:1] or "--verbose" in args
    command = typer.main.get_command(build_app())
    stdout_was_devnull = _stdout_is_devnull()
    try:
        rv = command.main(args=args, prog_name="obskit", standalone_mode=False)
    except ObskitError as e:
        if state.verbose:
            import traceback

            traceback.print_exc()
        _print_error(e.one_line())
        return int(e.exit_code)
    except click_exc.NoArgsIsHelpError as e:
        # `obskit` or `obskit profile` alone: the help is what was asked for.
        sys.stdout.write(e.ctx.get_help() + "\n" if e.ctx is not None else "")
        return int(ExitCode.OK)
    except click_exc.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "obskit"
        _print_error(f"{e.format_message()} (see `{where} --help`)")
        return int(ExitCode.USAGE)
    except click_exc.ClickException as e:
        _print_error(e.format_message())
        return int(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _print_error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # Output piped into `head` and similar: not an error of ours.
        _silence_stdout()
        return int(ExitCode.OK)
    except SystemExit as e:
        # The argument parser turns EPIPE into sys.exit(1) after wrapping stdout; a reader that
        # stopped reading (`obskit ... | head -1`) is not a failure.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper" or (_stdout_is_devnull() and not stdout_was_devnull):
            # (rich's console does the same: stdout redirected to /dev/null, then SystemExit(1).)
            _silence_stdout()
            return int(ExitCode.OK)
        return e.code if isinstance(e.code, int) else int(ExitCode.INTERNAL)
    except Exception as e:
        if state.verbose:
            import traceback

            traceback.print_exc()
        _print_error(f"internal error: {type(e).__name__}: {e} (re-run with --verbose and report the traceback)")
        return int(ExitCode.INTERNAL)
    if isinstance(rv, int):
        return rv
    return int(ExitCode.OK)
