"""Plain span records: what obskit creates, spools, exports and shows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: importing typing costs trace exec a few ms)
if TYPE_CHECKING:
    from typing import Any

KINDS = ("internal", "server", "client", "producer", "consumer")
STATUSES = ("unset", "ok", "error")


@dataclass
class SpanEvent:
    """A named point in time inside a span."""

    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SpanRecord:
    """One span as obskit creates, spools, exports and shows it."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str = ""
    kind: str = "internal"
    start_ns: int = 0
    end_ns: int = 0
    status: str = "unset"
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    tracestate: str = ""
    flags: int = 1
    scope: str = "obskit"
    remote_parent: bool = False

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def add_event(self, name: str, attributes: dict[str, Any] | None = None, time_ns: int | None = None) -> None:
        self.events.append(SpanEvent(name, time_ns or time.time_ns(), dict(attributes or {})))


@dataclass
class ExportResult:
    """What happened to a batch of spans (also the JSON of `trace exec/span/flush`)."""

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
