"""Sending one encoded batch to a collector within a hard deadline.

obskit sends the bytes itself (urllib for OTLP/HTTP, a raw unary call for OTLP/gRPC)
rather than through the SDK exporters, whose retries and shutdown are not bounded by a
deadline the caller picks.  Retries stay inside the caller's budget.
"""

from __future__ import annotations

import gzip
import time

from obskit.otel.config import TraceConfig

GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_RETRYABLE_HTTP = {408, 429, 502, 503, 504}


class ExportFailed(Exception):
    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def send(cfg: TraceConfig, payload: bytes, deadline: float) -> None:
    """Deliver ``payload`` (ExportTraceServiceRequest bytes) before ``deadline`` (monotonic)."""
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0.01:
            raise ExportFailed(f"no time left to export (budget {cfg.timeout_s:g}s)")
        try:
            if cfg.protocol == "grpc":
                _send_grpc(cfg, payload, left)
            else:
                _send_http(cfg, payload, left)
            return
        except ExportFailed as e:
            attempt += 1
            pause = min(0.1 * attempt, 0.5)
            if not e.retryable or deadline - time.monotonic() < pause + 0.05:
                raise
            time.sleep(pause)


def _send_http(cfg: TraceConfig, payload: bytes, timeout: float) -> None:
    import urllib.error
    import urllib.request

    headers = {"User-Agent": "obskit-trace", **cfg.headers}
    if cfg.protocol == "http/json":
        from obskit.otel.encode import bytes_to_json_line

        body = bytes_to_json_line(payload).encode()
        headers["Content-Type"] = "application/json"
    else:
        body = payload
        headers["Content-Type"] = "application/x-protobuf"
    if cfg.compression == "gzip":
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    req = urllib.request.Request(cfg.endpoint, data=body, headers=headers, method="POST")
    # A local collector must not be reached through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=max(timeout, 0.01)) as resp:
            resp.read(65536)
    except urllib.error.HTTPError as e:
        retry = e.code in _RETRYABLE_HTTP or e.code >= 500
        raise ExportFailed(f"HTTP {e.code} {e.reason} from {cfg.endpoint}", retryable=retry) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        # Nothing listens there: retrying inside a 1 s budget only delays the command.
        refused = isinstance(reason, ConnectionRefusedError)
        raise ExportFailed(f"cannot reach {cfg.endpoint}: {reason}", retryable=not refused) from None


def _send_grpc(cfg: TraceConfig, payload: bytes, timeout: float) -> None:
    import grpc

    target = cfg.endpoint.split("://", 1)[-1].rstrip("/")
    secure = cfg.endpoint.startswith("https://") and not cfg.insecure
    # One channel per send: a cached channel in reconnect back-off would fail a later flush.
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
    call = channel.unary_unary(GRPC_METHOD, request_serializer=None, response_deserializer=None)
    metadata = [(k.lower(), v) for k, v in cfg.headers.items()]
    compression = grpc.Compression.Gzip if cfg.compression == "gzip" else None
    try:
        call(payload, timeout=timeout, metadata=metadata, compression=compression)
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        name = getattr(code, "name", "UNKNOWN")
        detail = e.details() if hasattr(e, "details") else ""
        refused = "connection refused" in str(detail).lower()
        retry = not refused and name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")
        raise ExportFailed(f"gRPC {name} from {target}: {detail}".rstrip(": "), retryable=retry) from None
    finally:
        channel.close()
