"""Run a command as a child inside a span: start it first, forward signals, keep its exit code.

Nothing here imports OpenTelemetry: the child is running before any exporter code is
loaded.  SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to obskit with kill(2) are forwarded; a
terminal's Ctrl-C already reaches the whole foreground process group, so a
kernel-generated SIGINT is not sent a second time.

When obskit itself dies without a chance to forward anything (SIGKILL, the OOM killer),
the child must not run on orphaned: on Linux it is started with ``PR_SET_PDEATHSIG``
(SIGKILL), so the kernel kills it when obskit's thread that started it goes away.  What
remains (docs/trace.md): the child's own children are not covered (a shell script's
background jobs run on), and the kernel clears the setting when the child execs a setuid,
setgid or file-capability program.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_SI_USER = 0  # si_code of kill(2); <0 sigqueue/tkill; >0 kernel-generated


class ChildResult:
    """How the child ran and ended."""

    __slots__ = ("argv", "end_ns", "error", "exit_code", "forwarded", "pid", "signal", "start_ns")

    def __init__(
        self,
        argv: list[str],
        exit_code: int,  # what obskit exits with: the child's code, 128+N on signal N
        pid: int | None = None,
        signal: int | None = None,
        error: str = "",  # "command not found" and the like
        start_ns: int = 0,
        end_ns: int = 0,
        forwarded: list[str] | None = None,
    ) -> None:
        self.argv = argv
        self.exit_code = exit_code
        self.pid = pid
        self.signal = signal
        self.error = error
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.forwarded: list[str] = [] if forwarded is None else forwarded


def run(argv: Sequence[str], env: Mapping[str, str]) -> ChildResult:
    start_ns = time.time_ns()
    pending: list[int] = []

    def remember(signum: int, frame: object) -> None:
        pending.append(signum)

    # Signals arriving while the child starts are remembered and forwarded after.
    old = {s: signal.signal(s, remember) for s in FORWARDED}
    try:
        try:
            proc = subprocess.Popen(
                list(argv), env=dict(env), restore_signals=True, preexec_fn=_die_with_parent()
            )
        except FileNotFoundError:
            return ChildResult(
                list(argv), 127, error=f"{argv[0]}: command not found", start_ns=start_ns, end_ns=time.time_ns()
            )
        except PermissionError:
            return ChildResult(
                list(argv), 126, error=f"{argv[0]}: permission denied", start_ns=start_ns, end_ns=time.time_ns()
            )
        except OSError as e:
            return ChildResult(
                list(argv), 126, error=f"{argv[0]}: {e.strerror or e}", start_ns=start_ns, end_ns=time.time_ns()
            )
        result = ChildResult(list(argv), 0, pid=proc.pid, start_ns=start_ns)
        _wait(proc, pending, result)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    result.end_ns = time.time_ns()
    rc = proc.returncode
    if rc < 0:
        result.signal = -rc
        result.exit_code = 128 - rc
    else:
        result.exit_code = rc
    return result


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when obskit dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # obskit died before the setting took: do not run at all
            os._exit(137)

    return preexec


def _forward(proc: subprocess.Popen[bytes], signum: int, result: ChildResult) -> None:
    try:
        proc.send_signal(signum)
        result.forwarded.append(signal.Signals(signum).name)
    except (ProcessLookupError, OSError):
        pass


def _wait(proc: subprocess.Popen[bytes], pending: list[int], result: ChildResult) -> None:
    waited = set(FORWARDED) | {signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        for s in pending:
            _forward(proc, s, result)
        while proc.poll() is None:
            # SIGCHLD wakes us at once; the timeout only guards against a missed wakeup.
            info = signal.sigtimedwait(waited, 0.5)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_code > _SI_USER:
                continue  # from the kernel (terminal Ctrl-C, hangup): the child got it too
            _forward(proc, info.si_signo, result)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)
