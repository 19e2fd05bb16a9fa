"""The normalised log record and the level scale every format is mapped onto."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

# Canonical level names and their OpenTelemetry severity numbers (used as the rank).
LEVELS: dict[str, int] = {"trace": 1, "debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}

_ALIASES: dict[str, str] = {
    "trace": "trace", "trc": "trace", "trac": "trace", "verbose": "trace", "finest": "trace", "finer": "trace",
    "debug": "debug", "dbg": "debug", "debu": "debug", "fine": "debug",
    "info": "info", "inf": "info", "information": "info", "informational": "info", "notice": "info",
    "config": "info", "default": "info",
    "warn": "warning", "warning": "warning", "wrn": "warning",
    "error": "error", "err": "error", "erro": "error",  # logrus' text format: ERRO WARN INFO DEBU TRAC FATA PANI
    "critical": "critical", "crit": "critical", "fatal": "critical", "fata": "critical", "ftl": "critical",
    "panic": "critical", "pani": "critical", "dpanic": "critical", "alert": "critical", "emerg": "critical",
    "emergency": "critical", "severe": "critical",
}

# Lower-case byte strings whose absence proves a line cannot carry a level at or above the
# key's rank (see filters.level_prefilter); derived from _ALIASES so the two never disagree.
LEVEL_TOKENS: dict[str, tuple[bytes, ...]] = {}
for _name, _rank in LEVELS.items():
    LEVEL_TOKENS[_name] = tuple(
        sorted({a.encode() for a, canon in _ALIASES.items() if LEVELS[canon] >= _rank}, key=len)
    )

# python logging: 10 debug .. 50 critical
_PY_NUMERIC = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
# bunyan / pino: 10 trace .. 60 fatal
_BUNYAN_NUMERIC = {10: "trace", 20: "debug", 30: "info", 40: "warning", 50: "error", 60: "critical"}


def normalise_level(value: Any, scale: str = "bunyan") -> str | None:
    """Map a level value (name, python/bunyan/OTel number) to a canonical level name."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):  # NaN/inf from a hostile line
            return None
        return numeric_level(int(value), scale)
    if not isinstance(value, str) or not value:
        return None
    key = value.strip().lower()
    canon = _ALIASES.get(key)
    if canon is not None:
        return canon
    if key.isdigit():
        return numeric_level(int(key), scale)
    # OTel severity texts such as "ERROR2", "WARN3"
    stripped = key.rstrip("0123456789")
    if stripped != key:
        return _ALIASES.get(stripped)
    return None


def numeric_level(n: int, scale: str) -> str | None:
    if scale == "otel":
        if 1 <= n <= 24:
            return ("trace", "debug", "info", "warning", "error", "critical")[(n - 1) // 4]
        return None
    table = _PY_NUMERIC if scale == "python" else _BUNYAN_NUMERIC
    if n in table:
        return table[n]
    # between the named steps (python allows any int): round down to the step below
    steps = sorted(table)
    below = [s for s in steps if s <= n]
    return table[below[-1]] if below and n <= steps[-1] + 10 else None


def level_rank(level: str | None) -> int:
    return LEVELS.get(level or "", 0)


@dataclass(slots=True)
class LogRecord:
    """One log line (or record), normalised; the unit every filter and sink works on."""

    SCHEMA = "obskit.log/1"

    source: str
    raw: str
    format: str  # json | logfmt | python | cri | plain | continuation
    time: float | None = None  # epoch seconds
    level: str | None = None
    message: str = ""
    logger: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    capped: bool = False

    @property
    def parsed(self) -> bool:
        return self.format != "plain"

    def get(self, name: str) -> Any:
        """A field by name: the normalised ones first, then attributes (dotted paths too)."""
        if name in _FIELD_GETTERS:
            return _FIELD_GETTERS[name](self)
        if name in self.attrs:
            return self.attrs[name]
        cur: Any = self.attrs
        for part in name.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                return None
        return cur

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "time": iso_time(self.time),
            "level": self.level,
            "source": self.source,
            "logger": self.logger,
            "message": self.message,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "format": self.format,
            "attrs": self.attrs,
            **({"capped": True} if self.capped else {}),
        }


_FIELD_GETTERS: dict[str, Any] = {
    "level": lambda r: r.level,
    "msg": lambda r: r.message,
    "message": lambda r: r.message,
    "logger": lambda r: r.logger,
    "trace_id": lambda r: r.trace_id,
    "span_id": lambda r: r.span_id,
    "source": lambda r: r.source,
    "time": lambda r: r.time,
    "format": lambda r: r.format,
    "raw": lambda r: r.raw,
}


_ISO_SECOND: list[Any] = [None, ""]


def iso_time(t: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds (the seconds part cached: records arrive in time order)."""
    if t is None:
        return None
    sec, ms = divmod(round(t * 1000), 1000)
    if _ISO_SECOND[0] != sec:
        try:
            d = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
        _ISO_SECOND[0], _ISO_SECOND[1] = sec, d.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_ISO_SECOND[1]}.{ms:03d}Z"


@dataclass
class Marker:
    """Something the reader noticed about a source: a rotation, a truncation (a gap), drops."""

    SCHEMA = "obskit.log-marker/1"

    source: str
    kind: str  # rotated | truncated | dropped | missing | reopened
    text: str
    lines: int = 0
    gap: bool = False
