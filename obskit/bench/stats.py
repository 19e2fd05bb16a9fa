"""The statistics of the gate: ratio of medians, its confidence interval, the noise floor, verdicts.

Everything here is deterministic (the bootstrap uses a fixed seed), so a recorded set of
samples always gets the same verdict; docs/bench.md explains the choices.

- **Commands** (``paired_interval``): base and head run back to back in every round, so the
  ratio of each pair is taken (load that hits both cancels) and summarised by the
  Hodges–Lehmann estimate of the log ratios, with its Wilcoxon signed-rank interval.
- **Result files** (``unpaired_interval``, nothing is paired): the ratio of medians head/base
  (medians, because a run that met a burst of load moves a mean but not a median); its
  interval is a percentile bootstrap over ``BLOCKS`` contiguous block medians a side, since
  one run's rounds are not independent (a busy stretch slows many consecutive rounds; an
  interval over rounds was a few percent wide while identical code moved 20-50 % between
  runs).  ``ratio_interval`` (both sides resampled independently, ``BOOTSTRAP`` resamples, up
  to ``LARGE`` samples a side; above that the distribution-free interval of each median,
  turned into a standard error and combined in log space) does the resampling.
- **Noise floor**: the half-width (log-symmetric, ``sqrt(hi/lo) - 1``) of an A/A (base against
  base) interval at the same number of runs (``floor_from_aa``); with no A/A runs, from the
  two halves of the base samples, scaled to the full number of runs (``floor_from_split``).
  Result files: ``drift_floor``, how far each run wandered between its first and second
  half, the largest over every series of both files (the machine was that noisy for all of
  them).  A regression's whole interval must clear it: identical code would wander that far.
- **Verdict**: *regressed* when the whole interval is worse than ``1 + max(threshold, floor)``,
  *improved* when it is wholly better than ``1 / (1 + max(threshold, floor))``, *unchanged*
  when it lies wholly within ``1 ± (threshold + floor)`` (what tolerance and noise together
  explain) and the ratio itself within the threshold, *inconclusive* otherwise.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

BOOTSTRAP = 2000
LARGE = 400  # samples per side above which the order-statistic interval replaces the bootstrap
MIN_SAMPLES = 3  # per side, for any interval (paired: 6 pairs for the signed-rank interval)
SEED = 0x0B5C17

REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE = "regressed", "improved", "unchanged", "inconclusive"
VERDICTS = (REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE)


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if not n:
        return math.nan
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass
class Interval:
    ratio: float  # median(head) / median(base)
    lo: float | None
    hi: float | None
    method: str  # bootstrap | order-statistics | none


def _safe_ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 1.0 if num == den else math.inf


def _median_se(xs: Sequence[float], z: float) -> float:
    """Standard error of the median from its distribution-free (binomial) interval."""
    s = sorted(xs)
    n = len(s)
    half = z * math.sqrt(n) / 2.0
    lo = max(0, math.floor(n / 2.0 - half))
    hi = min(n - 1, math.ceil(n / 2.0 + half))
    return (s[hi] - s[lo]) / (2.0 * z)


def ratio_interval(base: Sequence[float], head: Sequence[float], *, confidence: float = 0.95,
                   resamples: int = BOOTSTRAP, seed: int = SEED) -> Interval:
    """The ratio of medians head/base and its ``confidence`` interval."""
    mb, mh = median(base), median(head)
    ratio = _safe_ratio(mh, mb)
    if len(base) < MIN_SAMPLES or len(head) < MIN_SAMPLES or not math.isfinite(ratio):
        return Interval(ratio, None, None, "none")
    if len(base) > LARGE or len(head) > LARGE:
        z = _z(confidence)
        if mb <= 0 or mh <= 0:
            return Interval(ratio, None, None, "none")
        se = math.hypot(_median_se(base, z) / mb, _median_se(head, z) / mh)
        return Interval(ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se), "order-statistics")
    rng = random.Random(seed + 7919 * len(base) + len(head))
    b, h = list(base), list(head)
    nb, nh = len(b), len(h)
    ratios = []
    for _ in range(resamples):
        sb = sorted(rng.choices(b, k=nb))
        sh = sorted(rng.choices(h, k=nh))
        med_b = sb[nb // 2] if nb % 2 else (sb[nb // 2 - 1] + sb[nb // 2]) / 2.0
        med_h = sh[nh // 2] if nh % 2 else (sh[nh // 2 - 1] + sh[nh // 2]) / 2.0
        ratios.append(_safe_ratio(med_h, med_b))
    ratios.sort()
    tail = (1.0 - confidence) / 2.0
    lo = ratios[max(0, math.floor(tail * resamples))]
    hi = ratios[min(resamples - 1, math.ceil((1.0 - tail) * resamples) - 1)]
    return Interval(ratio, lo, hi, "bootstrap")


BLOCKS = 16  # contiguous blocks a series from one run is cut into (unpaired comparisons)


def blocked(xs: Sequence[float], blocks: int = BLOCKS) -> list[float]:
    """The medians of ``blocks`` contiguous runs of ``xs`` in recorded order (each sample alone
    when there are fewer).  One run's samples are not independent: a burst of load, a busy
    sibling hyperthread or a stolen CPU slows a stretch of consecutive rounds together, so
    stretches, not rounds, are what an interval over one run can count on."""
    n = len(xs)
    k = min(blocks, n)
    return [median(xs[i * n // k:(i + 1) * n // k]) for i in range(k)]


def unpaired_interval(base: Sequence[float], head: Sequence[float], *, confidence: float = 0.95) -> Interval:
    """Two separate runs (result files): the ratio of medians, with the bootstrap interval of
    the ratio of block medians (:func:`blocked`), widened to hold the ratio itself."""
    ratio = _safe_ratio(median(head), median(base))
    if len(base) < MIN_SAMPLES or len(head) < MIN_SAMPLES or not math.isfinite(ratio):
        return Interval(ratio, None, None, "none")
    iv = ratio_interval(blocked(base), blocked(head), confidence=confidence)
    if iv.lo is None or iv.hi is None:
        return Interval(ratio, None, None, "none")
    return Interval(ratio, min(iv.lo, ratio), max(iv.hi, ratio), "block-bootstrap")


def drift_floor(series: Sequence[float], *, confidence: float = 0.95) -> float | None:
    """How far one run wandered from its first half to its second (block medians against each
    other: the shift itself, or its interval's half-width when that is wider).  Separate runs
    wander apart at least that much, so an unpaired change must clear it."""
    blocks = blocked(series)
    if len(blocks) < 2 * MIN_SAMPLES:
        return None
    half = len(blocks) // 2
    iv = ratio_interval(blocks[:half], blocks[half:], confidence=confidence)
    if not math.isfinite(iv.ratio) or iv.ratio <= 0:
        return None
    shift = math.exp(abs(math.log(iv.ratio))) - 1.0
    return max(shift, half_width(iv) or 0.0)


MAX_WALSH = 1500  # pairs above which the median's order-statistic interval replaces Hodges–Lehmann


def paired_interval(base: Sequence[float], head: Sequence[float], *, confidence: float = 0.95) -> Interval:
    """The per-pair ratio head/base (pairs run back to back) and its interval, in log space.

    Estimate: the Hodges–Lehmann estimator of the log ratios (the median of all Walsh averages
    ``(d_i + d_j) / 2``, i <= j); interval: the Wilcoxon signed-rank interval of that estimate
    (normal approximation of the rank statistic's distribution).  Distribution-free, no
    resampling, and a burst of load that slows both runs of a pair cancels out.
    """
    d = [math.log(h / b) for b, h in zip(base, head, strict=False) if b > 0 and h > 0]
    n = len(d)
    if n < MIN_SAMPLES:
        r = _safe_ratio(median(head), median(base)) if base and head else math.nan
        return Interval(r, None, None, "none")
    z = _z(confidence)
    if n > MAX_WALSH:
        se = _median_se(d, z)
        m = median(d)
        return Interval(math.exp(m), math.exp(m - z * se), math.exp(m + z * se), "paired-order-statistics")
    walsh = sorted((d[i] + d[j]) / 2.0 for i in range(n) for j in range(i, n))
    total = len(walsh)
    est = median(walsh)
    k = math.floor(total / 2.0 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0))
    if k < 1:
        return Interval(math.exp(est), None, None, "none")
    return Interval(math.exp(est), math.exp(walsh[k - 1]), math.exp(walsh[total - k]), "hodges-lehmann")


def half_width(iv: Interval) -> float | None:
    """The half-width of an interval in log space, sqrt(hi/lo) - 1: an A/A interval [0.97, 1.03] is ±3 %."""
    if iv.lo is None or iv.hi is None or iv.lo <= 0:
        return None
    return math.sqrt(iv.hi / iv.lo) - 1.0


def floor_from_aa(base: Sequence[float], calib: Sequence[float], *, confidence: float = 0.95,
                  paired: bool = False) -> float | None:
    """The noise floor: the half-width of the A/A interval (base against a second base series)."""
    if paired:
        return half_width(paired_interval(base, calib, confidence=confidence))
    return half_width(ratio_interval(base, calib, confidence=confidence))


def floor_from_split(base: Sequence[float], *, confidence: float = 0.95, paired: bool = False) -> float | None:
    """The noise floor without A/A runs: the two interleaved halves of ``base`` against each other.

    Each half has n/2 samples, so its interval is sqrt(2) times as wide (in log space) as one
    between two series of n; the half-width is scaled down by that much.
    """
    if len(base) < 2 * MIN_SAMPLES:
        return None
    fn = paired_interval if paired else ratio_interval
    r = half_width(fn(base[0::2], base[1::2], confidence=confidence))
    if r is None:
        return None
    return math.exp(math.log1p(r) / math.sqrt(2.0)) - 1.0


def decide(iv: Interval, *, threshold: float, floor: float | None, higher_is_better: bool = False) -> str:
    """regressed / improved / unchanged / inconclusive for one interval (see the module doc)."""
    noise = floor or 0.0
    margin = max(threshold, noise)  # a change must clear both to count
    tolerance = threshold + noise  # an interval within this is explained by noise and tolerance
    if iv.lo is None or iv.hi is None:
        return INCONCLUSIVE
    lo, hi = iv.lo, iv.hi
    if higher_is_better:  # a lower value is worse: flip the interval into "cost" terms
        lo, hi = (1.0 / hi if hi > 0 else math.inf), (1.0 / lo if lo > 0 else math.inf)
    if lo > 1.0 + margin:
        return REGRESSED
    if hi < 1.0 / (1.0 + margin):
        return IMPROVED
    cost = iv.ratio if not higher_is_better else (1.0 / iv.ratio if iv.ratio > 0 else math.inf)
    if lo >= 1.0 / (1.0 + tolerance) and hi <= 1.0 + tolerance and 1.0 / (1.0 + threshold) <= cost <= 1.0 + threshold:
        # (the ratio itself within the threshold too: a 1.5x ratio under a wide floor is not "unchanged")
        return UNCHANGED
    return INCONCLUSIVE


def decide_point(ratio: float, *, threshold: float, higher_is_better: bool = False) -> str:
    """A verdict from summary statistics alone (no interval possible): the ratio against the threshold."""
    if not math.isfinite(ratio) or ratio <= 0:
        return INCONCLUSIVE
    cost = 1.0 / ratio if higher_is_better else ratio
    if cost > 1.0 + threshold:
        return REGRESSED
    if cost < 1.0 / (1.0 + threshold):
        return IMPROVED
    return UNCHANGED
