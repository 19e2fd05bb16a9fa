"""The sampler: a live process sampled into obskit's Profile, safely and on wall-clock time.

Three jobs, three modules, glued here by :class:`LiveSampler`:

* :mod:`obskit.profile.segment` runs one ``py-spy record -f raw`` process (a *segment*),
  stopped with SIGINT;
* :class:`obskit.profile.safety.RateController` picks each segment's rate and mode from what
  the previous ones measured (calibration, nonblocking probe, steady);
* :class:`obskit.profile.processes.ProcessBook` keeps the facts, roles and CPU time of the
  sampled processes.

Segments give incremental results (:meth:`LiveSampler.collect`), let the rate be re-chosen,
and make obskit, not py-spy, the owner of time: py-spy's ``-d`` counts samples, so a
loaded target would run far past it.  Segments never overlap: each one is stopped before
the next starts, so every sampled instant is counted once (the fraction of a second
between two segments goes unsampled and is left out of the effective rate).

Every segment's samples are kept whatever ends the recording (duration, Ctrl-C, the
target exiting), and every failed sample is counted in the :class:`Accounting`.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NoReturn

from obskit import attach, pyspy
from obskit.errors import ObskitError, TargetExited, Unavailable
from obskit.proc import ProcFS
from obskit.profile import safety
from obskit.profile.model import Profile
from obskit.profile.processes import ProcessBook
from obskit.profile.segment import START_TIMEOUT, STOP_TIMEOUT, Segment, SegmentFlags, SegmentResult


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample: every option of ``profile record`` that reaches the sampler."""

    subprocesses: bool = False
    rate: float | None = None  # None: the default rate, lowered to fit the budget
    blocking: bool | None = None  # None: chosen by the rate controller
    max_overhead: float = safety.DEFAULT_MAX_OVERHEAD
    idle: bool = False
    gil: bool = False
    native: bool = False
    segment_seconds: float = 10.0
    proc_root: str = "/proc"

    @property
    def forced_mode(self) -> str | None:
        return None if self.blocking is None else ("blocking" if self.blocking else "nonblocking")

    @property
    def flags(self) -> SegmentFlags:
        return SegmentFlags(subprocesses=self.subprocesses, idle=self.idle, gil=self.gil, native=self.native)


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
    role: str = "steady"  # calibration | probe | steady

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

    @property
    def settled_mode(self) -> str:
        """The mode after calibration and probing: one word, or ``mixed`` if it changed."""
        steady = {s.mode for s in self.segments if s.role == "steady"} or {s.mode for s in self.segments[1:]}
        steady = steady or {self.mode}
        return steady.pop() if len(steady) == 1 else "mixed"

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


class LiveSampler:
    """Sample ``pid`` (and with ``subprocesses`` its children) until stopped, safely by default.

    The :class:`~obskit.profile.safety.RateController` chooses every segment's rate and mode;
    ``config.rate``/``config.blocking`` given explicitly override the budget (with a warning
    when predicted to exceed it).  py-spy is killed when the thread that started it ends (so
    it never outlives obskit): the maintenance thread starts every segment and lives until
    :meth:`stop`.  ``end_at`` (monotonic) is when the caller will stop: no new segment is
    started in its last moments.
    """

    MIN_SEGMENT = 1.0  # seconds: a rotation closer than this to ``end_at`` is skipped

    def __init__(self, pid: int, config: SamplerConfig | None = None, *,
                 on_warning: Callable[[str], None] | None = None, end_at: float | None = None) -> None:
        self.pid = pid
        self.config = config or SamplerConfig()
        self.fs = ProcFS(self.config.proc_root)
        self.on_warning = on_warning
        self.end_at = end_at
        self.controller = safety.RateController(requested_rate=self.config.rate, forced_mode=self.config.forced_mode,
                                                max_overhead=self.config.max_overhead,
                                                segment_seconds=self.config.segment_seconds)
        self.book = ProcessBook(self.fs, pid, subprocesses=self.config.subprocesses)
        self.accounting = Accounting(requested_rate=self.config.rate, max_overhead=self.config.max_overhead)
        self.start_time: float | None = None
        self.end_reason = ""
        self.ended = threading.Event()  # set when the target (and so py-spy) exited by itself
        self._total = Profile()
        self._pending = Profile()
        self._seg: Segment | None = None
        self._plan: safety.Plan | None = None
        self._seg_due = 0.0
        self._seg_n = 0
        self._t0 = 0.0
        self._ticks = 0
        self._failed_launch: Segment | None = None
        self._launching: Segment | None = None
        self._achieved = 1.0  # samples py-spy took / samples asked for, in the last blocking segment
        self._pause_weighted = 0.0  # sum of pause x pauses, for the pause share
        self._warned = 0
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._requests: list[threading.Event] = []
        self._tmp = ""

    @property
    def facts(self) -> dict[int, Any]:
        return self.book.facts

    # -- public -----------------------------------------------------------------
    def start(self) -> None:
        """Pre-flight the target, then start sampling; raises the typed error before any waiting."""
        from obskit.attach import preflight

        self.book.add_target(preflight(self.pid, proc_root=str(self.fs.root)))
        _remove_orphaned_segment_dirs()
        self._tmp = tempfile.mkdtemp(prefix=f"obskit-profile-{os.getpid()}-")
        self.start_time = time.time()
        self._t0 = time.monotonic()
        plan = self.controller.first()
        self.accounting.reason = self.controller.reason
        try:
            seg = self._launch_started(plan)
            if seg is None:
                self._cleanup_failed(self._failed_launch)
        except BaseException:
            if self._launching is not None and self._launching.running():
                self._launching.proc.kill()  # interrupted while py-spy was starting
            self._remove_tmp()
            raise
        with self._lock:
            self._seg, self._plan = seg, plan
            self._seg_due = time.monotonic() + plan.seconds
        self.book.scan(force=True)
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
        try:
            with self._lock:
                seg, self._seg = self._seg, None
                if seg is not None:
                    self._ingest(seg, "stopped")
                self._stopping.set()
            if self._thread is not None:
                self._thread.join(STOP_TIMEOUT + 5)
        finally:
            self._stopping.set()
            self._remove_tmp()
        with self._lock:
            if not self.end_reason:
                self.end_reason = end_reason
            self._finish_metadata(self._total, final=True)
            return self._total

    def abort(self) -> None:
        """Stop py-spy and remove the temporary files without reading anything (a second Ctrl-C)."""
        with self._lock:
            seg, self._seg = self._seg, None
            self._stopping.set()
        if seg is not None:
            try:
                seg.proc.kill()
                seg.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._remove_tmp()

    # -- internals --------------------------------------------------------------
    def _remove_tmp(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""

    def _warn(self) -> None:
        """Pass on the controller's new warnings."""
        new = self.controller.warnings[self._warned:]
        self._warned = len(self.controller.warnings)
        for w in new:
            if w not in self.accounting.warnings:
                self.accounting.warnings.append(w)
                if self.on_warning is not None:
                    self.on_warning(w)

    def _launch(self, plan: safety.Plan) -> Segment:
        self._seg_n += 1
        path = os.path.join(self._tmp, f"segment-{self._seg_n}.txt")
        flags = self.config.flags
        if plan.role == "calibration" and not flags.idle:
            # Blocking samples count a thread woken by the previous sample as running: the calibration
            # (which is blocking) reads only the GIL holder, which is never a blocked thread.
            flags = replace(flags, gil=True)
        seg = Segment(self.pid, plan.rate, plan.mode, path, flags, offset=time.monotonic() - self._t0)
        self.accounting.rate = plan.rate
        self.accounting.mode = plan.mode
        return seg

    def _cleanup_failed(self, seg: Segment | None) -> NoReturn:
        self._remove_tmp()
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
                        if self._requests or self._rotation_due():
                            self._rotate()
                    while self._requests:
                        self._requests.pop(0).set()
                self.book.scan()
            except Exception as e:  # noqa: PERF203 - this thread must outlive its py-spy children
                msg = f"sampler: {type(e).__name__}: {e}"
                if msg not in self.accounting.warnings:
                    self.accounting.warnings.append(msg)
        while self._requests:
            self._requests.pop(0).set()

    def _rotation_due(self) -> bool:
        now = time.monotonic()
        if now < self._seg_due:
            return False
        # Close to the end the running segment simply goes on: a new py-spy would spend what is left starting.
        return self.end_at is None or self.end_at - now >= self.MIN_SEGMENT

    def _rotate(self) -> None:
        """Stop the running segment, then start the next one the controller plans (never both at once)."""
        old, plan = self._seg, self._plan
        if old is None or plan is None:
            return
        old.take_mark()
        # py-spy may take fewer samples than asked (deep stacks): correct by what the last segment achieved.
        self.controller.measured(old.live_pause(self.book.python_processes(),
                                                self._achieved if self.accounting.segments else None))
        self._seg = None
        result = self._ingest(old, "rotated")
        nxt = self.controller.next(plan, samples=result.samples, errors=result.errors)
        self.accounting.reason = self.controller.reason
        self._warn()
        started = self._launch_started(nxt)
        if started is None:
            # The target may have exited, or py-spy could not attach this time: keep what the old segment had.
            if self.accounting.segments:
                self.accounting.segments[-1].end = "target-exited" if not self.fs.exists(self.pid) else "stopped"
            self._end_failed(self._failed_launch)
            return
        self._seg, self._plan = started, nxt
        self._seg_due = time.monotonic() + nxt.seconds
        if self.controller.check_explicit(nxt):
            self._warn()
        if self.controller.too_costly(nxt):
            # The figure of the finished segment says the new rate is too costly: re-choose soon.
            self._seg_due = time.monotonic() + 0.65

    def _launch_started(self, plan: safety.Plan, attempts: int = 3) -> Segment | None:
        """A new segment that is sampling, or None (then ``_failed_launch`` holds the last failure)."""
        for attempt in range(attempts):
            seg = self._launching = self._launch(plan)
            if seg.wait_started():
                return seg
            exited_itself = seg.exited_by_itself()
            seg.stop()
            self._failed_launch = seg
            # Attaching fails transiently on a busy target ("Failed to suspend process", "Failed to copy
            # PyCodeObject"); a hang, a refusal or a target that has exited will not get better.
            permanent = attach.is_permanent(seg.output)
            if not exited_itself or permanent or not self.fs.exists(self.pid):
                break
            time.sleep(0.1 * (attempt + 1))
        return None

    def _end_failed(self, new: Segment | None) -> None:
        if not self.fs.exists(self.pid):
            self.end_reason = "target-exited"
        else:
            self.end_reason = "sampler-failed"
            msg = f"py-spy could not re-attach: {pyspy.error_line(new.output if new else '')}"
            self.accounting.warnings.append(msg)
            if self.on_warning is not None:
                self.on_warning(msg)
        self.ended.set()

    def _ingest(self, seg: Segment, end: str) -> SegmentResult:
        plan = self._plan
        result = seg.stop()
        prof, samples, errors = result.profile, result.samples, result.errors
        if result.problem and result.problem not in self.accounting.warnings:
            self.accounting.warnings.append(result.problem)
            if self.on_warning is not None:
                self.on_warning(result.problem)
        pids = {s.pid for s in prof.samples} or {self.pid}
        nproc = max(1, len(pids), self.book.python_processes())
        attempted = samples + errors
        duration = result.duration
        # py-spy counts one sample per tick; a tick (one pause of the target in blocking mode) covers every thread.
        expected = round(duration * seg.rate)
        # No recorded sample does not mean no pause: idle threads are read (and the target stopped) too.
        ticks = min(attempted, expected) if attempted else expected
        pause = None
        if seg.mode == "blocking" and result.cpu_ns and ticks >= 2:
            # Each tick visits every process once; what a single process is stopped for is the per-process share.
            pause = max(0.0, result.cpu_ns / 1e9 / ticks / nproc)
            self.controller.measured(pause)
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
            start_offset_s=round(seg.offset, 3), duration_s=round(duration, 3), rate=seg.rate, mode=seg.mode,
            samples=samples, errors=errors, processes=nproc,
            pause_per_sample_ms=round(pause * 1e3, 4) if pause is not None else None, end=end,
            role=plan.role if plan is not None else "steady"))
        if pause is not None:
            acc.pause_per_sample_ms = round(pause * 1e3, 4)
        if plan is not None and plan.role == "calibration":
            self.controller.saw_depth(_mean_depth(prof))
        wall = time.monotonic() - self._t0
        if acc.sampled_seconds > 0:
            acc.effective_rate = round(self._ticks / acc.sampled_seconds, 2)
        if wall > 0:
            acc.pause_share = round(self._pause_weighted / wall, 5)
        if all(s.mode == "nonblocking" for s in acc.segments):
            acc.pause_share = 0.0
        self.book.scan(force=True, pids=pids)
        self._total.merge(prof)
        self._pending.merge(prof)
        return result

    def _finish_metadata(self, prof: Profile, *, final: bool = False) -> None:
        from obskit import __version__

        acc = self.accounting
        cfg = self.config
        m = prof.metadata
        target = self.book.target
        m.obskit_version = __version__
        m.sampler = f"py-spy {pyspy.version()}"
        m.start_time = self.start_time
        m.duration_s = round(time.monotonic() - self._t0, 3)
        m.requested_rate = cfg.rate or safety.DEFAULT_RATE
        m.effective_rate = acc.effective_rate
        m.mode = acc.settled_mode
        m.idle, m.gil, m.native, m.subprocesses = cfg.idle, cfg.gil, cfg.native, cfg.subprocesses
        m.target_pid = self.pid
        m.target_cmdline = target.command if target else ""
        m.python_version = target.python_version if target else None
        m.host = socket.gethostname()
        m.container_id = target.container_id if target else None
        m.samples_attempted = acc.samples_attempted
        m.samples_valid = acc.samples_valid
        m.samples_failed = acc.samples_failed
        m.pause_share = acc.pause_share
        m.max_overhead = cfg.max_overhead
        m.end_reason = self.end_reason
        m.warnings = list(acc.warnings)
        m.segments = [s.to_dict() for s in acc.segments]
        self.book.label(prof, final=final)


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


def _mean_depth(prof: Profile) -> float | None:
    """Mean number of frames per sample (None without samples)."""
    n = sum(s.count for s in prof.samples)
    return sum(len(s.frames) * s.count for s in prof.samples) / n if n else None


@dataclass
class Recording:
    profile: Profile
    accounting: Accounting


# Stopping py-spy takes up to one sampling interval (it notices SIGINT between samples) plus writing its file.
STOP_ALLOWANCE = 0.1  # seconds before the deadline py-spy is stopped; stopping and writing fit in the +1 s


def record(
    pid: int,
    config: SamplerConfig | None = None,
    *,
    duration: float | None,
    on_started: Callable[[LiveSampler], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> Recording:
    """Record until ``duration`` (wall clock from this call: start-up and calibration count), ``stop_event``
    (Ctrl-C/SIGTERM/SIGHUP) or the target exiting.

    A ``KeyboardInterrupt`` (a second Ctrl-C, or a signal turned into one) stops py-spy and
    removes the temporary files before it propagates.
    """
    from obskit.selftrace import span

    cfg = config or SamplerConfig()
    stop = stop_event or threading.Event()
    began = time.monotonic()
    deadline = began + duration if duration else None
    with span("obskit.profile.record", pid=pid, duration=duration or 0, subprocesses=cfg.subprocesses) as sp:
        sampler = LiveSampler(pid, cfg, on_warning=on_warning,
                              end_at=deadline - STOP_ALLOWANCE if deadline is not None else None)
        sampler.start()
        try:
            if on_started is not None:
                on_started(sampler)
            reason = "interrupted"
            while True:
                if stop.is_set():
                    reason = "interrupted"
                    break
                if sampler.ended.is_set():
                    reason = "target-exited"
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline - _stop_allowance(sampler):
                    reason = "duration"
                    break
                remaining = deadline - _stop_allowance(sampler) - now if deadline is not None else 0.2
                stop.wait(max(0.01, min(0.2, remaining)))
            prof = sampler.stop(reason)
        except BaseException:
            sampler.abort()
            raise
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


def _remove_orphaned_segment_dirs() -> None:
    """Segment files of a recording whose obskit was SIGKILLed (it could not clean up): the PID in
    the directory's name is gone.  Only this user's own directories are touched."""
    from obskit.proc import left_by_a_dead_obskit

    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in left_by_a_dead_obskit(names, "profile"):
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid == os.geteuid() and stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path, ignore_errors=True)


def _stop_allowance(sampler: LiveSampler) -> float:
    """How long before the deadline to stop py-spy: the user asked for N seconds of samples, so only the
    moment py-spy needs to stop (the rest of `-d N`'s extra second is for writing)."""
    return STOP_ALLOWANCE
