"""Safe-by-default sampling: the rate controller, which picks py-spy's rate and mode segment by segment.

Nonblocking mode never stops the target and reads each thread's state from the kernel
without disturbing it, so it is exact about which threads are on CPU; blocking mode
interrupts every thread's system call on each sample, and on a loaded machine a thread
woken that way is still runnable when the next sample reads its state, so lock waiters
and socket readers are counted as running (measured: 42-58 % of samples to a spinning
thread against 98 % nonblocking, with three CPU burners beside the target).  The default
is therefore nonblocking wherever its samples are valid (shallow stacks), and blocking,
at a rate that fits the budget, only where nonblocking samples fail (deep stacks).

In blocking mode py-spy stops the target while it reads the target's memory, so the
time py-spy is busy per sample -- running, or waiting for a CPU while the target stays
stopped -- is (an upper bound of) how long the target is paused per sample.  That cost
grows with stack depth and with the machine's load: ~0.1-0.3 ms on shallow stacks on a
quiet machine, 5-40 ms at 300-800 frames (see docs/profile.md).  The predicted pause share
is ``pause x rate`` per process; the default keeps it under ``max_overhead`` by lowering
the rate, and only when even the floor rate is too costly does it give up valid samples
for speed (nonblocking).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_RATE = 100.0
# A short blocking window at this rate measures the per-sample pause before the real rate is chosen:
# even on 800-frame stacks (~7 ms a sample) it stays within the 5 % budget for its 0.7 second.  It samples
# only the thread holding the GIL (unless --idle), so it never counts a blocked thread as running.
CALIBRATION_RATE = 5.0
CALIBRATION_SECONDS = 0.7
# The lowest rate py-spy takes; when even this rate breaks the budget, speed wins.
MIN_RATE = 1.0
# Nonblocking never stops the target, but reading 800-frame stacks still costs py-spy most of a core at
# 100 Hz, which a CPU-bound service on a small machine pays for: when speed wins, sample slowly too.
SPEED_WINS_RATE = 10.0
DEFAULT_MAX_OVERHEAD = 0.05
HEADROOM = 0.8
# Nonblocking is tried unless the calibration saw stacks deeper than this on average (200-800 frames
# fail nonblocking 20-40 % of the time: the stack changes while it is read), for PROBE_SECONDS, and
# kept while this share of its samples stays valid.
NONBLOCKING_MAX_DEPTH = 120.0
PROBE_SECONDS = 1.0
MIN_VALID_SHARE = 0.9
MIN_JUDGED_SAMPLES = 20


@dataclass
class Decision:
    rate: float
    mode: str  # blocking | nonblocking
    predicted_pause_share: float | None
    reason: str
    warning: str = ""


def choose(
    pause_per_sample_s: float | None,
    *,
    requested_rate: float | None,
    max_overhead: float = DEFAULT_MAX_OVERHEAD,
    forced_mode: str | None = None,
) -> Decision:
    """The rate and mode to sample at, given the measured pause per sample (None: not measured yet).

    ``requested_rate`` given explicitly and ``forced_mode`` override the budget; the
    decision then carries a one-line warning when it is predicted to exceed it.
    """
    want = float(requested_rate) if requested_rate else DEFAULT_RATE
    if forced_mode == "nonblocking":
        return Decision(want, "nonblocking", 0.0, "nonblocking asked for: the target is never stopped")
    if pause_per_sample_s is not None and pause_per_sample_s <= 0:
        pause_per_sample_s = None  # a sample costs something: zero means it was not measured
    if pause_per_sample_s is None:
        if requested_rate or forced_mode == "blocking":
            return Decision(want, "blocking", None, "rate and mode given explicitly; pause not measured")
        # Nothing measured (e.g. no sample completed): never jump to a rate that was not shown to be safe.
        rate = min(want, CALIBRATION_RATE)
        return Decision(rate, "blocking", None, f"pause per sample not measured yet: staying at {rate:g} Hz")
    pause = max(pause_per_sample_s, 0.0)
    predicted = pause * want
    if requested_rate or forced_mode == "blocking":
        warning = ""
        if predicted > max_overhead:
            warning = (
                f"{want:g} Hz blocking is predicted to stop the target {predicted:.0%} of the time "
                f"(budget {max_overhead:.0%}; {pause * 1e3:.2f} ms per sample); "
                f"drop --rate/--blocking to let obskit pick a safe rate"
            )
        return Decision(want, "blocking", predicted, "rate and mode given explicitly", warning)
    if predicted <= max_overhead:
        return Decision(want, "blocking", predicted, f"{pause * 1e3:.2f} ms per sample fits the budget at {want:g} Hz")
    # Aim below the budget: the estimate comes from a few samples on a noisy machine.
    safe_rate = HEADROOM * max_overhead / pause if pause > 0 else want
    if safe_rate >= MIN_RATE or pause * MIN_RATE <= max_overhead:
        # Below the headroom but within the budget, the floor rate still beats failed samples.
        rate = float(max(MIN_RATE, int(safe_rate)))  # py-spy takes whole samples per second
        return Decision(
            rate,
            "blocking",
            pause * rate,
            f"deep stacks: {pause * 1e3:.2f} ms per sample; rate lowered from {want:g} to {rate:g} Hz "
            f"to keep the target stopped under {max_overhead:.0%} of the time",
        )
    return Decision(
        min(want, SPEED_WINS_RATE),
        "nonblocking",
        0.0,
        f"{pause * 1e3:.1f} ms per sample: even {MIN_RATE:g} Hz blocking would stop the target "
        f"{pause * MIN_RATE:.0%} of the time; sampling without stopping it (speed wins: many samples may fail)",
        warning="speed wins: sampling nonblocking because each blocking sample stops the target "
        f"{pause * 1e3:.1f} ms; expect many failed samples",
    )


@dataclass(frozen=True)
class Plan:
    """The next segment: rate, mode, planned length and its role in the recording."""

    rate: float
    mode: str  # blocking | nonblocking
    seconds: float
    role: str  # calibration | probe | steady


@dataclass
class RateController:
    """Chooses every segment's rate and mode from what the previous segments measured.

    1. *calibration*: blocking at ``CALIBRATION_RATE`` for ``CALIBRATION_SECONDS`` measures the
       pause per sample (skipped when nonblocking is forced);
    2. *probe*: unless the calibration saw deep stacks (``NONBLOCKING_MAX_DEPTH``),
       nonblocking at the wanted rate for ``PROBE_SECONDS``; if at least
       ``MIN_VALID_SHARE`` of its samples are valid, nonblocking stays (exact idleness, no pause);
    3. *steady*: segments of ``segment_seconds``; blocking at the rate :func:`choose` allows
       when nonblocking samples fail, re-chosen from each segment's measured pause.
    """

    requested_rate: float | None = None
    forced_mode: str | None = None  # blocking | nonblocking | None
    max_overhead: float = DEFAULT_MAX_OVERHEAD
    segment_seconds: float = 10.0
    pause: float | None = None  # latest measured pause per blocking sample and process (s)
    depth: float | None = None  # mean stack depth (frames) the calibration saw
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    nonblocking_failed: bool = False

    @property
    def want(self) -> float:
        return float(self.requested_rate) if self.requested_rate else DEFAULT_RATE

    def first(self) -> Plan:
        if self.forced_mode == "nonblocking":
            self.reason = choose(None, requested_rate=self.requested_rate, max_overhead=self.max_overhead,
                                 forced_mode="nonblocking").reason
            return Plan(self.want, "nonblocking", self.segment_seconds, "steady")
        self.reason = "calibrating"
        return Plan(min(CALIBRATION_RATE, self.want), "blocking", CALIBRATION_SECONDS, "calibration")

    def measured(self, pause: float | None) -> None:
        if pause is not None and pause > 0:
            self.pause = pause

    def saw_depth(self, depth: float | None) -> None:
        if depth is not None:
            self.depth = depth

    def next(self, ended: Plan, *, samples: int, errors: int) -> Plan:
        """The plan after ``ended`` finished with py-spy's ``samples``/``errors`` counts."""
        attempted = samples + errors
        if ended.mode == "nonblocking" and self.forced_mode is None and attempted >= MIN_JUDGED_SAMPLES \
                and samples / attempted < MIN_VALID_SHARE:
            self.nonblocking_failed = True
            self._note(f"{errors / attempted:.0%} of nonblocking samples failed (deep or fast-changing stacks): "
                       "sampling blocking, at a rate that fits the budget")
        if self.forced_mode is None and not self.nonblocking_failed:
            if self.depth is None or self.depth <= NONBLOCKING_MAX_DEPTH or ended.mode == "nonblocking":
                role = "steady" if ended.role in ("probe", "steady") else "probe"
                if role == "probe" or ended.mode != "nonblocking":
                    self.reason = ("nonblocking: the target is never stopped and blocked threads are never counted "
                                   "as running; kept while its samples are valid")
                seconds = PROBE_SECONDS if role == "probe" else self.segment_seconds
                return Plan(self.want, "nonblocking", seconds, role)
        decision = choose(self.pause, requested_rate=self.requested_rate, max_overhead=self.max_overhead,
                          forced_mode=self.forced_mode)
        if decision.reason != self.reason:
            self.reason = decision.reason
        if decision.warning:
            self._note(decision.warning, warning=True)
        return Plan(decision.rate, decision.mode, self.segment_seconds, "steady")

    def too_costly(self, running: Plan) -> bool:
        """The pause measured so far says the running blocking segment breaks the budget: re-choose soon."""
        return (running.mode == "blocking" and running.role == "steady" and self.pause is not None
                and self.forced_mode is None and not self.requested_rate
                and self.pause * running.rate > 1.2 * self.max_overhead)

    def check_explicit(self, running: Plan) -> str:
        """A warning when an explicit blocking choice is predicted to break the budget ('' if not)."""
        if running.mode != "blocking" or not (self.requested_rate or self.forced_mode):
            return ""
        d = choose(self.pause, requested_rate=self.requested_rate, max_overhead=self.max_overhead,
                   forced_mode=self.forced_mode)
        return self._note(d.warning, warning=True) if d.warning else ""

    def _note(self, text: str, *, warning: bool = False) -> str:
        if text in self.warnings:
            return ""
        if warning:
            self.warnings.append(text)
        else:
            self.reason = text
        return text
