"""What a thread is doing, read from its stack: a pure function over frames.

py-spy only shows Python frames, so a thread blocked inside a C call (``lock.acquire()``,
``sock.recv()``, ``time.sleep()``) shows the *caller's* frame on top.  The classifier
therefore uses three kinds of evidence, strongest first, and records which rule fired:

1. library frames (``Condition.wait`` under ``Queue.get``, ``selectors`` under
   ``BaseEventLoop._run_once``, ``concurrent.futures`` ``_worker``, ...);
2. the source line of the innermost frame (``lock.acquire()``, ``a.recv(10)``);
3. the system call the OS thread is blocked in (``/proc/PID/task/TID/syscall``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class ThreadState(str, Enum):
    RUNNING = "running"
    WAITING_LOCK = "waiting_lock"
    BLOCKED_IO = "blocked_io"
    SLEEPING = "sleeping"
    IDLE_POOL = "idle_pool"
    IDLE_LOOP = "idle_loop"
    IDLE = "idle"  # off CPU, cause not recognised

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    ThreadState.RUNNING: "running",
    ThreadState.WAITING_LOCK: "waiting on a lock",
    ThreadState.BLOCKED_IO: "blocked on I/O",
    ThreadState.SLEEPING: "sleeping",
    ThreadState.IDLE_POOL: "idle in a thread pool",
    ThreadState.IDLE_LOOP: "idle in an event loop",
    ThreadState.IDLE: "idle",
}


@dataclass(frozen=True)
class FrameRef:
    """The part of a frame the classifier looks at (innermost frame first in lists)."""

    name: str
    filename: str
    line: int = 0


@dataclass(frozen=True)
class Classification:
    state: ThreadState
    rule: str  # which rule fired, e.g. "frame:queue.py:Queue.get"
    detail: str  # what the thread waits for, for people ("queue.Queue.get", "socket recv")


# (module file suffix, function name) -> (state, detail).  Checked for each frame, innermost first.
_FRAME_RULES: list[tuple[str, str, ThreadState, str]] = [
    # idle pools and loops first: their inner frames (selectors, Condition.wait) would otherwise win
    ("concurrent/futures/thread.py", "_worker", ThreadState.IDLE_POOL, "concurrent.futures worker waiting for work"),
    ("multiprocessing/pool.py", "worker", ThreadState.IDLE_POOL, "multiprocessing.pool worker waiting for work"),
    ("asyncio/base_events.py", "_run_once", ThreadState.IDLE_LOOP, "asyncio event loop waiting for events"),
    ("asyncio/base_events.py", "run_forever", ThreadState.IDLE_LOOP, "asyncio event loop waiting for events"),
    ("queue.py", "get", ThreadState.WAITING_LOCK, "queue.Queue.get"),
    ("queue.py", "put", ThreadState.WAITING_LOCK, "queue.Queue.put (queue full)"),
    ("threading.py", "Event.wait", ThreadState.WAITING_LOCK, "threading.Event.wait"),
    ("threading.py", "Semaphore.acquire", ThreadState.WAITING_LOCK, "threading.Semaphore.acquire"),
    ("threading.py", "Barrier.wait", ThreadState.WAITING_LOCK, "threading.Barrier.wait"),
    ("threading.py", "Thread.join", ThreadState.WAITING_LOCK, "threading.Thread.join"),
    ("threading.py", "_wait_for_tstate_lock", ThreadState.WAITING_LOCK, "threading.Thread.join"),
    ("threading.py", "Condition.wait", ThreadState.WAITING_LOCK, "threading.Condition.wait"),
    ("threading.py", "RLock.acquire", ThreadState.WAITING_LOCK, "threading.RLock.acquire"),
    ("selectors.py", "select", ThreadState.BLOCKED_IO, "selectors select"),
    ("socket.py", "accept", ThreadState.BLOCKED_IO, "socket accept"),
    ("socket.py", "readinto", ThreadState.BLOCKED_IO, "socket recv"),
    ("socket.py", "create_connection", ThreadState.BLOCKED_IO, "socket connect"),
    ("socket.py", "sendall", ThreadState.BLOCKED_IO, "socket send"),
    ("ssl.py", "read", ThreadState.BLOCKED_IO, "ssl read"),
    ("ssl.py", "recv", ThreadState.BLOCKED_IO, "ssl recv"),
    ("ssl.py", "recv_into", ThreadState.BLOCKED_IO, "ssl recv"),
    ("ssl.py", "do_handshake", ThreadState.BLOCKED_IO, "ssl handshake"),
    ("ssl.py", "sendall", ThreadState.BLOCKED_IO, "ssl send"),
    ("subprocess.py", "_try_wait", ThreadState.BLOCKED_IO, "subprocess wait"),
    ("subprocess.py", "wait", ThreadState.BLOCKED_IO, "subprocess wait"),
    ("subprocess.py", "communicate", ThreadState.BLOCKED_IO, "subprocess communicate"),
    ("multiprocessing/connection.py", "_recv", ThreadState.BLOCKED_IO, "multiprocessing pipe recv"),
    ("multiprocessing/connection.py", "wait", ThreadState.BLOCKED_IO, "multiprocessing wait"),
    ("http/client.py", "_read_status", ThreadState.BLOCKED_IO, "HTTP response"),
    ("socketserver.py", "serve_forever", ThreadState.BLOCKED_IO, "socketserver accept loop"),
]

# Source-line patterns of the innermost frame: the C call the thread is inside.
_LINE_RULES: list[tuple[str, re.Pattern[str], ThreadState, str]] = [
    ("sleep", re.compile(r"\bsleep\s*\("), ThreadState.SLEEPING, "time.sleep"),
    ("acquire", re.compile(r"\.acquire\s*\(|^\s*with\b.*(\block\b|_lock\b|\bmutex\b)", re.I), ThreadState.WAITING_LOCK, "Lock.acquire"),
    ("socket", re.compile(r"\.(recv|recv_into|recvfrom|recvmsg|accept|connect|connect_ex|send|sendall|sendto)\s*\("), ThreadState.BLOCKED_IO, "socket"),
    ("select", re.compile(r"\b(select|poll|epoll|kqueue)\b.*\("), ThreadState.BLOCKED_IO, "select/poll"),
    ("file", re.compile(r"\.(read|readline|readlines|readinto|write|flush)\s*\(|\binput\s*\("), ThreadState.BLOCKED_IO, "file read/write"),
    ("wait", re.compile(r"\.(wait|communicate)\s*\(|\bwaitpid\s*\("), ThreadState.BLOCKED_IO, "wait"),
    ("join", re.compile(r"\.join\s*\("), ThreadState.WAITING_LOCK, "join"),
    ("get", re.compile(r"\.get\s*\("), ThreadState.WAITING_LOCK, "queue get"),
]

# Linux syscall names (numbers per architecture in dump.py) -> state.
_SYSCALL_RULES: dict[str, tuple[ThreadState, str]] = {
    "futex": (ThreadState.WAITING_LOCK, "futex wait"),
    "nanosleep": (ThreadState.SLEEPING, "nanosleep"),
    "clock_nanosleep": (ThreadState.SLEEPING, "clock_nanosleep"),
    "select": (ThreadState.BLOCKED_IO, "select"),
    "pselect6": (ThreadState.BLOCKED_IO, "pselect6"),
    "poll": (ThreadState.BLOCKED_IO, "poll"),
    "ppoll": (ThreadState.BLOCKED_IO, "ppoll"),
    "epoll_wait": (ThreadState.BLOCKED_IO, "epoll_wait"),
    "epoll_pwait": (ThreadState.BLOCKED_IO, "epoll_pwait"),
    "epoll_pwait2": (ThreadState.BLOCKED_IO, "epoll_pwait2"),
    "read": (ThreadState.BLOCKED_IO, "read"),
    "readv": (ThreadState.BLOCKED_IO, "readv"),
    "pread64": (ThreadState.BLOCKED_IO, "pread64"),
    "write": (ThreadState.BLOCKED_IO, "write"),
    "recvfrom": (ThreadState.BLOCKED_IO, "recvfrom"),
    "recvmsg": (ThreadState.BLOCKED_IO, "recvmsg"),
    "sendto": (ThreadState.BLOCKED_IO, "sendto"),
    "sendmsg": (ThreadState.BLOCKED_IO, "sendmsg"),
    "accept": (ThreadState.BLOCKED_IO, "accept"),
    "accept4": (ThreadState.BLOCKED_IO, "accept4"),
    "connect": (ThreadState.BLOCKED_IO, "connect"),
    "wait4": (ThreadState.BLOCKED_IO, "wait4 (child process)"),
    "waitid": (ThreadState.BLOCKED_IO, "waitid (child process)"),
    "pause": (ThreadState.SLEEPING, "pause"),
    "select_sleep": (ThreadState.SLEEPING, "select with no file descriptors (time.sleep before 3.11)"),
    "poll_sleep": (ThreadState.SLEEPING, "poll with no file descriptors"),
    "rt_sigtimedwait": (ThreadState.SLEEPING, "sigwait"),
    "rt_sigsuspend": (ThreadState.SLEEPING, "sigsuspend"),
}


def classify(
    frames: Sequence[FrameRef],
    *,
    active: bool = False,
    owns_gil: bool = False,
    source_line: str | None = None,
    syscall: str | None = None,
) -> Classification:
    """The state of one thread.  ``frames`` is innermost first (py-spy's order)."""
    if owns_gil:
        why = "py-spy:owns_gil" if not active else "py-spy:active"
        return Classification(ThreadState.RUNNING, why, "on CPU, holding the GIL")
    for i, frame in enumerate(frames):
        hit = _frame_rule(frame, _IDLE_RULES)
        # A pool worker or event loop is idle only when nothing but library wait code is inside it;
        # a handler blocking the loop or a task holding the worker is classified by its own frames.
        if hit is not None and all(_is_library_wait(f) for f in frames[:i]):
            state, detail, rule = hit
            return Classification(state, rule, detail)
    # Within the innermost run of library frames the most specific rule wins
    # (Queue.get over the Condition.wait inside it).
    prefix: list[FrameRef] = []
    for frame in frames:
        if not _is_library(frame):
            break
        prefix.append(frame)
    for wait_rule in _WAIT_RULES:
        for frame in prefix:
            hit = _frame_rule(frame, [wait_rule])
            if hit is not None:
                state, detail, name = hit
                return Classification(state, name, detail)
    # py-spy's "active" is a guess from the thread's OS state at the instant of the dump; a thread
    # inside a library wait, or found blocked in a system call right after, is only passing through.
    if active and (syscall is None or syscall not in _SYSCALL_RULES):
        return Classification(ThreadState.RUNNING, "py-spy:active", "on CPU")
    if frames and source_line:
        for name, pattern, state, detail in _LINE_RULES:
            if pattern.search(source_line):
                return Classification(state, f"line:{name}", f"{detail}: {source_line.strip()[:80]}")
    if syscall:
        if syscall == "running":
            return Classification(ThreadState.RUNNING, "syscall:running", "on CPU (native code, GIL released)")
        hit2 = _SYSCALL_RULES.get(syscall)
        if hit2 is not None:
            return Classification(hit2[0], f"syscall:{syscall}", hit2[1])
    return Classification(ThreadState.IDLE, "default:idle", "off CPU")


_IDLE_RULES = [r for r in _FRAME_RULES if r[2] in (ThreadState.IDLE_POOL, ThreadState.IDLE_LOOP)]
_WAIT_RULES = [r for r in _FRAME_RULES if r not in _IDLE_RULES]
_LIBRARY_WAIT_FILES = ("selectors.py", "queue.py", "threading.py", "multiprocessing/queues.py", "multiprocessing/connection.py")


_LIBRARY_FILES = tuple({r[0] for r in _FRAME_RULES} | set(_LIBRARY_WAIT_FILES))


def _is_library(frame: FrameRef) -> bool:
    fname = frame.filename.replace("\\", "/")
    return any(fname == f or fname.endswith("/" + f) for f in _LIBRARY_FILES)


def _is_library_wait(frame: FrameRef) -> bool:
    fname = frame.filename.replace("\\", "/")
    return any(fname == f or fname.endswith("/" + f) for f in _LIBRARY_WAIT_FILES)


def _frame_rule(frame: FrameRef, rules: list[tuple[str, str, ThreadState, str]]) -> tuple[ThreadState, str, str] | None:
    fname = frame.filename.replace("\\", "/")
    for suffix, func, state, detail in rules:
        if not (fname == suffix or fname.endswith("/" + suffix)):
            continue
        name = frame.name
        # py-spy >= 0.4 qualifies methods ("Queue.get"); older versions print only "get".
        if name == func or name.endswith("." + func) or func.endswith("." + name):
            return state, detail, f"frame:{suffix}:{func}"
    return None
