"""Renderers: aligned, coloured lines for people; one JSON object per line; raw lines; the
summary as tables.  Text from the logs is untrusted: control characters (terminal escape
sequences included) are made visible before anything reaches a terminal."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from typing import Any

from obskit.logs.model import LogRecord, Marker
from obskit.logs.summary import Bucket, LogsSummary

_COLOURS = {"trace": "2", "debug": "34", "info": "32", "warning": "33", "error": "31", "critical": "1;37;41"}
_LABELS = {"trace": "TRACE", "debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR",
           "critical": "CRIT"}
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
KEY_FIELDS = ("status", "status_code", "http.status_code", "method", "path", "url", "route", "duration_ms",
              "duration", "latency", "user", "user_id", "error", "exception", "err", "code")


def safe(text: str) -> str:
    """Control characters, bidi overrides and zero-width characters as visible escapes (a log
    line must not drive the terminal); tab and newline stay."""
    from obskit.inert import inert

    return inert(text, multiline=True)


class LineRenderer:
    def __init__(self, *, color: bool, show_source: bool, source_width: int, max_attrs: int = 6) -> None:
        self.color = color
        self.show_source = show_source
        self.source_width = source_width
        self.max_attrs = max_attrs
        self._tcache: tuple[int, str] = (-1, "")

    def _time(self, t: float | None) -> str:
        if t is None:
            return " " * 12
        sec, ms = divmod(round(t * 1000), 1000)
        if self._tcache[0] != sec:
            self._tcache = (sec, _dt.datetime.fromtimestamp(sec).strftime("%H:%M:%S"))
        return f"{self._tcache[1]}.{ms:03d}"

    def record(self, rec: LogRecord) -> str:
        level = rec.level
        label = _LABELS.get(level or "", "")
        parts = [self._time(rec.time)]
        lvl = f"{label:<5}"
        if self.color and level:
            lvl = f"\x1b[{_COLOURS[level]}m{lvl}\x1b[0m"
        parts.append(lvl)
        if self.show_source:
            src = rec.source[: self.source_width].ljust(self.source_width)
            parts.append(f"\x1b[36m{src}\x1b[0m" if self.color else src)
        if rec.format in ("plain", "continuation"):
            parts.append(safe(rec.raw))
            return " ".join(parts)
        tb = rec.attrs.get("exc_info") if rec.format == "python" else None
        body = safe(rec.message) if rec.message else ""
        if rec.logger:
            lg = safe(rec.logger)
            body = f"{lg}: {body}" if not self.color else f"\x1b[2m{lg}:\x1b[0m {body}"
        extras = []
        attrs = rec.attrs
        shown = 0
        for key in KEY_FIELDS:
            if key in attrs and shown < self.max_attrs:
                extras.append(f"{key}={_short(attrs[key])}")
                shown += 1
        if shown < self.max_attrs:
            for key, value in attrs.items():
                if shown >= self.max_attrs:
                    break
                if key in KEY_FIELDS or isinstance(value, (dict, list)) or (tb is not None and key == "exc_info"):
                    continue
                extras.append(f"{key}={_short(value)}")
                shown += 1
        if rec.trace_id:
            extras.append(f"trace={short_trace_id(rec.trace_id)}")
        if rec.capped:
            extras.append("[capped]")
        if extras:
            text = safe(" ".join(extras))
            body = f"{body}  \x1b[2m{text}\x1b[0m" if self.color else f"{body}  {text}"
        parts.append(body)
        text = " ".join(parts)
        if isinstance(tb, str):
            indent = " " * (19 + (self.source_width + 1 if self.show_source else 0))
            text += "".join(f"\n{indent}{safe(t)}" for t in tb.split("\n"))
        return text

    def marker(self, m: Marker) -> str:
        text = f"--- obskit: {safe(m.text)} ---"
        return f"\x1b[1;35m{text}\x1b[0m" if self.color else text


def short_trace_id(tid: str) -> str:
    """What tells trace ids apart: a 64-bit id padded to 128 bits is shown as its 64 bits, any
    other id whole (cut only past 64 characters)."""
    if len(tid) == 32 and tid.startswith("0" * 16):
        return tid[16:]
    return tid if len(tid) <= 64 else tid[:63] + "…"


def _short(v: Any, limit: int = 60) -> str:
    if isinstance(v, str):
        s = v if " " not in v else json.dumps(v, ensure_ascii=False)
    elif isinstance(v, bool):
        s = "true" if v else "false"
    elif v is None:
        s = "null"
    else:
        s = str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


try:
    if os.environ.get("OBSKIT_NO_ORJSON"):
        raise ImportError("disabled by OBSKIT_NO_ORJSON")
    import orjson as _orjson

    def _dumps(obj: Any) -> str:
        return _orjson.dumps(obj, default=str).decode()
except ImportError:  # pragma: no cover - optional speed-up
    _encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False).encode

    def _dumps(obj: Any) -> str:
        return _encode(obj)


def json_line(rec: LogRecord) -> str:
    from obskit.inert import json_safe

    try:
        return json_safe(_dumps(rec.to_json()))
    except (ValueError, TypeError, RecursionError, OverflowError):  # NaN/inf, odd keys, huge ints: still one valid object
        d = rec.to_json()
        d["attrs"] = {str(k): str(v) for k, v in rec.attrs.items()}
        return json_safe(json.dumps(d, ensure_ascii=False, default=str, allow_nan=False, separators=(",", ":")))


HISTOGRAM_ROWS = 40


def rebucket(buckets: list[Bucket], rows: int) -> tuple[list[Bucket], int]:
    """``buckets`` merged ``width`` at a time so that the whole range fits in ``rows`` rows."""
    width = max(1, -(-len(buckets) // rows))
    if width == 1:
        return buckets, 1
    out: list[Bucket] = []
    for i in range(0, len(buckets), width):
        counts: dict[str, int] = {}
        for b in buckets[i:i + width]:
            for lv, n in b.counts.items():
                counts[lv] = counts.get(lv, 0) + n
        out.append(Bucket(buckets[i].start, counts))
    return out, width


def render_summary(s: LogsSummary) -> None:
    from rich.table import Table

    from obskit.output import console, escape

    con = console()
    span = f"{s.first_time} .. {s.last_time}" if s.first_time else "no timestamps"
    con.print(f"[bold]{s.records}[/] records from {s.lines} lines ({escape(span)})")
    levels = "  ".join(f"{lv}={n}" for lv, n in s.by_level.items()) or "-"
    con.print(f"by level: {escape(levels)}")
    health = []
    for name in ("unparsed", "capped", "invalid_utf8", "dropped", "gaps", "untimed"):
        v = getattr(s, name)
        if v:
            health.append(f"{name}={v}")
    if health:
        con.print(f"[yellow]{escape('  '.join(health))}[/]")
    if s.histogram:
        rows, width = rebucket(s.histogram, HISTOGRAM_ROWS)
        seconds = (s.bucket_seconds or 1) * width
        note = f"{len(s.histogram)} buckets of {s.bucket_seconds:g}s shown {width} to a row" if width > 1 else "the whole range"
        con.print(f"\n[bold]levels over time[/], {seconds:g}s a row ({note})")
        peak = max(sum(b.counts.values()) for b in rows) or 1
        for b in rows:
            total = sum(b.counts.values())
            err = sum(n for lv, n in b.counts.items() if lv in ("error", "critical"))
            warn_ = b.counts.get("warning", 0)
            bar = 40
            bar_e = round(bar * err / peak)
            bar_w = round(bar * warn_ / peak)
            bar_o = max(0, round(bar * total / peak) - bar_e - bar_w)
            stamp = (b.start or "")[11:19]
            con.print(f"{stamp} [red]{'█' * bar_e}[/][yellow]{'█' * bar_w}[/][dim]{'█' * bar_o}[/] {total}"
                      + (f" ([red]{err} err[/])" if err else ""))
    if s.bursts:
        con.print("\n[bold red]error bursts[/]")
        for burst in s.bursts:
            ratio = f"{burst.ratio}x baseline" if burst.ratio else "from zero"
            con.print(f"  {burst.start} .. {burst.end}: {burst.errors} errors ({ratio} {burst.baseline_per_bucket}/bucket)")
    if s.top_templates:
        t = Table(title="top messages", title_justify="left", show_edge=False)
        t.add_column("count", justify="right")
        t.add_column("err", justify="right", style="red")
        t.add_column("first", no_wrap=True)
        t.add_column("last", no_wrap=True)
        t.add_column("template", overflow="fold")
        for ts in s.top_templates:
            t.add_row(str(ts.count), str(ts.errors or ""), (ts.first_seen or "-")[11:23], (ts.last_seen or "-")[11:23],
                      escape(safe(ts.template)))
        con.print(t)
    if s.top_error_traces:
        t = Table(title="traces with the most errors", title_justify="left", show_edge=False)
        t.add_column("errors", justify="right", style="red")
        t.add_column("trace id", no_wrap=True)
        t.add_column("example", overflow="fold")
        for tr in s.top_error_traces:
            t.add_row(str(tr.errors), escape(safe(tr.trace_id)), escape(safe(tr.example)))
        con.print(t)
    if s.otlp:
        o = s.otlp
        con.print(f"\nOTLP: sent {o.get('sent', 0)}, failed {o.get('failed', 0)}, dropped {o.get('dropped', 0)} "
                  f"-> {escape(str(o.get('endpoint')))}")
