"""The JSON documents of `obskit trace` commands (versioned dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExportResult:
    """What happened to a batch of spans (also the JSON of `trace span/event/flush`)."""

    SCHEMA = "obskit.trace.export/1"

    destination: str
    spans: int = 0
    sent: int = 0
    spooled: int = 0
    dropped: int = 0
    not_sampled: int = 0
    error: str = ""
    seconds: float = 0.0
    trace_id: str = ""
    span_id: str = ""
    traceparent: str = ""


@dataclass
class OpenedSpan:
    """What `trace span start --json` prints: the span a script opened."""

    SCHEMA = "obskit.trace.span/1"

    traceparent: str
    trace_id: str
    span_id: str
    sampled: bool
    name: str
