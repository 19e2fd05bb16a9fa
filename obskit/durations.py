"""The one duration grammar of obskit: ``250ms``, ``90``, ``90s``, ``5m``, ``1.5h``, ``1d``, ``2w``.

Every option that takes a length of time (``mem --watch``, ``logs --since 15m``,
``trace span --start -5s``, ``-d``, ``--interval``, ``--max-time``) reads it here, so
``1d`` means the same everywhere.  A bare number is seconds.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from obskit.errors import UsageError

# unit -> nanoseconds (exact, so trace times keep their nanoseconds)
UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "sec": 10**9,
    "m": 60 * 10**9,
    "min": 60 * 10**9,
    "h": 3600 * 10**9,
    "hr": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 604800 * 10**9,
}

_DURATION = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]*)\s*$", re.IGNORECASE)
HELP = "use seconds or a unit: 250ms, 30s, 5m, 1h, 1d"


def parse_duration_ns(text: str, *, option: str = "duration", signed: bool = False) -> int:
    """``text`` as signed nanoseconds (exact); raises :class:`UsageError` on anything else."""
    if text.strip().lstrip("+-").lower() in ("inf", "infinity", "nan"):
        raise UsageError(f"{option} must be a finite duration, got {text[:40]!r}", HELP)
    m = _DURATION.match(text)
    if not m or (m.group(1) and not signed):
        raise UsageError(f"bad {option} {text[:40]!r}", HELP)
    unit = m.group(3).lower()
    if unit and unit not in UNITS_NS:
        raise UsageError(f"bad {option} {text[:40]!r}: unknown unit {unit[:10]!r}", HELP)
    try:
        value = Decimal(m.group(2)) * UNITS_NS[unit or "s"]
    except InvalidOperation:
        raise UsageError(f"bad {option} {text[:40]!r}", HELP) from None
    if value >= 10**30:  # far past any useful length; keeps float conversion finite
        raise UsageError(f"{option} {text[:40]!r} is too long", HELP)
    ns = int(value)
    return -ns if m.group(1) == "-" else ns


def parse_duration(text: str, *, option: str = "duration", allow_zero: bool = False) -> float:
    """``text`` as seconds (a positive, finite float; zero only with ``allow_zero``)."""
    seconds = parse_duration_ns(text, option=option) / 1e9
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise UsageError(f"{option} must be positive, got {text[:40]!r}", HELP)
    return seconds
