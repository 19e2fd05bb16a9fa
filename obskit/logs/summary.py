"""The incident summary of a log stream, in bounded memory.

Counts by level; a level histogram whose bucket width doubles whenever the span would need
more than ``MAX_BUCKETS`` buckets; message templates (numbers, ids, hex, UUIDs, IPs masked)
and trace ids kept as bounded heavy-hitter tables (when a table reaches twice its capacity
the smallest half is evicted, and the largest evicted count is reported as the error bound
of every count); error bursts found against a rolling baseline of the preceding buckets
(see :meth:`SummaryBuilder.bursts` for the test and the data a baseline needs).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from obskit.logs.model import LEVELS, LogRecord, iso_time

MAX_BUCKETS = 120
TEMPLATE_CAPACITY = 500
TRACE_CAPACITY = 500
ERROR_RANK = LEVELS["error"]
BASELINE_BUCKETS = 10
BASELINE_MIN_RECORDS = 10
BURST_MIN_ERRORS = 5
BURST_P = 0.01


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    term = math.exp(-lam)
    cdf = term
    for i in range(1, k):
        term *= lam / i
        cdf += term
    return max(0.0, 1.0 - cdf) if cdf < 0.999999 else _poisson_tail(k, lam)


def _poisson_tail(k: int, lam: float) -> float:
    # summed from k upwards when 1 - cdf would lose its digits
    term = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1)) if lam > 0 else 0.0
    total, i = 0.0, k
    while term > 1e-300 and i < k + 1000:
        total += term
        i += 1
        term *= lam / i
    return total


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)

_MASKS = [
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?:0x)?[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\d[0-9a-fA-F]*\b|\b(?:0x)?[0-9a-fA-F]*\d[0-9a-fA-F]*"
                r"[a-fA-F][0-9a-fA-F]*\b"), "<hex>"),
    (re.compile(r"[-+]?\b\d+(?:[.,:]\d+)*(?:ms|us|µs|ns|s|m|h|b|kb|mb|gb|%)?\b", re.I), "<num>"),
]
_HEXISH_MIN = 6


def template_of(message: str) -> str:
    """The message with its variable parts masked, so repeats of one log call group together."""
    t = message[:300]
    for rx, repl in _MASKS:
        if repl == "<hex>":
            t = rx.sub(lambda m: "<hex>" if len(m.group(0)) >= _HEXISH_MIN else m.group(0), t)
        else:
            t = rx.sub(repl, t)
    return t.strip() or "(empty)"


@dataclass
class TemplateStat:
    template: str
    count: int
    errors: int
    levels: dict[str, int]
    first_seen: str | None
    last_seen: str | None
    example: str


@dataclass
class TraceStat:
    trace_id: str
    errors: int
    first_seen: str | None
    last_seen: str | None
    example: str


@dataclass
class Bucket:
    start: str | None
    counts: dict[str, int]


@dataclass
class Burst:
    start: str | None
    end: str | None
    errors: int
    baseline_per_bucket: float
    ratio: float | None


@dataclass
class SourceStat:
    source: str
    lines: int
    bytes: int
    formats: dict[str, int]
    dropped: int = 0
    capped: int = 0
    rotations: int = 0
    gaps: int = 0


@dataclass
class LogsSummary:
    SCHEMA = "obskit.logs-summary/1"

    lines: int
    records: int  # after filters
    first_time: str | None
    last_time: str | None
    by_level: dict[str, int]
    bucket_seconds: float | None
    histogram: list[Bucket]
    top_templates: list[TemplateStat]
    templates_distinct: int
    templates_evicted: int
    template_count_error: int
    bursts: list[Burst]
    top_error_traces: list[TraceStat]
    traces_evicted: int
    unparsed: int
    capped: int
    invalid_utf8: int
    dropped: int
    gaps: int
    untimed: int
    sources: list[SourceStat] = field(default_factory=list)
    otlp: dict[str, Any] | None = None
    interrupted: bool = False


class _Heavy:
    """Bounded counting table (prune-to-capacity heavy hitters)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: dict[str, list[Any]] = {}
        self.evicted = 0
        self.error = 0

    def get(self, key: str) -> list[Any] | None:
        return self.items.get(key)

    def add(self, key: str, entry: list[Any]) -> None:
        self.items[key] = entry
        if len(self.items) >= 2 * self.capacity:
            ranked = sorted(self.items.items(), key=lambda kv: kv[1][0], reverse=True)
            keep, drop = ranked[: self.capacity], ranked[self.capacity:]
            self.evicted += len(drop)
            self.error = max(self.error, max(e[0] for _, e in drop))
            self.items = dict(keep)


class SummaryBuilder:
    def __init__(self, top: int = 10) -> None:
        self.top = top
        self.records = 0
        self.by_level: dict[str, int] = {}
        self.first: float | None = None
        self.last: float | None = None
        self.width = 1.0
        self.lo: int | None = None  # lowest and highest bucket index (absolute: floor(t / width))
        self.hi: int | None = None
        self.buckets: dict[int, dict[str, int]] = {}
        self.templates = _Heavy(TEMPLATE_CAPACITY)
        self.traces = _Heavy(TRACE_CAPACITY)
        self.template_cache: dict[str, str] = {}
        self.untimed = 0

    def add(self, rec: LogRecord) -> None:
        self.add_fields(rec.level, rec.time, rec.message if rec.format != "plain" else rec.raw, rec.trace_id)

    def add_fields(self, level_: str | None, t: float | None, msg: str, trace_id: str | None) -> None:
        self.records += 1
        level = level_ or "none"
        self.by_level[level] = self.by_level.get(level, 0) + 1
        if t is None:
            self.untimed += 1
        else:
            if self.first is None or t < self.first:
                self.first = t
            if self.last is None or t > self.last:
                self.last = t
            b = self.buckets.get(math.floor(t / self.width))
            if b is not None:  # a bucket in use: inside the range
                b[level] = b.get(level, 0) + 1
            else:
                self._bucket(t, level)
        is_error = level == "error" or level == "critical"
        tmpl = self.template_cache.get(msg)
        if tmpl is None:
            tmpl = template_of(msg)
            if len(self.template_cache) > 20000:
                self.template_cache.clear()
            self.template_cache[msg] = tmpl
        e = self.templates.items.get(tmpl)
        if e is None:
            # [count, errors, levels, first, last, example]
            self.templates.add(tmpl, [1, int(is_error), {level: 1}, t, t, msg[:300]])
        else:
            e[0] += 1
            if is_error:
                e[1] += 1
            e[2][level] = e[2].get(level, 0) + 1
            if t is not None:
                if e[3] is None or t < e[3]:
                    e[3] = t
                if e[4] is None or t > e[4]:
                    e[4] = t
        if is_error and trace_id:
            te = self.traces.get(trace_id)
            if te is None:
                self.traces.add(trace_id, [1, t, t, msg[:200]])
            else:
                te[0] += 1
                if t is not None:
                    te[1] = t if te[1] is None else min(te[1], t)
                    te[2] = t if te[2] is None else max(te[2], t)

    def _bucket(self, t: float, level: str, n: int = 1) -> None:
        # buckets sit on an absolute grid (index = floor(t / width)), so two builders' buckets of
        # one width line up and merge exactly
        idx = math.floor(t / self.width)
        b = self.buckets.get(idx)
        if b is not None:  # the usual case: a bucket in use (so inside the range)
            b[level] = b.get(level, 0) + n
            return
        lo = idx if self.lo is None or idx < self.lo else self.lo
        hi = idx if self.hi is None or idx > self.hi else self.hi
        while hi - lo >= MAX_BUCKETS:
            self._widen()
            idx, lo, hi = idx // 2, lo // 2, hi // 2
        self.lo, self.hi = lo, hi
        b = self.buckets.get(idx)
        if b is None:
            b = self.buckets[idx] = {}
        b[level] = b.get(level, 0) + n

    def _widen(self) -> None:
        merged: dict[int, dict[str, int]] = {}
        for k, v in self.buckets.items():
            m = merged.setdefault(k // 2, {})
            for lv, n in v.items():
                m[lv] = m.get(lv, 0) + n
        self.buckets = merged
        self.width *= 2
        if self.lo is not None and self.hi is not None:
            self.lo, self.hi = self.lo // 2, self.hi // 2

    def merge(self, other: SummaryBuilder) -> None:
        """Add what ``other`` counted (another part of the same input) to this summary."""
        self.records += other.records
        self.untimed += other.untimed
        for lv, n in other.by_level.items():
            self.by_level[lv] = self.by_level.get(lv, 0) + n
        for t in (other.first, other.last):
            if t is not None:
                self.first = t if self.first is None or t < self.first else self.first
                self.last = t if self.last is None or t > self.last else self.last
        while other.width > self.width:
            self._widen()
        while self.width > other.width:
            other._widen()
        width = self.width  # the grid of other's keys (ours may widen while they are added)
        for k, counts in other.buckets.items():
            for lv, n in counts.items():
                self._bucket((k + 0.5) * width, lv, n)
        for key, e in other.templates.items.items():
            mine = self.templates.get(key)
            if mine is None:
                self.templates.add(key, e)
                continue
            mine[0] += e[0]
            mine[1] += e[1]
            for lv, n in e[2].items():
                mine[2][lv] = mine[2].get(lv, 0) + n
            mine[3] = _min(mine[3], e[3])
            mine[4] = _max(mine[4], e[4])
        self.templates.evicted += other.templates.evicted
        self.templates.error += other.templates.error
        for key, e in other.traces.items.items():
            mine = self.traces.get(key)
            if mine is None:
                self.traces.add(key, e)
                continue
            mine[0] += e[0]
            mine[1] = _min(mine[1], e[1])
            mine[2] = _max(mine[2], e[2])
        self.traces.evicted += other.traces.evicted
        self.traces.error += other.traces.error

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["template_cache"] = {}  # a cache: not worth sending between processes
        return state

    def bursts(self) -> list[Burst]:
        """Error bursts: a bucket whose error count is improbable against the buckets before it.

        The baseline is the mean errors per bucket over the ``BASELINE_BUCKETS`` preceding
        buckets; a bucket is tested only when all of them lie inside the stream and hold at
        least ``BASELINE_MIN_RECORDS`` records (any level), so a short or quiet start is never
        a baseline.  The test is one-sided Poisson: P(X >= errors | mean) below
        ``BURST_P`` divided by the number of buckets tested (Bonferroni), with at least
        ``BURST_MIN_ERRORS`` errors; a baseline mean under 0.5 is taken as 0.5.
        """
        if not self.buckets or self.lo is None or self.hi is None:
            return []
        span = range(self.lo, self.hi + 1)
        totals = [sum(self.buckets.get(i, {}).values()) for i in span]
        errors = [sum(c for lv, c in self.buckets.get(i, {}).items() if LEVELS.get(lv, 0) >= ERROR_RANK)
                  for i in span]
        window = BASELINE_BUCKETS
        tested = [i for i in range(window, len(errors)) if sum(totals[i - window:i]) >= BASELINE_MIN_RECORDS]
        if not tested:
            return []
        alpha = BURST_P / len(tested)
        out: list[Burst] = []
        cur: Burst | None = None
        for i in range(len(errors)):
            e = errors[i]
            start = (self.lo + i) * self.width
            is_burst = False
            base = 0.0
            if i >= window and sum(totals[i - window:i]) >= BASELINE_MIN_RECORDS and e >= BURST_MIN_ERRORS:
                base = sum(errors[i - window:i]) / window
                is_burst = poisson_sf(e, max(base, 0.5)) < alpha
            if is_burst:
                if cur is None:
                    cur = Burst(iso_time(start), iso_time(start + self.width), e, round(base, 2),
                                round(e / base, 1) if base else None)
                    out.append(cur)
                else:
                    cur.end = iso_time(start + self.width)
                    cur.errors += e
            elif cur is not None and e >= BURST_MIN_ERRORS and e > cur.baseline_per_bucket * 3:
                # still well above the baseline the burst started from: the same burst goes on
                cur.end = iso_time(start + self.width)
                cur.errors += e
            else:
                cur = None
        return out

    def result(self, *, lines: int, unparsed: int, capped: int, invalid_utf8: int, dropped: int, gaps: int,
               sources: list[SourceStat], interrupted: bool = False) -> LogsSummary:
        items = sorted(self.templates.items.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[: self.top]
        traces = sorted(self.traces.items.items(), key=lambda kv: (-kv[1][0], kv[0]))[: self.top]
        hist: list[Bucket] = []
        if self.buckets and self.lo is not None and self.hi is not None:
            hist = [Bucket(iso_time(i * self.width), dict(self.buckets.get(i, {})))
                    for i in range(self.lo, self.hi + 1)]
        order = {name: i for i, name in enumerate(LEVELS)}
        by_level = dict(sorted(self.by_level.items(), key=lambda kv: order.get(kv[0], 99)))
        return LogsSummary(
            lines=lines,
            records=self.records,
            first_time=iso_time(self.first),
            last_time=iso_time(self.last),
            by_level=by_level,
            bucket_seconds=self.width if hist else None,
            histogram=hist,
            top_templates=[TemplateStat(k, v[0], v[1], v[2], iso_time(v[3]), iso_time(v[4]), v[5]) for k, v in items],
            templates_distinct=len(self.templates.items) + self.templates.evicted,
            templates_evicted=self.templates.evicted,
            template_count_error=self.templates.error,
            bursts=self.bursts(),
            top_error_traces=[TraceStat(k, v[0], iso_time(v[1]), iso_time(v[2]), v[3]) for k, v in traces],
            traces_evicted=self.traces.evicted,
            unparsed=unparsed,
            capped=capped,
            invalid_utf8=invalid_utf8,
            dropped=dropped,
            gaps=gaps,
            untimed=self.untimed,
            sources=sources,
            interrupted=interrupted,
        )
