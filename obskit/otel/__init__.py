"""OpenTelemetry support: the SDK is imported only here, never at CLI start-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from obskit.selftrace import NullSpan


@contextmanager
def selfspan(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    """Record a span of obskit's own work (filled in by the trace feature)."""
    yield NullSpan()
