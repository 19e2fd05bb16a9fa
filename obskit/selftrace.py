"""Spans of obskit's own work (profile record, stacks, quota, logs, mem).

Cheap by design: when tracing is not configured, :func:`span` is a no-op context
manager and nothing from OpenTelemetry is imported.  When it is configured
(``OTEL_EXPORTER_OTLP_ENDPOINT``/``..._TRACES_ENDPOINT`` or ``OBSKIT_TRACE=1``), the
real implementation in :mod:`obskit.otel` records the span and exports it, bounded
in time, when the command ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class NullSpan:
    """What :func:`span` yields when tracing is off."""

    trace_id: str | None = None
    span_id: str | None = None
    traceparent: str | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        pass

    def record_error(self, exc: BaseException) -> None:
        pass


def enabled() -> bool:
    env = os.environ
    if env.get("OBSKIT_TRACE", "").lower() in ("0", "false", "off"):
        return False
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        env.get("OBSKIT_TRACE")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a piece of obskit's work; yields an object with ``trace_id``/``span_id``.

    Nested calls make child spans; a TRACEPARENT in the environment is the parent of the
    outermost one.  An exception marks the span as an error and propagates unchanged.
    """
    if not enabled():
        yield NullSpan()
        return
    try:
        from obskit.tracing.selfspan import selfspan
    except ImportError:  # pragma: no cover - tracing support not installed
        yield NullSpan()
        return
    with selfspan(name, attributes) as s:
        yield s
