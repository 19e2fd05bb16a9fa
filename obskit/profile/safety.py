"""Safe-by-default sampling: choose py-spy's rate and mode from the measured cost of one sample.

In blocking mode py-spy stops the target while it reads the target's memory, so the
CPU time py-spy spends per sample is (an upper bound of) how long the target is paused
per sample.  That cost grows with stack depth: ~0.1-0.3 ms on shallow stacks, 5-7 ms at
50-800 frames (see docs/profile.md).  The predicted pause share is ``pause × rate`` per
process; the default keeps it under ``max_overhead`` by lowering the rate, and only when
even the floor rate is too costly does it give up valid samples for speed (nonblocking).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RATE = 100.0
# A short blocking window at this rate measures the per-sample pause before the real rate is chosen:
# even on 800-frame stacks it stays near the 5 % budget for its one second.
CALIBRATION_RATE = 5.0
CALIBRATION_SECONDS = 1.0
# The lowest rate py-spy takes; when even this rate breaks the budget, speed wins.
MIN_RATE = 1.0
# Nonblocking never stops the target, but reading 800-frame stacks still costs py-spy most of a core at
# 100 Hz, which a CPU-bound service on a small machine pays for: when speed wins, sample slowly too.
SPEED_WINS_RATE = 10.0
DEFAULT_MAX_OVERHEAD = 0.05
HEADROOM = 0.8


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
    if safe_rate >= MIN_RATE:
        rate = float(int(safe_rate))  # py-spy takes whole samples per second
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
