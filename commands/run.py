"""`obskit run`: run a Python command with the obskit agent loaded (no change to the app)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command(
        "run",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
    )
    def run_cmd(
        command: Annotated[list[str], typer.Argument(help="The command: `python app.py`, `app.py`, `gunicorn app:app`...")],
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print the agent notice on stderr.")] = False,
    ) -> None:
        """Run a Python command with the obskit agent loaded (for `obskit gc`, `mem top`, `mem diff`).

        The command replaces obskit (same PID, same signals, its exit code is obskit's).
        Put `--` before the command when it has options of its own: `obskit run -- python -X dev app.py`.
        """
        import os
        import shutil
        import sys

        from obskit.agent.bootstrap import run_env
        from obskit.errors import TargetNotFound, UsageError

        argv = list(command)
        if argv and argv[0].startswith("-") and argv[0] != "--":
            # before `--`, a dash word is a mistyped option of `obskit run`, not a program
            raise UsageError(f"no such option: {argv[0]}", "see `obskit run --help`; put `--` before the command")
        if argv and argv[0] == "--":
            argv = argv[1:]
        if not argv:
            raise UsageError("no command to run", "e.g. `obskit run -- python app.py`")
        if argv[0].endswith(".py") and os.path.isfile(argv[0]) and not os.access(argv[0], os.X_OK):
            argv = [sys.executable, *argv]
        exe = shutil.which(argv[0])
        if exe is None:
            raise TargetNotFound(f"command not found: {argv[0]}", "check the name and PATH")
        env = run_env()
        if not quiet:
            sys.stderr.write(
                f"obskit: agent enabled for pid {os.getpid()}: `obskit gc --pid {os.getpid()}`, "
                f"`obskit mem top --pid {os.getpid()}`\n"
            )
            sys.stderr.flush()
        sys.stdout.flush()
        os.execvpe(exe, argv, env)
