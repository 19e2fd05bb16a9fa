"""What the `obskit trace` tests share: a private trace state directory and a known parent span."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PARENT_TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SID = "00f067aa0ba902b7"

Cli = Callable[..., Any]

# Variables of the machine running the tests that would change what the trace commands do.
OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "TRACESTATE",
    "BAGGAGE",
    "OBSKIT_TRACE",
)


def trace_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OBSKIT_TRACE_DIR in tmp_path and none of OTEL_VARS; use as `state = pytest.fixture(trace_state, name="state")`."""
    d = tmp_path / "trace-state"
    monkeypatch.setenv("OBSKIT_TRACE_DIR", str(d))
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)
    return d
