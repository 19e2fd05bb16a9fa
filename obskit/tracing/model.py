"""Plain span records: what obskit creates, spools, exports and shows.

Plain classes, not dataclasses: ``trace exec`` imports them before its child starts, and
``dataclasses`` (with ``inspect``, ``ast``, ``tokenize``) costs it several milliseconds on
every wrapped command.  The JSON documents are dataclasses, in :mod:`obskit.tracing.results`.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: importing typing costs trace exec a few ms)
if TYPE_CHECKING:
    from typing import Any

KINDS = ("internal", "server", "client", "producer", "consumer")
STATUSES = ("unset", "ok", "error")


class SpanEvent:
    """A named point in time inside a span."""

    __slots__ = ("attributes", "name", "time_ns")

    def __init__(self, name: str, time_ns: int, attributes: dict[str, Any] | None = None) -> None:
        self.name = name
        self.time_ns = time_ns
        self.attributes: dict[str, Any] = {} if attributes is None else attributes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpanEvent) and (self.name, self.time_ns, self.attributes) == (
            other.name,
            other.time_ns,
            other.attributes,
        )

    def __repr__(self) -> str:
        return f"SpanEvent({self.name!r}, {self.time_ns!r}, {self.attributes!r})"


class SpanRecord:
    """One span as obskit creates, spools, exports and shows it."""

    __slots__ = (
        "attributes",
        "end_ns",
        "events",
        "flags",
        "kind",
        "name",
        "parent_span_id",
        "remote_parent",
        "scope",
        "span_id",
        "start_ns",
        "status",
        "status_message",
        "trace_id",
        "tracestate",
    )

    def __init__(
        self,
        name: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str = "",
        kind: str = "internal",
        start_ns: int = 0,
        end_ns: int = 0,
        status: str = "unset",
        status_message: str = "",
        attributes: dict[str, Any] | None = None,
        events: list[SpanEvent] | None = None,
        tracestate: str = "",
        flags: int = 1,
        scope: str = "obskit",
        remote_parent: bool = False,
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.status = status
        self.status_message = status_message
        self.attributes: dict[str, Any] = {} if attributes is None else attributes
        self.events: list[SpanEvent] = [] if events is None else events
        self.tracestate = tracestate
        self.flags = flags
        self.scope = scope
        self.remote_parent = remote_parent

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpanRecord) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return f"SpanRecord({self.name!r}, trace_id={self.trace_id!r}, span_id={self.span_id!r}, status={self.status!r})"

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def add_event(self, name: str, attributes: dict[str, Any] | None = None, time_ns: int | None = None) -> None:
        self.events.append(SpanEvent(name, time_ns or time.time_ns(), dict(attributes or {})))
