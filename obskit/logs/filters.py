"""Filters over records (level threshold, time window, trace id, regex, field expressions)
and the byte-level prefilters that let most lines skip parsing.

A prefilter may only reject a line it can *prove* cannot match: each one is derived from
what the parser could possibly produce for that line (see ``model.LEVEL_TOKENS``).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time as _time
from dataclasses import dataclass, field
from typing import Any, Callable

from obskit.errors import UsageError
from obskit.logs.model import LEVEL_TOKENS, LEVELS, LogRecord, level_rank, normalise_level
from obskit.logs.parse import parse_time

_NUMBER = re.compile(r"\d+(?:\.\d*)?")


def parse_when(text: str, option: str, now: float | None = None) -> float:
    """A point in time: a duration ago in obskit's one grammar (``15m``, ``2h ago``, ``90``; see
    :mod:`obskit.durations`), ``now``, an ISO time, a time of day today, or epoch seconds (a bare
    number past 10^8)."""
    from obskit.durations import parse_duration

    now = _time.time() if now is None else now
    s = text.strip()
    if s.lower() == "now":
        return now
    ago = s.lower().endswith("ago")
    rel = s[:-3].strip() if ago else s
    if not (_NUMBER.fullmatch(rel) and float(rel) > 1e8):
        try:
            return now - parse_duration(rel, option=option, allow_zero=True)
        except UsageError:
            if ago:
                raise
    if re.fullmatch(r"\d\d:\d\d(:\d\d(\.\d+)?)?", s):
        today = _dt.datetime.fromtimestamp(now).strftime("%Y-%m-%d")
        s = f"{today} {s}"
    t = parse_time(s)
    if t is None:
        raise UsageError(f"cannot read {option} {text!r}",
                         "use a duration such as 15m, 2h, 1d, or a time such as 2024-05-14T12:00:00Z or 12:30")
    return t


def minimal_tokens(tokens: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """Drop tokens containing a shorter token (``error`` when ``err`` is there)."""
    out: list[bytes] = []
    for t in sorted(set(tokens), key=len):
        if not any(o in t for o in out):
            out.append(t)
    return tuple(out)


# a numeric level (python levelno, bunyan/pino level, OTel severity number) behind its key
_NUMERIC_LEVEL = re.compile(rb'(?:level|lvl|severity|number|@l)[\w.]*\\?"?\s*[:=]\s*\\?"?\s*\d')


def level_prefilter(threshold: str) -> Callable[[bytes], bool] | None:
    """A function of one raw line that is False only when the line cannot be at ``threshold`` or
    above (the per-line form of :class:`BlockPrefilter`)."""
    if level_rank(threshold) <= LEVELS["trace"]:
        return None
    tokens = minimal_tokens(LEVEL_TOKENS[threshold])
    numeric = _NUMERIC_LEVEL.search

    def pre(line: bytes) -> bool:
        low = line.lower()
        return any(t in low for t in tokens) or b"\\u" in line or numeric(low) is not None

    return pre


_NUMERIC_BY_KEY = [(k, re.compile(re.escape(k) + rb'[\w.]*\\?"?[^\S\n]*[:=][^\S\n]*\\?"?[^\S\n]*\d'))
                   for k in (b"level", b"lvl", b"severity", b"number", b"@l")]
# the same, for a multi-pattern scanner (no newline inside one match: a match belongs to one line)
_NUMERIC_PATTERN = rb'(?:level|lvl|severity|number|@l)[\w.]*\\?"?[ \t\r\f\v]*[:=][ \t\r\f\v]*\\?"?[ \t\r\f\v]*\d'


def _hyperscan_db(tokens: list[bytes], numeric: bool) -> Any:
    """A compiled Hyperscan database for ``tokens`` (caseless) and the numeric-level pattern, or None
    when Hyperscan is not installed (the pure-Python scan below then does the same work)."""
    if os.environ.get("OBSKIT_NO_HYPERSCAN"):
        return None
    try:
        import hyperscan
    except ImportError:  # pragma: no cover - optional on platforms without wheels
        return None
    exprs = [re.escape(t) for t in tokens]
    if numeric:
        exprs.append(_NUMERIC_PATTERN)
    db = hyperscan.Database()
    db.compile(expressions=exprs, ids=list(range(len(exprs))),
               flags=[hyperscan.HS_FLAG_CASELESS] * len(exprs))
    return db


class ChunkPrefilter:
    """Candidate lines of a chunk of whole lines, found by scanning the chunk at C speed (Hyperscan
    when installed: one pass for every token; otherwise a lower-cased copy and one ``find`` per
    token).  Lines not returned are proven not to match: a line at ``level`` or above contains one
    of ``LEVEL_TOKENS[level]`` in some case, a JSON escape (which can spell anything), or a number
    behind a level key; ``--trace-id`` lines contain the id (in any case) or a JSON escape."""

    def __init__(self, level: str | None, trace_id: str | None) -> None:
        self.tokens: list[bytes] = []
        self.numeric = False
        if level and level_rank(level) > LEVELS["trace"]:
            self.tokens.extend(minimal_tokens(LEVEL_TOKENS[level]))
            self.tokens.append(b"\\u")
            self.numeric = True
        self.needle = trace_id.lower().encode() if trace_id else None
        self._db = _hyperscan_db(self.tokens, self.numeric) if self.tokens else None

    @property
    def active(self) -> bool:
        return bool(self.tokens or self.needle)

    @property
    def engine(self) -> str:
        return "hyperscan" if self._db is not None else "python"

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """(start, end) of each candidate line of ``data`` (``end`` excludes the newline), in order."""
        level: list[tuple[int, int]] | None = None
        if self.tokens:
            level = self._level_spans(data)
        if self.needle is None:
            return level or []
        low = data.lower()
        found = _line_spans(data, _find_all(low, self.needle) + _find_all(low, b"\\u"))
        if level is None:
            return found
        keep = {s for s, _ in found}
        return [sp for sp in level if sp[0] in keep]

    def _level_spans(self, data: bytes) -> list[tuple[int, int]]:
        if self._db is not None:
            ends: list[int] = []
            add = ends.append

            def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
                add(end - 1)

            self._db.scan(data, match_event_handler=on_match)
            return _line_spans(data, ends)
        low = data.lower()
        hits: list[int] = []
        for tok in self.tokens:
            hits.extend(_find_all(low, tok))
        if self.numeric:
            for key, rx in _NUMERIC_BY_KEY:
                n = low.count(key)
                # every occurrence directly followed by '":"' holds a string: no number behind this key
                if n == 0 or n == low.count(key + b'":"'):
                    continue
                hits.extend(m.start() for m in rx.finditer(low))
        return _line_spans(data, hits)


def _find_all(low: bytes, needle: bytes) -> list[int]:
    """Offsets of ``needle`` in ``low``, at most one per line."""
    out: list[int] = []
    find = low.find
    pos = find(needle)
    while pos >= 0:
        out.append(pos)
        nl = find(b"\n", pos)
        if nl < 0:
            break
        pos = find(needle, nl + 1)
    return out


def _line_spans(data: bytes, offsets: list[int]) -> list[tuple[int, int]]:
    """The lines holding the byte at each offset, each once, in order."""
    out: list[tuple[int, int]] = []
    last = -1
    rfind, find = data.rfind, data.find
    for off in sorted(offsets):
        if off <= last:
            continue
        start = rfind(b"\n", 0, off) + 1
        end = find(b"\n", off)
        if end < 0:
            end = len(data)
        out.append((start, end))
        last = end
    return out


class BlockPrefilter:
    """:class:`ChunkPrefilter` over a list of lines: the indices of the candidate lines."""

    def __init__(self, level: str | None, trace_id: str | None) -> None:
        self.chunk = ChunkPrefilter(level, trace_id)

    @property
    def active(self) -> bool:
        return self.chunk.active

    def candidates(self, lines: list[bytes]) -> list[int]:
        from bisect import bisect_right
        from itertools import accumulate

        starts = [0, *accumulate(len(x) + 1 for x in lines)]
        return [bisect_right(starts, s) - 1 for s, _ in self.chunk.spans(b"\n".join(lines))]


@dataclass
class WhereExpr:
    field: str
    op: str
    value: str
    number: float | None = None
    regex: re.Pattern[str] | None = None

    def __call__(self, rec: LogRecord) -> bool:
        got = rec.get(self.field)
        if self.op in ("~", "!~"):
            assert self.regex is not None
            hit = got is not None and self.regex.search(got if isinstance(got, str) else _text(got)) is not None
            return hit if self.op == "~" else not hit
        if got is None:
            return self.op == "!="
        if self.field == "level":
            a, b = level_rank(got), level_rank(normalise_level(self.value))
            return _cmp(self.op, a, b)
        if self.field == "time" and self.number is not None:
            return isinstance(got, (int, float)) and _cmp(self.op, float(got), self.number)
        if self.number is not None:
            n = _as_number(got)
            if n is not None:
                return _cmp(self.op, n, self.number)
            if self.op not in ("=", "!="):
                return False
        if self.op in ("=", "!="):
            eq = _text(got) == self.value
            return eq if self.op == "=" else not eq
        return _cmp(self.op, _text(got), self.value)


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _cmp(op: str, a: Any, b: Any) -> bool:
    if op in ("=", "=="):
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)


_WHERE = re.compile(r"^\s*([A-Za-z_@][\w.@/\-]*)\s*(>=|<=|!=|==|!~|=|>|<|~)\s*(.*?)\s*$", re.S)
_WHERE_HINT = "expected FIELD OP VALUE with OP one of = != > >= < <= ~ !~, e.g. 'status>=500', 'user=alice', 'msg~timeout'"


def parse_where(text: str) -> WhereExpr:
    m = _WHERE.match(text)
    if not m or (m.group(3) == "" and m.group(2) not in ("=", "!=", "==")) or m.group(3)[:1] in ("=", "<", ">", "!", "~"):
        raise UsageError(f"bad --where expression {text!r}", _WHERE_HINT)
    name, op, value = m.group(1), m.group(2), m.group(3)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if op == "==":
        op = "="
    expr = WhereExpr(field=name, op=op, value=value)
    if op in ("~", "!~"):
        try:
            expr.regex = re.compile(value)
        except re.error as e:
            raise UsageError(f"bad regular expression in --where {text!r}: {e}", _WHERE_HINT) from None
        return expr
    if name == "level":
        if normalise_level(value) is None:
            raise UsageError(f"unknown level {value!r} in --where {text!r}", "use trace, debug, info, warning, error or critical")
        return expr
    if name == "time":
        expr.number = parse_when(value, "--where time")
        return expr
    try:
        expr.number = float(value)
    except ValueError:
        if op in (">", ">=", "<", "<="):
            pass  # string ordering
    return expr


@dataclass
class Filters:
    level: str | None = None
    since: float | None = None
    until: float | None = None
    trace_id: str | None = None
    grep: re.Pattern[bytes] | None = None
    where: list[WhereExpr] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.level or self.since is not None or self.until is not None or self.trace_id or self.grep
                    or self.where)

    def block_prefilter(self) -> ChunkPrefilter | None:
        b = ChunkPrefilter(self.level, self.trace_id)
        return b if b.active else None

    def line_prefilter(self) -> Callable[[bytes], bool] | None:
        """What must also hold per line after :meth:`block_prefilter` (``--grep``: exact, on raw bytes)."""
        if self.grep is None:
            return None
        search = self.grep.search
        return lambda line: search(line) is not None

    def match(self, rec: LogRecord) -> bool:
        if self.level is not None and level_rank(rec.level) < LEVELS[self.level]:
            return False
        if self.since is not None and (rec.time is None or rec.time < self.since):
            return False
        if self.until is not None and (rec.time is None or rec.time > self.until):
            return False
        if self.trace_id is not None and rec.trace_id != self.trace_id:
            return False
        # --grep is applied to the raw bytes by prefilter(), which the pipeline always runs
        return all(w(rec) for w in self.where)


def build_filters(level: str | None, since: str | None, until: str | None, trace_id: str | None,
                  grep: str | None, where: list[str]) -> Filters:
    f = Filters()
    if level:
        canon = normalise_level(level)
        if canon is None:
            raise UsageError(f"unknown level {level!r}", "use trace, debug, info, warning, error or critical")
        f.level = canon
    now = _time.time()
    if since:
        f.since = parse_when(since, "--since", now)
    if until:
        f.until = parse_when(until, "--until", now)
    if f.since is not None and f.until is not None and f.until < f.since:
        raise UsageError("--until is before --since", "swap them, or use a later --until")
    if trace_id:
        tid = trace_id.strip().lower()
        if tid.startswith("00-") and len(tid) >= 35:
            tid = tid[3:35]  # a whole traceparent pasted
        f.trace_id = tid
    if grep:
        try:
            f.grep = re.compile(grep.encode())
        except re.error as e:
            raise UsageError(f"bad --grep regular expression {grep!r}: {e}", "it is a Python regular expression") from None
    f.where = [parse_where(w) for w in where]
    return f
