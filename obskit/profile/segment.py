"""The segment runner: one ``py-spy record -f raw`` process, from launch to the profile it wrote.

A :class:`Segment` starts py-spy against a PID at one rate and mode, says when py-spy is
really sampling (its ``Sampling process`` line), measures py-spy's busy time (running or
waiting for a CPU, nanosecond schedstat) for the pause estimate of blocking mode, and on :meth:`Segment.stop` sends
SIGINT, waits for the file and parses it into a :class:`SegmentResult`.  Segments never
overlap (the sampler stops one before it starts the next), so every sampled instant is
counted once.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from obskit import pyspy
from obskit.errors import ObskitError
from obskit.proc import ProcFS
from obskit.profile.model import Profile, parse_collapsed

_PROC = ProcFS()  # py-spy is obskit's own child: always in obskit's /proc
_SAMPLES_RE = re.compile(r"Samples:\s*(\d+)\s+Errors:\s*(\d+)")
START_TIMEOUT = 20.0  # py-spy start-up on a loaded machine (symbol tables of a big interpreter)
STOP_TIMEOUT = 20.0  # from SIGINT to "Wrote ...": long raw files of deep stacks take a while
MARK_AFTER = 0.35  # seconds after py-spy says it samples: its start-up CPU is spent by then


@dataclass(frozen=True)
class SegmentFlags:
    """py-spy options that stay the same for every segment of a recording."""

    subprocesses: bool = False
    idle: bool = False
    gil: bool = False
    native: bool = False


@dataclass
class SegmentResult:
    """What one stopped segment recorded and cost."""

    profile: Profile
    samples: int  # py-spy's own count of valid samples
    errors: int  # and of failed ones
    t_start: float  # monotonic: py-spy began sampling
    t_stop: float  # monotonic: py-spy was told to stop (or was last seen alive)
    cpu_ns: int  # py-spy's busy time (running or waiting for a CPU) from sampling start to stop
    problem: str = ""  # why some of the samples could not be read, if so

    @property
    def duration(self) -> float:
        return max(0.0, self.t_stop - self.t_start) if self.t_start else 0.0


def schedstat_ns(pid: int, seen: dict[str, int] | None = None) -> int:
    """Time (ns) every thread of ``pid`` spent running *or waiting for a CPU*, from schedstat.

    In blocking mode the target stays stopped for py-spy's whole turn, including the time
    py-spy waits for a CPU on a busy machine: on deep stacks that wait is several times its
    CPU time, so counting CPU alone underestimated the pause tenfold.  With ``seen``
    (tid -> last figure), threads that have exited since keep their last figure, so the
    total never goes backwards when py-spy's start-up threads end.
    """
    totals = seen if seen is not None else {}
    try:
        tids = _PROC.tasks(pid)
    except ObskitError:
        return sum(totals.values())
    for tid in tids:
        figures = _PROC.schedstat(pid, tid)
        if figures is not None:  # None: a thread that just ended
            totals[str(tid)] = max(totals.get(str(tid), 0), figures[0] + figures[1])
    return sum(totals.values())


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn: py-spy gets SIGTERM if obskit dies (OOM-killed in a small debug container, SIGKILL).

    A blocking sampler left attached to a production service would keep pausing it forever.
    py-spy is obskit's direct child and never setuid, so ``PR_SET_PDEATHSIG`` is enough here.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


_PREEXEC = _die_with_parent()


_ENDS_WITH_COUNT = re.compile(r" \d+\n?$")


def join_wrapped_lines(lines: Iterable[str]) -> Iterator[str]:
    """py-spy's raw lines, each whole: with ``-s`` a process frame holds the command line verbatim, so a
    command with a newline in it (``python -c "..."``) spreads one sample over several lines."""
    held: list[str] = []
    for line in lines:
        held.append(line.rstrip("\r\n"))
        if _ENDS_WITH_COUNT.search(line):
            yield "\\n".join(held)
            held = []
    if held and any(h.strip() for h in held):
        yield "\\n".join(held)


class Segment:
    """One ``py-spy record`` process (started at once; call :meth:`stop` to get its samples)."""

    def __init__(self, pid: int, rate: float, mode: str, path: str, flags: SegmentFlags, *,
                 offset: float = 0.0) -> None:
        self.pid = pid
        self.rate = rate
        self.mode = mode
        self.path = path
        self.offset = offset  # seconds from the start of the recording
        cmd = [pyspy.binary(), "record", "-f", "raw", "--threads", "-r", str(int(rate)), "--pid", str(pid), "-o", path]
        options = {"--subprocesses": flags.subprocesses, "--idle": flags.idle, "--gil": flags.gil,
                   "--native": flags.native, "--nonblocking": mode == "nonblocking"}
        cmd += [flag for flag, on in options.items() if on]
        self.lines: list[str] = []
        self.started = threading.Event()
        self.t_start = 0.0
        self._cpu_start = 0
        self.mark: tuple[float, int] | None = None
        self._thread_cpu: dict[str, int] = {}
        self._cpu_seen_at = 0.0
        # Own session: a Ctrl-C in the terminal reaches obskit, which stops py-spy itself after collecting.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, env=pyspy.env(), start_new_session=True, preexec_fn=_PREEXEC)
        self._reader = threading.Thread(target=self._read, name="obskit-pyspy-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if not self.started.is_set() and "Sampling process" in line:
                self._cpu_start = self.cpu_ns()
                self.t_start = time.monotonic()
                self.started.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_started(self, timeout: float = START_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.started.wait(0.05):
                return True
            if self.proc.poll() is not None:
                self._reader.join(2)
                return self.started.is_set()
        return self.started.is_set()

    def running(self) -> bool:
        return self.proc.poll() is None

    def exited_by_itself(self) -> bool:
        return self.proc.poll() is not None

    def cpu_ns(self) -> int:
        self._cpu_seen_at = time.monotonic()
        return schedstat_ns(self.proc.pid, self._thread_cpu)

    def take_mark(self) -> None:
        """Remember (time, py-spy CPU) once py-spy's start-up work (symbols, first code objects) is behind it."""
        if self.mark is None and self.started.is_set() and time.monotonic() - self.t_start >= MARK_AFTER:
            self.mark = (time.monotonic(), self.cpu_ns())

    def live_pause(self, nproc: int, achieved: float | None) -> float | None:
        """Pause per sample and process since the mark (blocking: py-spy's busy time while the target is stopped).

        ``achieved`` (samples taken / asked, from a finished segment) corrects for py-spy falling
        behind; without it whole ticks only are counted, erring towards a lower rate.
        """
        if self.mode != "blocking" or self.mark is None:
            return None
        t0, cpu0 = self.mark
        elapsed = time.monotonic() - t0
        ticks = elapsed * self.rate * achieved if achieved else float(math.floor(elapsed * self.rate))
        if ticks < 1:
            return None
        cpu = (self.cpu_ns() - cpu0) / 1e9
        if cpu < 20e-6 * ticks:
            return None  # py-spy has not been sampling (still starting, or descheduled): nothing measured
        return cpu / ticks / max(1, nproc)

    def stop(self, timeout: float = STOP_TIMEOUT) -> SegmentResult:
        """SIGINT, wait for the output, read it."""
        if self.proc.poll() is None:
            cpu_stop = self.cpu_ns()
            t_stop = time.monotonic()
            try:
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        else:
            # py-spy ended by itself (the target exited): its CPU as last seen, polled every 0.1 s.
            cpu_stop = sum(self._thread_cpu.values())
            t_stop = self._cpu_seen_at or time.monotonic()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        samples = errors = 0
        for line in self.lines:
            m = _SAMPLES_RE.search(line)
            if m:
                samples, errors = int(m.group(1)), int(m.group(2))
        prof = Profile()
        problem = ""
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    parse_collapsed(join_wrapped_lines(f), prof, default_pid=self.pid)
            except (ObskitError, OSError) as e:
                # Keep the stacks read before the bad line; say what was lost.
                problem = f"py-spy's output could not be read whole: {getattr(e, 'message', e)}"
        if samples == 0 and prof.total_samples:
            samples = int(prof.total_samples)  # py-spy was killed before its summary line
        cpu = max(0, cpu_stop - self._cpu_start) if self._cpu_start and cpu_stop else 0
        return SegmentResult(prof, samples, errors, self.t_start, max(t_stop, self.t_start), cpu, problem)
