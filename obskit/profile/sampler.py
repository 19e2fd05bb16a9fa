"""The py-spy driver: sampling a live process into obskit's Profile, safely and on wall-clock time.

py-spy runs in *segments*: one ``py-spy record -f raw`` per segment, stopped with
SIGINT.  Segments give incremental results (:meth:`LiveSampler.collect`), let the rate
be re-chosen from the pause each segment measured (see :mod:`obskit.profile.safety`),
and make obskit, not py-spy, the owner of time: py-spy's ``-d`` counts samples, so a
loaded target would run far past it.  The next segment starts sampling before the
previous one is stopped, so no stretch of time goes unsampled between them.

Every segment's samples are kept whatever ends the recording (duration, Ctrl-C, the
target exiting), and every failed sample is counted in the :class:`Accounting`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

from obskit import attach, pyspy
from obskit.errors import ObskitError, TargetExited, Unavailable
from obskit.proc import ProcessFacts, ProcFS, classify_roles
from obskit.profile import safety
from obskit.profile.model import Profile, parse_collapsed

_SAMPLES_RE = re.compile(r"Samples:\s*(\d+)\s+Errors:\s*(\d+)")
START_TIMEOUT = 20.0  # py-spy start-up on a loaded machine (symbol tables of a big interpreter)
STOP_TIMEOUT = 20.0
MARK_AFTER = 0.35  # seconds after py-spy says it samples: its start-up CPU is spent by then  # from SIGINT to "Wrote ...": long raw files of deep stacks take a while


@dataclass
class SegmentStats:
    start_offset_s: float
    duration_s: float
    rate: float
    mode: str
    samples: int
    errors: int
    processes: int
    pause_per_sample_ms: float | None
    end: str  # rotated | stopped | target-exited | failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Accounting:
    """What was asked, what was done, and what it cost the target."""

    requested_rate: float | None = None
    effective_rate: float | None = None
    rate: float | None = None  # the rate of the latest segment
    mode: str = "blocking"
    samples_attempted: int = 0
    samples_valid: int = 0
    samples_failed: int = 0
    pause_share: float | None = None  # estimated share of wall time each process was stopped
    pause_per_sample_ms: float | None = None
    max_overhead: float = safety.DEFAULT_MAX_OVERHEAD
    sampled_seconds: float = 0.0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    segments: list[SegmentStats] = field(default_factory=list)

    @property
    def valid_share(self) -> float | None:
        return self.samples_valid / self.samples_attempted if self.samples_attempted else None

    def summary(self) -> str:
        rate = f"{self.effective_rate:.0f} Hz" if self.effective_rate else "-"
        req = f"{self.requested_rate:g} Hz" if self.requested_rate else "100 Hz (default)"
        valid = f" ({self.valid_share:.0%} valid)" if self.valid_share is not None else ""
        pause = f"{self.pause_share:.1%}" if self.pause_share is not None else "unknown"
        return (
            f"{self.samples_attempted} samples attempted, {self.samples_valid} valid, {self.samples_failed} failed{valid}; "
            f"{self.mode} at {rate} (requested {req}); target stopped ~{pause} of the time "
            f"(budget {self.max_overhead:.0%})"
        )


def _schedstat_ns(pid: int, seen: dict[str, int] | None = None) -> int:
    """CPU time (ns) of every thread of ``pid`` from schedstat: finer than the 10 ms clock ticks of stat.

    With ``seen`` (tid -> last figure), threads that have exited since keep their last figure,
    so the total never goes backwards when py-spy's start-up threads end.
    """
    totals = seen if seen is not None else {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return sum(totals.values())
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                totals[tid] = max(totals.get(tid, 0), int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):  # noqa: PERF203 - a thread that just ended
            continue
    return sum(totals.values())


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn: py-spy gets SIGTERM if obskit dies (OOM-killed in a small debug container, SIGKILL).

    A blocking sampler left attached to a production service would keep pausing it forever.
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


def _folded_line(line: str) -> bool:
    _, sep, count = line.rstrip("\r\n").rpartition(" ")
    return bool(sep) and count.isdigit()


class _Segment:
    """One ``py-spy record`` process."""

    def __init__(self, pid: int, rate: float, mode: str, path: str, *, subprocesses: bool, idle: bool, gil: bool,
                 native: bool) -> None:
        self.pid = pid
        self.rate = rate
        self.mode = mode
        self.path = path
        cmd = [pyspy.binary(), "record", "-f", "raw", "--threads", "-r", str(int(rate)), "--pid", str(pid), "-o", path]
        flags = {"--subprocesses": subprocesses, "--idle": idle, "--gil": gil, "--native": native,
                 "--nonblocking": mode == "nonblocking"}
        cmd += [flag for flag, on in flags.items() if on]
        self.lines: list[str] = []
        self.started = threading.Event()
        self.t_start = 0.0
        self.cpu_start = 0
        self.t_stop = 0.0
        self.cpu_stop = 0
        self.mark: tuple[float, int] | None = None
        self._thread_cpu: dict[str, int] = {}
        self._cpu_seen_at = 0.0
        # Own session: a Ctrl-C in the terminal reaches obskit, which stops py-spy itself after collecting.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, env=pyspy.env(), start_new_session=True,
                                     preexec_fn=_PREEXEC)
        self._reader = threading.Thread(target=self._read, name="obskit-pyspy-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if not self.started.is_set() and "Sampling process" in line:
                self.cpu_start = self.cpu_ns()
                self.t_start = time.monotonic()
                self.started.set()

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

    def cpu_ns(self) -> int:
        self._cpu_seen_at = time.monotonic()
        return _schedstat_ns(self.proc.pid, self._thread_cpu)

    def take_mark(self) -> None:
        """Remember (time, py-spy CPU) once py-spy's start-up work (symbols, first code objects) is behind it."""
        if self.mark is None and self.started.is_set() and time.monotonic() - self.t_start >= MARK_AFTER:
            self.mark = (time.monotonic(), self.cpu_ns())

    def live_pause(self, nproc: int, achieved: float | None) -> float | None:
        """Pause per sample and process since the mark (blocking: py-spy's CPU time while the target is stopped).

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

    def stop(self) -> tuple[Profile, int, int]:
        """SIGINT, wait for the output, read it: (profile, samples, errors)."""
        if self.proc.poll() is None:
            self.cpu_stop = self.cpu_ns()
            self.t_stop = time.monotonic()
            try:
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        else:
            # py-spy ended by itself (the target exited): its CPU as last seen, polled every 0.1 s.
            self.cpu_stop = sum(self._thread_cpu.values())
            self.t_stop = self.t_stop or self._cpu_seen_at or time.monotonic()
        try:
            self.proc.wait(STOP_TIMEOUT)
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
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8", errors="replace") as f:
                # A py-spy stopped while writing (killed after STOP_TIMEOUT, a signal right after its
                # start) leaves a cut line: drop it rather than the whole segment.
                parse_collapsed((line for line in f if _folded_line(line)), prof, default_pid=self.pid)
        return prof, samples, errors

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


class LiveSampler:
    """Sample ``pid`` (and with ``subprocesses`` its children) until stopped, safely by default.

    ``rate``/``blocking`` given explicitly override the overhead budget (with a warning
    when they are predicted to exceed it); otherwise a short calibration segment
    measures the pause per sample and the rate is chosen, then re-chosen every segment.
    py-spy is killed when the thread that started it ends (so it never outlives obskit):
    call :meth:`start` and :meth:`collect` from a thread that lives until :meth:`stop`.
    """

    def __init__(
        self,
        pid: int,
        *,
        subprocesses: bool = False,
        rate: float | None = None,
        blocking: bool | None = None,
        max_overhead: float = safety.DEFAULT_MAX_OVERHEAD,
        idle: bool = False,
        gil: bool = False,
        native: bool = False,
        segment_seconds: float = 10.0,
        proc_root: str = "/proc",
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.pid = pid
        self.subprocesses = subprocesses
        self.requested_rate = rate
        self.forced_mode = None if blocking is None else ("blocking" if blocking else "nonblocking")
        self.max_overhead = max_overhead
        self.idle, self.gil, self.native = idle, gil, native
        self.segment_seconds = segment_seconds
        self.fs = ProcFS(proc_root)
        self.on_warning = on_warning
        self.accounting = Accounting(requested_rate=rate, max_overhead=max_overhead)
        self.facts: dict[int, ProcessFacts] = {}
        self.start_time: float | None = None
        self.end_reason = ""
        self.ended = threading.Event()  # set when the target (and so py-spy) exited by itself
        self._total = Profile()
        self._pending = Profile()
        self._seg: _Segment | None = None
        self._seg_due = 0.0
        self._seg_n = 0
        self._t0 = 0.0
        self._pause: float | None = None  # latest measured pause per sample and process (s)
        self._ticks = 0
        self._failed_launch: _Segment | None = None
        self._achieved = 1.0  # samples py-spy took / samples asked for, in the last blocking segment
        self._pause_weighted = 0.0  # sum of pause x samples, for the pause share
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._requests: list[threading.Event] = []
        self._tmp = ""
        self._last_scan = 0.0
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}

    # -- public -----------------------------------------------------------------
    def start(self) -> None:
        """Pre-flight the target, then start sampling; raises the typed error before any waiting."""
        from obskit.attach import preflight

        facts = preflight(self.pid, proc_root=str(self.fs.root))
        self.facts[self.pid] = facts
        self._cpu_first[self.pid] = self._cpu_last[self.pid] = facts.cpu_seconds
        self._tmp = tempfile.mkdtemp(prefix="obskit-profile-")
        self.start_time = time.time()
        self._t0 = time.monotonic()
        if self.forced_mode == "nonblocking":
            decision = safety.choose(None, requested_rate=self.requested_rate, max_overhead=self.max_overhead,
                                     forced_mode="nonblocking")
            first_rate, first_mode, first_len = decision.rate, "nonblocking", self.segment_seconds
            self.accounting.reason = decision.reason
        else:
            # Calibrate: a short blocking window at a low rate measures the pause per sample.
            want = self.requested_rate or safety.DEFAULT_RATE
            first_rate, first_mode = min(safety.CALIBRATION_RATE, want), "blocking"
            first_len = safety.CALIBRATION_SECONDS
            self.accounting.reason = "calibrating"
        seg = self._launch_started(first_rate, first_mode)
        if seg is None:
            self._cleanup_failed(self._failed_launch)
        assert seg is not None
        with self._lock:
            self._seg = seg
            self._seg_due = time.monotonic() + first_len
        self._scan_children(force=True)
        self._thread = threading.Thread(target=self._maintain, name="obskit-sampler", daemon=True)
        self._thread.start()

    def collect(self) -> Profile:
        """Samples since the last collect (the final total from :meth:`stop` still has them)."""
        thread = self._thread
        if thread is not None and thread.is_alive() and not self.ended.is_set():
            # The maintenance thread starts every py-spy (they die with the thread that started them).
            done = threading.Event()
            self._requests.append(done)
            done.wait(2 * START_TIMEOUT + STOP_TIMEOUT)
        with self._lock:
            out, self._pending = self._pending, Profile()
            self._finish_metadata(out)
            return out

    def stop(self, end_reason: str = "stopped") -> Profile:
        """Stop sampling; everything recorded, with full metadata."""
        # Stop py-spy while the maintenance thread (which started it) is alive: py-spy dies with that thread.
        with self._lock:
            seg, self._seg = self._seg, None
            if seg is not None:
                self._ingest(seg, "stopped")
            self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT + 5)
        with self._lock:
            if not self.end_reason:
                self.end_reason = end_reason
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = ""
            self._finish_metadata(self._total, final=True)
            return self._total

    # -- internals --------------------------------------------------------------
    def _launch(self, rate: float, mode: str) -> _Segment:
        self._seg_n += 1
        path = os.path.join(self._tmp, f"segment-{self._seg_n}.txt")
        seg = _Segment(self.pid, rate, mode, path, subprocesses=self.subprocesses, idle=self.idle, gil=self.gil,
                       native=self.native)
        seg.offset = time.monotonic() - self._t0  # type: ignore[attr-defined]
        self.accounting.rate = rate
        self.accounting.mode = mode
        return seg

    def _cleanup_failed(self, seg: _Segment | None) -> NoReturn:
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = ""
        if not self.fs.exists(self.pid):
            raise TargetExited(f"process {self.pid} exited before it could be sampled",
                               "check that the service is running", pid=self.pid)
        if seg is None or seg.proc.returncode is None or not seg.output.strip():
            raise Unavailable(f"py-spy did not start sampling process {self.pid} within {START_TIMEOUT:.0f}s",
                              "the machine may be overloaded; re-run with --verbose", pid=self.pid)
        raise attach.explain_failure(self.pid, seg.output, proc_root=str(self.fs.root))

    def _maintain(self) -> None:
        while not self._stopping.wait(0.1):
            try:
                with self._lock:
                    seg = self._seg
                    if seg is not None and not seg.running():
                        # py-spy stops by itself when the target exits.
                        self._seg = None
                        self._ingest(seg, "target-exited")
                        self.end_reason = "target-exited"
                        self.ended.set()
                    elif seg is not None:
                        seg.cpu_ns()  # keeps the figures of py-spy threads that end
                        seg.take_mark()
                        if self._requests or time.monotonic() >= self._seg_due:
                            self._rotate()
                    while self._requests:
                        self._requests.pop(0).set()
                self._scan_children()
            except Exception as e:  # noqa: PERF203 - this thread must outlive its py-spy children
                msg = f"sampler: {type(e).__name__}: {e}"
                if msg not in self.accounting.warnings:
                    self.accounting.warnings.append(msg)
        while self._requests:
            self._requests.pop(0).set()

    def _next_config(self) -> tuple[float, str]:
        decision = safety.choose(self._pause, requested_rate=self.requested_rate, max_overhead=self.max_overhead,
                                 forced_mode=self.forced_mode)
        if decision.reason != self.accounting.reason:
            self.accounting.reason = decision.reason
        if decision.warning and decision.warning not in self.accounting.warnings:
            self.accounting.warnings.append(decision.warning)
            if self.on_warning is not None:
                self.on_warning(decision.warning)
        return decision.rate, decision.mode

    def _rotate(self) -> None:
        old = self._seg
        if old is None:
            return
        old.take_mark()
        # py-spy may take fewer samples than asked (deep stacks): correct by what the last segment achieved.
        live = old.live_pause(self._python_processes(), self._achieved if self.accounting.segments else None)
        if live is not None:
            self._pause = live
        elif self._pause is None and not self._requests and self.forced_mode is None and not self.requested_rate:
            self._seg_due = time.monotonic() + 1.0  # calibration measured nothing yet: calibrate longer
            return
        rate, mode = self._next_config()
        started = self._launch_started(rate, mode)
        if started is None:
            # The target may have exited, or py-spy could not attach this time: keep what the old segment has.
            self._seg = None
            self._ingest(old, "target-exited" if not self.fs.exists(self.pid) else "stopped")
            self._end_failed(self._failed_launch)
            return
        self._ingest(old, "rotated")
        self._seg = started
        self._seg_due = time.monotonic() + self.segment_seconds
        if self.requested_rate or self.forced_mode:
            self._next_config()  # the exact figure just measured: warn now if the explicit choice breaks the budget
        if self._pause is not None and self._pause * started.rate > 1.2 * self.max_overhead and started.mode == "blocking" \
                and self.forced_mode is None and not self.requested_rate:
            # The exact figure of the finished segment says the new rate is too costly: re-choose soon.
            self._seg_due = time.monotonic() + MARK_AFTER + 0.3

    def _launch_started(self, rate: float, mode: str, attempts: int = 3) -> _Segment | None:
        """A new segment that is sampling, or None (then ``_failed_launch`` holds the last failure)."""
        for attempt in range(attempts):
            seg = self._launch(rate, mode)
            if seg.wait_started():
                return seg
            exited_itself = seg.proc.poll() is not None
            seg.stop()
            self._failed_launch = seg
            # Attaching fails transiently on a busy target ("Failed to suspend process", "Failed to copy
            # PyCodeObject"); a hang, a refusal or a target that has exited will not get better.
            permanent = attach.is_permanent(seg.output)
            if not exited_itself or permanent or not self.fs.exists(self.pid):
                break
            time.sleep(0.1 * (attempt + 1))
        return None

    def _end_failed(self, new: _Segment | None) -> None:
        if not self.fs.exists(self.pid):
            self.end_reason = "target-exited"
        else:
            self.end_reason = "sampler-failed"
            msg = f"py-spy could not re-attach: {pyspy.error_line(new.output if new else '')}"
            self.accounting.warnings.append(msg)
            if self.on_warning is not None:
                self.on_warning(msg)
        self.ended.set()

    def _python_processes(self) -> int:
        if not self.subprocesses:
            return 1
        return max(1, sum(1 for f in self.facts.values() if f.is_python and self.fs.exists(f.pid)))

    def _ingest(self, seg: _Segment, end: str) -> None:
        prof, samples, errors = seg.stop()
        valid_in_file = prof.total_samples
        if samples == 0 and valid_in_file:
            samples = valid_in_file  # py-spy was killed before its summary line
        pids = {s.pid for s in prof.samples} or {self.pid}
        nproc = max(1, len(pids), self._python_processes())
        attempted = samples + errors
        duration = max(0.0, (seg.t_stop or time.monotonic()) - (seg.t_start or seg.t_stop or time.monotonic()))
        # py-spy counts one sample per thread stack; a tick (one pause of the target) covers every thread.
        expected = round(duration * seg.rate)
        # No recorded sample does not mean no pause: idle threads are read (and the target stopped) too.
        ticks = min(attempted, expected) if attempted else expected
        pause = None
        if seg.mode == "blocking" and seg.cpu_stop and seg.cpu_start and ticks >= 2:
            # Each tick visits every process once; what a single process is stopped for is the per-process share.
            pause = max(0.0, (seg.cpu_stop - seg.cpu_start) / 1e9 / ticks / nproc)
            self._pause = pause if pause > 0 else self._pause
            self._pause_weighted += pause * ticks
            if duration > 0.3:
                self._achieved = min(1.0, max(0.2, ticks / (duration * seg.rate)))
        self._ticks += ticks
        acc = self.accounting
        acc.samples_attempted += attempted
        acc.samples_valid += samples
        acc.samples_failed += errors
        acc.sampled_seconds += duration
        acc.segments.append(SegmentStats(
            start_offset_s=round(getattr(seg, "offset", 0.0), 3), duration_s=round(duration, 3), rate=seg.rate,
            mode=seg.mode, samples=samples, errors=errors, processes=nproc,
            pause_per_sample_ms=round(pause * 1e3, 4) if pause is not None else None, end=end))
        if pause is not None:
            acc.pause_per_sample_ms = round(pause * 1e3, 4)
        wall = time.monotonic() - self._t0
        if acc.sampled_seconds > 0:
            acc.effective_rate = round(self._ticks / acc.sampled_seconds, 2)
        if wall > 0:
            acc.pause_share = round(self._pause_weighted / wall, 5)
        if all(s.mode == "nonblocking" for s in acc.segments):
            acc.pause_share = 0.0
        self._scan_children(force=True, pids=pids)
        self._total.merge(prof)
        self._pending.merge(prof)

    def _scan_children(self, *, force: bool = False, pids: set[int] | None = None) -> None:
        """Remember facts (command line, parent, version) of every process while it is alive, for roles."""
        now = time.monotonic()
        if not force and (not self.subprocesses or now - self._last_scan < 2.0):
            return
        self._last_scan = now
        todo = set(pids or ())
        if self.subprocesses:
            try:
                todo.update(self.fs.descendants(self.pid))
            except ObskitError:
                pass
        for pid in todo - set(self.facts):
            try:
                self.facts[pid] = self.fs.facts(pid)
            except (ObskitError, OSError, IndexError, ValueError):
                continue
            self._cpu_first[pid] = self._cpu_last[pid] = self.facts[pid].cpu_seconds
        self._update_cpu()

    def _update_cpu(self) -> None:
        """CPU seconds of every known process, read while it is alive (an exited one keeps its last figure)."""
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for pid in list(self._cpu_first):
            try:
                st = self.fs.stat(pid)
                self._cpu_last[pid] = (int(st[13]) + int(st[14])) / ticks
            except (ObskitError, OSError, IndexError, ValueError):  # noqa: PERF203 - it exited meanwhile
                continue

    def _finish_metadata(self, prof: Profile, *, final: bool = False) -> None:
        from obskit import __version__

        acc = self.accounting
        m = prof.metadata
        target = self.facts.get(self.pid)
        m.obskit_version = __version__
        m.sampler = f"py-spy {pyspy.version()}"
        m.start_time = self.start_time
        m.duration_s = round(time.monotonic() - self._t0, 3)
        m.requested_rate = self.requested_rate or safety.DEFAULT_RATE
        m.effective_rate = acc.effective_rate
        m.mode = acc.mode if len({s.mode for s in acc.segments[1:]} or {acc.mode}) == 1 else "mixed"
        m.idle, m.gil, m.native, m.subprocesses = self.idle, self.gil, self.native, self.subprocesses
        m.target_pid = self.pid
        m.target_cmdline = target.command if target else ""
        m.python_version = target.python_version if target else None
        m.host = socket.gethostname()
        m.container_id = target.container_id if target else None
        m.samples_attempted = acc.samples_attempted
        m.samples_valid = acc.samples_valid
        m.samples_failed = acc.samples_failed
        m.pause_share = acc.pause_share
        m.max_overhead = self.max_overhead
        m.end_reason = self.end_reason
        m.warnings = list(acc.warnings)
        m.segments = [s.to_dict() for s in acc.segments]
        self._label_processes(prof, final=final)

    def _label_processes(self, prof: Profile, *, final: bool) -> None:
        facts = dict(self.facts)
        classify_roles(facts)
        if final:
            self._update_cpu()
        sampled = {s.pid for s in prof.samples}
        keep = []
        for p in prof.processes:
            f = facts.get(p.pid)
            if f is not None:
                p.role = f.role
                p.cmdline = p.cmdline or f.command
                p.python_version = p.python_version or f.python_version
            if final and not self.fs.exists(p.pid):
                p.exited = True
            if final and p.pid in self._cpu_first:
                p.cpu_seconds = round(self._cpu_last[p.pid] - self._cpu_first[p.pid], 3)
            # py-spy roots children with their ancestors; a non-Python ancestor (a shell) is not a sampled process.
            if p.pid in sampled or p.pid == self.pid or (f is not None and f.is_python):
                keep.append(p)
        prof.processes = keep


def spawn_command(argv: list[str], *, stdout: Any = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` for ``profile record -- CMD`` (its stdout kept off obskit's, which may carry JSON)."""
    from obskit.errors import TargetNotFound

    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout)
    except FileNotFoundError:
        raise TargetNotFound(f"command not found: {argv[0]}", "check the command after `--`") from None
    except PermissionError:
        raise TargetNotFound(f"command is not executable: {argv[0]}", "check the command after `--`") from None


def wait_for_interpreter(proc: subprocess.Popen[bytes], fs: ProcFS, timeout: float = 10.0) -> None:
    """Wait until a freshly started command is a running Python interpreter py-spy can find."""
    from obskit.errors import TargetNotPython

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetExited(f"the command exited (status {proc.returncode}) before it could be sampled",
                               "check that it runs on its own", pid=proc.pid)
        try:
            if fs.python_version(proc.pid) is not None:
                time.sleep(0.05)  # the interpreter is mapped; give it a moment to initialise its state
                return
            exe = os.path.basename(fs.exe(proc.pid) or "")
        except ObskitError:
            exe = ""
        # A wrapper (a shell exec-ing python) changes within moments; a non-Python program does not.
        if exe and "python" not in exe and time.monotonic() > deadline - timeout + 2.0:
            raise TargetNotPython(f"the command ({exe}, pid {proc.pid}) is not running Python",
                                  "profile a Python program, e.g. `-- python app.py`", pid=proc.pid)
        time.sleep(0.02)
    raise TargetNotPython(f"the command (pid {proc.pid}) did not start a Python interpreter within {timeout:.0f}s",
                          "profile a Python program, e.g. `-- python app.py`", pid=proc.pid)


@dataclass
class Recording:
    profile: Profile
    accounting: Accounting


class SamplerOptions(TypedDict, total=False):
    """Keyword arguments of :class:`LiveSampler` that :func:`record` passes on."""

    subprocesses: bool
    rate: float | None
    blocking: bool | None
    max_overhead: float
    idle: bool
    gil: bool
    native: bool
    proc_root: str
    on_warning: Callable[[str], None] | None


def record(
    pid: int,
    *,
    duration: float | None,
    on_started: Callable[[LiveSampler], None] | None = None,
    stop_event: threading.Event | None = None,
    **options: Unpack[SamplerOptions],
) -> Recording:
    """Record until ``duration`` (wall clock), ``stop_event`` (Ctrl-C/SIGTERM) or the target exiting."""
    from obskit.selftrace import span

    stop = stop_event or threading.Event()
    subprocesses = bool(options.get("subprocesses"))
    with span("obskit.profile.record", pid=pid, duration=duration or 0, subprocesses=subprocesses) as sp:
        sampler = LiveSampler(pid, **options)
        sampler.start()
        if on_started is not None:
            on_started(sampler)
        deadline = time.monotonic() + duration if duration else None
        reason = "interrupted"
        while True:
            if stop.is_set():
                reason = "interrupted"
                break
            if sampler.ended.is_set():
                reason = "target-exited"
                break
            if deadline is not None and time.monotonic() >= deadline:
                reason = "duration"
                break
            remaining = deadline - time.monotonic() if deadline is not None else 0.2
            stop.wait(max(0.01, min(0.2, remaining)))
        prof = sampler.stop(reason)
        if not sampler.end_reason or sampler.end_reason == "stopped":
            prof.metadata.end_reason = reason
        prof.metadata.trace_id = getattr(sp, "trace_id", None)
        prof.metadata.span_id = getattr(sp, "span_id", None)
        acc = sampler.accounting
        for key, value in (("samples_valid", acc.samples_valid), ("samples_failed", acc.samples_failed),
                           ("effective_rate", acc.effective_rate or 0.0), ("mode", acc.mode),
                           ("end_reason", prof.metadata.end_reason)):
            sp.set_attribute(f"obskit.{key}", value)
        return Recording(prof, acc)
