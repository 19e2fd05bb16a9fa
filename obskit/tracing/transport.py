"""Sending one encoded span batch: the shared OTLP transport (:mod:`obskit.otlp.transport`)."""

from __future__ import annotations

from obskit.otlp.transport import ExportFailed
from obskit.tracing.config import TraceConfig

__all__ = ["ExportFailed", "send"]


def send(cfg: TraceConfig, payload: bytes, deadline: float) -> None:
    """Deliver ``payload`` (ExportTraceServiceRequest bytes) before ``deadline`` (monotonic)."""
    from obskit.otlp import transport

    json_body = None
    if cfg.protocol == "http/json":
        from obskit.tracing.encode import bytes_to_json_line

        json_body = bytes_to_json_line(payload).encode()
    transport.send(cfg, payload, deadline, json_body=json_body)
