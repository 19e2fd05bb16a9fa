"""W3C trace context through environment variables (OTel env-carrier spec), stdlib only.

``TRACEPARENT``/``TRACESTATE``/``BAGGAGE`` are read once, parsed leniently (case,
surrounding whitespace, future versions with extra fields) and emitted strictly
(``00-<32 hex>-<16 hex>-<2 hex>``, lowercase).  Invalid or all-zero contexts are
ignored, never propagated.  The values are untrusted input: they are length-capped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_HEXDIGITS = frozenset("0123456789abcdef")
_TRACESTATE_MAX = 512  # W3C: 32 list members; keep the carrier small
_BAGGAGE_MAX = 8192  # W3C baggage limit


class SpanContext:
    """A W3C trace context: the parent of a span, or what a child inherits (immutable)."""

    __slots__ = ("flags", "span_id", "trace_id", "tracestate")
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    flags: int
    tracestate: str

    def __init__(self, trace_id: str, span_id: str, flags: int = 1, tracestate: str = "") -> None:
        for key, value in (("trace_id", trace_id), ("span_id", span_id), ("flags", flags), ("tracestate", tracestate)):
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"SpanContext is immutable (cannot set {key})")

    def _key(self) -> tuple[str, str, int, str]:
        return (self.trace_id, self.span_id, self.flags, self.tracestate)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpanContext) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "SpanContext(trace_id={!r}, span_id={!r}, flags={!r}, tracestate={!r})".format(*self._key())

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, self.flags)


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in _HEXDIGITS for c in text)


def new_trace_id() -> str:
    while True:
        tid = os.urandom(16).hex()
        if tid != "0" * 32:
            return tid


def new_span_id() -> str:
    while True:
        sid = os.urandom(8).hex()
        if sid != "0" * 16:
            return sid


def format_traceparent(trace_id: str, span_id: str, flags: int) -> str:
    return f"00-{trace_id}-{span_id}-{flags & 0xFF:02x}"


def parse_traceparent(value: str | None, tracestate: str | None = None) -> SpanContext | None:
    """A SpanContext from a traceparent value, or None when it is absent or invalid."""
    if not value:
        return None
    text = value.strip().lower()
    parts = text.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
    if len(version) != 2 or not _is_hex(version) or version == "ff":
        return None
    # Version 00 has exactly four fields; a future version may append more (W3C §3.2.4).
    if version == "00" and len(parts) != 4:
        return None
    if len(trace_id) != 32 or not _is_hex(trace_id) or trace_id == "0" * 32:
        return None
    if len(span_id) != 16 or not _is_hex(span_id) or span_id == "0" * 16:
        return None
    if len(flags) != 2 or not _is_hex(flags):
        return None
    return SpanContext(trace_id, span_id, int(flags, 16), clean_tracestate(tracestate))


def clean_tracestate(value: str | None) -> str:
    if not value:
        return ""
    members = [m.strip() for m in value.split(",") if "=" in m and m.strip()]
    out: list[str] = []
    size = 0
    for m in members[:32]:
        # Truncate whole entries from the end, never cut one in half.
        if size + len(m) + 1 > _TRACESTATE_MAX or any(ord(c) < 0x20 or ord(c) > 0x7E for c in m):
            break
        out.append(m)
        size += len(m) + 1
    return ",".join(out)


def clean_baggage(value: str | None) -> str:
    if not value:
        return ""
    out: list[str] = []
    size = 0
    for m in (x.strip() for x in value.split(",")):
        if "=" not in m or any(ord(c) < 0x20 or ord(c) > 0x7E for c in m):
            continue
        if size + len(m) + 1 > _BAGGAGE_MAX:
            break
        out.append(m)
        size += len(m) + 1
    return ",".join(out)


def from_env(env: Mapping[str, str] | None = None) -> SpanContext | None:
    env = os.environ if env is None else env
    return parse_traceparent(env.get("TRACEPARENT"), env.get("TRACESTATE"))


def child_env(
    ctx: SpanContext | None, env: Mapping[str, str] | None = None, baggage: str | None = None
) -> dict[str, str]:
    """A fresh environment for one child: a copy of ``env`` carrying ``ctx``.

    With ``ctx`` None the incoming carrier passes through unchanged (a non-recording
    wrapper must not break the trace of its caller).
    """
    out = dict(os.environ if env is None else env)
    if ctx is None:
        return out
    out["TRACEPARENT"] = ctx.traceparent()
    if ctx.tracestate:
        out["TRACESTATE"] = ctx.tracestate
    else:
        out.pop("TRACESTATE", None)
    bag = clean_baggage(baggage if baggage is not None else out.get("BAGGAGE"))
    if bag:
        out["BAGGAGE"] = bag
    else:
        out.pop("BAGGAGE", None)
    return out
