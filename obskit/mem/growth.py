"""Is memory growing? A trend fit robust to the sawtooth of allocators and the GC.

The slope is Theil–Sen (median of all pairwise slopes: a sawtooth's ups and downs
cancel in the median, a handful of spikes cannot move it) with Sen's rank-based
confidence interval.  Beside it: R² of a least-squares line (how linear), the share of
rising steps in the rolling minimum (the floor a leak lifts and a busy heap does not),
and the total growth between the first and last tenth of the window.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

MB = 1024 * 1024
Z95 = 1.96
# A trend counts only if the window grew by at least this much (absolute and relative to the start).
MIN_GROWTH_BYTES = 1 * MB
MIN_GROWTH_SHARE = 0.01
LEAK_R2 = 0.8
LEAK_MONOTONIC = 0.6


@dataclass
class Fit:
    SCHEMA = "obskit.mem.growth/1"

    verdict: str  # "steady" | "growing" | "leak-suspected" | "too-few-samples"
    samples: int
    duration_s: float
    slope_mb_per_min: float
    slope_ci_mb_per_min: tuple[float, float]
    r2: float
    monotonic_share: float
    growth_bytes: int
    start_bytes: int
    end_bytes: int
    evidence: list[str] = field(default_factory=list)


def theil_sen(t: list[float], y: list[float]) -> tuple[float, float, float]:
    """(slope, low, high) with Sen's 95% interval from the variance of Kendall's S."""
    n = len(t)
    slopes = sorted((y[j] - y[i]) / (t[j] - t[i]) for i in range(n) for j in range(i + 1, n) if t[j] != t[i])
    if not slopes:
        return 0.0, 0.0, 0.0
    slope = _median(slopes)
    big_n = len(slopes)
    c = Z95 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lo_i = int(max(0, math.floor((big_n - c) / 2)))
    hi_i = int(min(big_n - 1, math.ceil((big_n + c) / 2)))
    return slope, slopes[lo_i], slopes[hi_i]


def r_squared(t: list[float], y: list[float]) -> float:
    n = len(t)
    mt, my = sum(t) / n, sum(y) / n
    stt = sum((a - mt) ** 2 for a in t)
    syy = sum((b - my) ** 2 for b in y)
    if stt == 0 or syy == 0:
        return 0.0
    sty = sum((a - mt) * (b - my) for a, b in zip(t, y, strict=False))
    return sty * sty / (stt * syy)


def rolling_min(y: list[float], window: int) -> list[float]:
    return [min(y[max(0, i - window + 1) : i + 1]) for i in range(len(y))]


def monotonic_share(y: list[float]) -> float:
    """Share of steps where the rolling floor rose (flat steps count as neither)."""
    floor = rolling_min(y, max(2, len(y) // 10))
    ups = sum(1 for a, b in itertools.pairwise(floor) if b > a)
    downs = sum(1 for a, b in itertools.pairwise(floor) if b < a)
    return ups / (ups + downs) if ups + downs else 0.0


def fit(t: list[float], y: list[float]) -> Fit:
    n = len(t)
    if n < 5 or t[-1] - t[0] <= 0:
        return Fit("too-few-samples", n, (t[-1] - t[0]) if n else 0.0, 0.0, (0.0, 0.0), 0.0, 0.0, 0,
                   int(y[0]) if y else 0, int(y[-1]) if y else 0, ["need at least 5 samples over a non-zero time"])
    # Theil–Sen is O(n²) pairs: thin very long series to keep it under ~250k pairs.
    step = max(1, n // 700)
    ts, ys = t[::step], y[::step]
    slope, lo, hi = theil_sen(ts, ys)
    tenth = max(1, n // 10)
    start = _median(y[:tenth])
    end = _median(y[-tenth:])
    growth = end - start
    r2 = r_squared(ts, ys)
    mono = monotonic_share(y)
    duration = t[-1] - t[0]
    per_min = 60 / MB
    result = Fit("steady", n, duration, slope * per_min, (lo * per_min, hi * per_min), r2, mono, int(growth),
                 int(start), int(end))
    significant = lo > 0 and growth >= max(MIN_GROWTH_BYTES, MIN_GROWTH_SHARE * start)
    ev = result.evidence
    ev.append(f"slope {slope * per_min:+.2f} MB/min (95% CI {lo * per_min:+.2f} … {hi * per_min:+.2f})")
    ev.append(f"grew {growth / MB:+.1f} MB over {duration:.1f}s ({growth / max(start, 1):+.1%})")
    ev.append(f"R² {r2:.2f}; the floor rose in {mono:.0%} of its moves")
    if not significant:
        if lo <= 0 <= hi or slope <= 0:
            ev.append("the interval includes zero: no trend beyond the sawtooth")
        else:
            ev.append(f"growth below {max(MIN_GROWTH_BYTES, MIN_GROWTH_SHARE * start) / MB:.1f} MB: too small to call")
        return result
    half = n // 2
    s1, _, _ = theil_sen(ts[: len(ts) // 2], ys[: len(ys) // 2]) if half >= 3 else (slope, 0, 0)
    s2, _, _ = theil_sen(ts[len(ts) // 2 :], ys[len(ys) // 2 :]) if half >= 3 else (slope, 0, 0)
    decelerating = s1 > 0 and s2 < 0.3 * s1
    if (r2 >= LEAK_R2 or mono >= LEAK_MONOTONIC) and not decelerating:
        result.verdict = "leak-suspected"
        ev.append("steady linear growth that does not level off: a leak, or a cache without a bound")
    else:
        result.verdict = "growing"
        if decelerating:
            ev.append(f"growth is levelling off ({s1 * per_min:+.1f} → {s2 * per_min:+.1f} MB/min): warm-up or a filling cache")
        else:
            ev.append("growth is irregular: watch longer to tell a leak from load")
    return result


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return 0.0
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(y: list[float], width: int = 60) -> str:
    if not y:
        return ""
    if len(y) > width:
        # Bucket by max so short spikes stay visible.
        size = len(y) / width
        y = [max(y[int(i * size) : max(int(i * size) + 1, int((i + 1) * size))]) for i in range(width)]
    lo, hi = min(y), max(y)
    if hi == lo:
        return SPARKS[0] * len(y)
    return "".join(SPARKS[min(7, int((v - lo) / (hi - lo) * 8))] for v in y)
