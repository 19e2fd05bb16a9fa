"""The one error hierarchy of obskit, and the one mapping from errors to exit codes.

Every failure a user can cause or meet is an :class:`ObskitError` subclass carrying
``exit_code``, a one-line ``message`` (what happened) and a ``hint`` (what to do next).
The CLI prints ``obskit: error: <message> (<hint>)`` on stderr and exits with
``exit_code``; a traceback only with ``--verbose``.  docs/exit-codes.md is the table.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    FINDINGS = 3
    TARGET_NOT_FOUND = 4
    TARGET_NOT_PYTHON = 5
    PERMISSION_DENIED = 6
    UNSUPPORTED_VERSION = 7
    TARGET_EXITED = 8
    INPUT = 9
    UNAVAILABLE = 10
    RESULT_KEPT_ELSEWHERE = 11
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


class ObskitError(Exception):
    """Base of every error obskit reports to a user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str = "", *, pid: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.pid = pid

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "hint": self.hint,
            "pid": self.pid,
        }


class UsageError(ObskitError):
    """Bad arguments or options (also what the argument parser raises)."""

    exit_code = ExitCode.USAGE


class FindingsError(ObskitError):
    """A check found problems at or above the ``--fail-on`` threshold (for CI)."""

    exit_code = ExitCode.FINDINGS


class TargetNotFound(ObskitError):
    """No such process (or it is not visible from this PID namespace)."""

    exit_code = ExitCode.TARGET_NOT_FOUND


class TargetNotPython(ObskitError):
    """The process exists but runs no Python interpreter that can be read."""

    exit_code = ExitCode.TARGET_NOT_PYTHON


class PermissionDenied(ObskitError):
    """The OS refused: ptrace, /proc access, cgroup files, sockets."""

    exit_code = ExitCode.PERMISSION_DENIED


class UnsupportedVersion(ObskitError):
    """The target's Python version is not supported by the bundled sampler."""

    exit_code = ExitCode.UNSUPPORTED_VERSION


class TargetExited(ObskitError):
    """The target exited before anything could be collected."""

    exit_code = ExitCode.TARGET_EXITED


class InputError(ObskitError):
    """A file given to obskit is missing, unreadable or not in a format obskit reads."""

    exit_code = ExitCode.INPUT


class Unavailable(ObskitError):
    """A component obskit needs is missing or down (sampler binary, in-process agent, collector)."""

    exit_code = ExitCode.UNAVAILABLE


class ResultKeptElsewhere(ObskitError):
    """The work was done but its output could not be written where asked: it was kept in a
    fallback file in obskit's own state directory, named in the message."""

    exit_code = ExitCode.RESULT_KEPT_ELSEWHERE


class Interrupted(ObskitError):
    """Ctrl-C before a command had anything to show."""

    exit_code = ExitCode.INTERRUPTED


# The table documented in docs/exit-codes.md (kept in one place; a test checks the doc against it).
EXIT_CODE_TABLE: list[tuple[ExitCode, str, str]] = [
    (ExitCode.OK, "ok", "The command did what was asked (a recording ended by Ctrl-C or by -d is a success)."),
    (ExitCode.INTERNAL, "internal error", "A bug in obskit. Re-run with --verbose and report the traceback."),
    (ExitCode.USAGE, "usage error", "Bad option, argument or combination of them."),
    (ExitCode.FINDINGS, "findings", "A check found problems at or above --fail-on (quota, gates)."),
    (ExitCode.TARGET_NOT_FOUND, "target not found", "No process with that PID is visible; the command to profile (`profile record -- CMD`) was not found."),
    (ExitCode.TARGET_NOT_PYTHON, "target not Python", "The process runs no Python interpreter that obskit can read."),
    (ExitCode.PERMISSION_DENIED, "permission denied", "ptrace or /proc access refused; the message names the fix."),
    (ExitCode.UNSUPPORTED_VERSION, "unsupported Python version", "The target's Python is too old or too new for the bundled py-spy."),
    (ExitCode.TARGET_EXITED, "target exited", "The target exited before any sample or answer could be collected."),
    (ExitCode.INPUT, "input error", "A file given to obskit is missing, unreadable, or in a format it does not read."),
    (ExitCode.UNAVAILABLE, "unavailable", "Something obskit needs is missing or down: the py-spy binary, the in-process agent."),
    (ExitCode.RESULT_KEPT_ELSEWHERE, "result kept elsewhere", "The work was done but an output could not be written where asked (full disk, directory gone): the result was kept in a file in obskit's state directory, named in the message."),
    (ExitCode.HANGUP, "hung up", "SIGHUP (the terminal or SSH session went away) before the command had a result (128 + SIGHUP). With a result, outputs are written and the exit is 0."),
    (ExitCode.INTERRUPTED, "interrupted", "Ctrl-C before the command had a result to show (128 + SIGINT)."),
    (ExitCode.TERMINATED, "terminated", "SIGTERM (timeout, Kubernetes, systemd) before the command had a result (128 + SIGTERM). With a result, outputs are written and the exit is 0."),
]
