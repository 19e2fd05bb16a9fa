"""Sending one encoded OTLP request to a collector within a hard deadline.

OTLP/HTTP goes through ``http.client`` directly (a few milliseconds to import, where
urllib costs tens), OTLP/gRPC through a raw unary call.  Proxies from the environment are
not used: the collector is reached directly (it is usually a sidecar or a node agent, and a
corporate proxy in ``HTTPS_PROXY`` must not see the spans).  Userinfo in the endpoint
(``http://user:pass@host``) is sent as HTTP Basic authentication and never printed.
Retries stay inside the caller's deadline; a refused connection is not retried.
"""

from __future__ import annotations

import base64
import gzip
import time
from urllib.parse import unquote, urlsplit

from obskit.otlp.config import OtlpConfig

GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RETRYABLE_HTTP = {408, 429, 502, 503, 504}
RESPONSE_MAX = 65536


class ExportFailed(Exception):
    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def send(cfg: OtlpConfig, payload: bytes, deadline: float, *, json_body: bytes | None = None) -> None:
    """Deliver ``payload`` (the protobuf Export*ServiceRequest bytes; ``json_body`` is the same
    request as OTLP/JSON, needed for ``http/json``) before ``deadline`` (monotonic)."""
    problem = cfg.endpoint_problem() or ("" if cfg.endpoint else "no OTLP endpoint configured")
    if problem:
        raise ExportFailed(problem, retryable=False)
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0.01:
            raise ExportFailed(f"no time left to export (budget {cfg.timeout_s:g}s)")
        try:
            if cfg.protocol == "grpc":
                _send_grpc(cfg, payload, left)
            else:
                _send_http(cfg, payload if cfg.protocol != "http/json" else (json_body or b""), left)
            return
        except ExportFailed as e:
            attempt += 1
            pause = min(0.1 * attempt, 0.5)
            if not e.retryable or deadline - time.monotonic() < pause + 0.05:
                raise
            time.sleep(pause)


def _send_http(cfg: OtlpConfig, body: bytes, timeout: float) -> None:
    import http.client

    shown = cfg.shown_endpoint
    url = urlsplit(cfg.endpoint)
    headers = {"User-Agent": f"obskit-{cfg.signal}"}
    if url.username is not None or url.password is not None:
        cred = f"{unquote(url.username or '')}:{unquote(url.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
    headers.update(cfg.headers)
    headers["Content-Type"] = "application/json" if cfg.protocol == "http/json" else "application/x-protobuf"
    if cfg.compression == "gzip":
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    host = url.hostname or ""
    conn: http.client.HTTPConnection
    if url.scheme.lower() == "https":
        import ssl

        ctx = ssl._create_unverified_context() if cfg.insecure else ssl.create_default_context()
        conn = http.client.HTTPSConnection(host, url.port, timeout=max(timeout, 0.01), context=ctx)
    else:
        conn = http.client.HTTPConnection(host, url.port, timeout=max(timeout, 0.01))
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read(RESPONSE_MAX)
        status, reason = resp.status, resp.reason
    except ConnectionRefusedError as e:
        # Nothing listens there: retrying inside a 1 s budget only delays the command.
        raise ExportFailed(f"cannot reach {shown}: {e.strerror or e}", retryable=False) from None
    except (OSError, http.client.HTTPException) as e:
        reason_text = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ExportFailed(f"cannot reach {shown}: {reason_text}") from None
    finally:
        conn.close()
    if status >= 300:
        retry = status in _RETRYABLE_HTTP or status >= 500
        raise ExportFailed(f"HTTP {status} {reason} from {shown}", retryable=retry)


def _send_grpc(cfg: OtlpConfig, payload: bytes, timeout: float) -> None:
    import grpc

    url = urlsplit(cfg.endpoint)
    target = f"{url.hostname}:{url.port}" if url.port else str(url.hostname)
    secure = url.scheme.lower() == "https" and not cfg.insecure
    # One channel per send: a cached channel in reconnect back-off would fail a later flush.
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
    call = channel.unary_unary(GRPC_METHODS[cfg.signal], request_serializer=None, response_deserializer=None)
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
