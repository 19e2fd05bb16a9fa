"""The incident summary of a log stream, in bounded memory.

Counts by level; a level histogram whose bucket width doubles whenever the span would need
more than ``MAX_BUCKETS`` buckets; message templates (numbers, ids, hex, UUIDs, IPs masked)
and trace ids kept as bounded heavy-hitter tables (when a table reaches twice its capacity
the smallest half is evicted, and the largest evicted count is reported as the error bound
of every count); error bursts found against a rolling baseline of the preceding buckets.
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
        self.origin: float | None = None
        self.buckets: dict[int, dict[str, int]] = {}
        self.templates = _Heavy(TEMPLATE_CAPACITY)
        self.traces = _Heavy(TRACE_CAPACITY)
        self.template_cache: dict[str, str] = {}
        self.untimed = 0

    def add(self, rec: LogRecord) -> None:
        self.records += 1
        level = rec.level or "none"
        self.by_level[level] = self.by_level.get(level, 0) + 1
        t = rec.time
        if t is None:
            self.untimed += 1
        else:
            if self.first is None or t < self.first:
                self.first = t
            if self.last is None or t > self.last:
                self.last = t
            self._bucket(t, level)
        is_error = LEVELS.get(level, 0) >= ERROR_RANK
        msg = rec.message if rec.format != "plain" else rec.raw
        tmpl = self.template_cache.get(msg)
        if tmpl is None:
            tmpl = template_of(msg)
            if len(self.template_cache) > 20000:
                self.template_cache.clear()
            self.template_cache[msg] = tmpl
        e = self.templates.get(tmpl)
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
        if is_error and rec.trace_id:
            te = self.traces.get(rec.trace_id)
            if te is None:
                self.traces.add(rec.trace_id, [1, t, t, msg[:200]])
            else:
                te[0] += 1
                if t is not None:
                    te[1] = t if te[1] is None else min(te[1], t)
                    te[2] = t if te[2] is None else max(te[2], t)

    def _bucket(self, t: float, level: str) -> None:
        if self.origin is None:
            self.origin = math.floor(t)
        if t < self.origin:
            # an earlier record (sources interleave): move the origin back by whole buckets
            shift = math.ceil((self.origin - t) / self.width)
            self.origin -= shift * self.width
            self.buckets = {k + shift: v for k, v in self.buckets.items()}
        idx = int((t - self.origin) // self.width)
        while idx >= MAX_BUCKETS:
            merged: dict[int, dict[str, int]] = {}
            for k, v in self.buckets.items():
                m = merged.setdefault(k // 2, {})
                for lv, n in v.items():
                    m[lv] = m.get(lv, 0) + n
            self.buckets = merged
            self.width *= 2
            idx = int((t - self.origin) // self.width)
        b = self.buckets.get(idx)
        if b is None:
            b = self.buckets[idx] = {}
        b[level] = b.get(level, 0) + 1

    def bursts(self) -> list[Burst]:
        if not self.buckets or self.origin is None:
            return []
        n = max(self.buckets) + 1
        errors = [sum(c for lv, c in self.buckets.get(i, {}).items() if LEVELS.get(lv, 0) >= ERROR_RANK)
                  for i in range(n)]
        out: list[Burst] = []
        window = 10
        cur: Burst | None = None
        for i, e in enumerate(errors):
            prev = errors[max(0, i - window):i]
            if not prev:
                continue
            base = sum(prev) / len(prev)
            threshold = max(5.0, 3 * base + 3 * math.sqrt(base))
            start = self.origin + i * self.width
            if e >= threshold:
                if cur is None:
                    cur = Burst(iso_time(start), iso_time(start + self.width), e, round(base, 2),
                                round(e / base, 1) if base else None)
                    out.append(cur)
                else:
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
        if self.buckets and self.origin is not None:
            origin = self.origin
            hist = [Bucket(iso_time(origin + i * self.width), dict(self.buckets.get(i, {})))
                    for i in range(max(self.buckets) + 1)]
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
