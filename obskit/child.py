"""Commands obskit starts (``profile record -- CMD``, ``demo``, ``trace exec``): start, guard, stop.

* :func:`spawn_command` starts a command in its own process group, with a :class:`Watchdog`:
  a tiny process in its own session that outlives obskit and, when obskit's end of a pipe
  closes without a word (obskit was SIGKILLed or OOM-killed), kills the command's process
  group and every process descended from the command (SIGTERM, then SIGKILL after
  ``grace`` seconds).  ``PR_SET_PDEATHSIG`` alone would reach only the direct child and is
  cleared by a setuid exec; the watchdog covers grandchildren and setuid programs.
* :func:`terminate` stops a started command the ordinary way (SIGTERM to its group, SIGKILL
  after 5 s) and releases its watchdog.
* :func:`stop_on_signals` turns the first SIGINT, SIGTERM or SIGHUP into an event, so a
  recording ends and writes what it has; a second one raises ``KeyboardInterrupt``.

What remains: the few milliseconds between starting the command and starting its watchdog
are not covered; a descendant that both left the process group (``setsid``) *and* was
re-parented away from the command before obskit died (a double-forked daemon) is not
found; a watchdog killed together with obskit (``kill -9 -- -PGID`` of obskit's own
group is fine, the watchdog has its own session; a cgroup-wide kill is not) kills nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from obskit.errors import TargetNotFound

_WATCHDOG = r"""
import os, signal, sys, time
child, pgid, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None
born = start_time(child)
said = sys.stdin.buffer.read()  # until obskit closes the pipe, or dies
if b"release" in said or born is None:
    sys.exit(0)
def tree():
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    parent = {p: ppid(p) for p in pids}
    found, todo = set(), [child]
    while todo:
        p = todo.pop()
        for q, pp in parent.items():
            if pp == p and q not in found:
                found.add(q)
                todo.append(q)
    return {p: start_time(p) for p in found}
def kill_all(sig, members):
    try:
        if pgid > 0 and (start_time(child) == born or start_time(child) is None):
            os.killpg(pgid, sig)
    except OSError:
        pass
    for p, st in members.items():
        if st is not None and start_time(p) == st:
            try:
                os.kill(p, sig)
            except OSError:
                pass
members = tree()
if start_time(child) == born:
    members[child] = born
kill_all(signal.SIGTERM, members)
end = time.monotonic() + grace
def alive():
    return any(start_time(p) == st for p, st in members.items() if st is not None)
while time.monotonic() < end and alive():
    time.sleep(0.05)
members.update(tree())
kill_all(signal.SIGKILL, members)
"""


def _own_group() -> None:
    """preexec_fn: a process group of its own (the watchdog and :func:`terminate` signal the group).

    No ``PR_SET_PDEATHSIG``: the child dying at once with obskit would orphan its own children
    before the watchdog could find them through it.
    """
    os.setpgid(0, 0)


class Watchdog:
    """Kills a started command's process group and descendants if obskit dies before releasing it."""

    def __init__(self, child_pid: int, pgid: int = 0, *, grace: float = 2.0) -> None:
        """Guard ``child_pid`` and its descendants, and the process group ``pgid`` (0: no group of its own)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(child_pid), str(pgid), str(grace)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)

    def release(self) -> None:
        """The command ended under obskit's control: the watchdog leaves everything alone and exits."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(b"release\n")
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


_watchdogs: dict[int, Watchdog] = {}


def spawn_command(argv: list[str], *, stdout: Any = None, stderr: Any = None, stdin: Any = subprocess.DEVNULL,
                  text: bool = False, watchdog: bool = True, own_group: bool = True) -> subprocess.Popen[Any]:
    """Start ``argv`` guarded by a :class:`Watchdog` (see the module doc).

    ``own_group`` (the default) puts it in a process group of its own, which the watchdog and
    :func:`terminate` signal as a whole; an interactive command that must stay in the terminal's
    foreground group (``trace exec``) passes False, and then its descendants are found through
    their parents only.
    """
    try:
        proc: subprocess.Popen[Any] = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=stderr, text=text,
            preexec_fn=_own_group if own_group else None)
    except FileNotFoundError:
        raise TargetNotFound(f"command not found: {argv[0]}", "check the command after `--`") from None
    except PermissionError:
        raise TargetNotFound(f"command is not executable: {argv[0]}", "check the command after `--`") from None
    if watchdog:
        try:
            _watchdogs[proc.pid] = Watchdog(proc.pid, proc.pid if own_group else 0)
        except OSError:
            pass  # no watchdog (no memory for one more process): terminate() still stops the command
    return proc


def release(child: subprocess.Popen[Any]) -> None:
    """Tell the child's watchdog it is no longer needed (the command ended or was stopped by obskit)."""
    dog = _watchdogs.pop(child.pid, None)
    if dog is not None:
        dog.release()


def terminate(child: subprocess.Popen[Any], *, grace: float = 5.0) -> None:
    """Stop a process obskit started: SIGTERM to its group, then SIGKILL after ``grace`` s; release its watchdog."""
    try:
        if child.poll() is None:
            _signal_group(child, signal.SIGTERM)
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait(5)
    finally:
        release(child)


def _signal_group(child: subprocess.Popen[Any], sig: int) -> None:
    try:
        if os.getpgid(child.pid) == child.pid:
            os.killpg(child.pid, sig)
            return
    except OSError:
        pass
    try:
        child.send_signal(sig)
    except OSError:
        pass


STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT, SIGTERM or SIGHUP: a recording stops and still writes what it has.

    A second one raises ``KeyboardInterrupt`` (give up writing).  The previous handlers
    (e.g. ones that raise ``KeyboardInterrupt`` for every signal) are restored on exit.
    Only the main thread can install handlers; elsewhere the event is never set by a signal.
    """
    stop = threading.Event()

    old: dict[int, Any] = {}

    def _on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            previous = old.get(signum)
            if callable(previous):
                previous(signum, frame)  # e.g. the CLI's handler: it notes the signal for the exit code
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            if signal.getsignal(s) is signal.SIG_IGN:
                continue  # `nohup obskit ...` asked for SIGHUP to be ignored
            old[s] = signal.signal(s, _on_signal)
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
