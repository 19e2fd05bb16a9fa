"""Sending one encoded OTLP request to a collector within a hard deadline.

OTLP/HTTP is one ``POST`` written on a socket here (an OTLP export needs the request and
the response's status line, nothing else: ``Connection: close``, no redirects, no body
kept), because ``http.client`` and ``urllib`` pull in the ``email`` package, ~10-30 ms that
``trace exec`` would add to every wrapped command.  OTLP/gRPC is a raw unary call.  Proxies from the environment are
not used: the collector is reached directly (it is usually a sidecar or a node agent, and a
corporate proxy in ``HTTPS_PROXY`` must not see the spans).  Userinfo in the endpoint
(``http://user:pass@host``) is sent as HTTP Basic authentication and never printed.
Retries stay inside the caller's deadline; a refused connection is not retried.
"""

from __future__ import annotations

import time
from urllib.parse import quote, unquote, urlsplit

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
    import socket

    shown = cfg.shown_endpoint
    url = urlsplit(cfg.endpoint)
    secure = url.scheme.lower() == "https"
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    headers = {"User-Agent": f"obskit-{cfg.signal}"}
    if url.username is not None or url.password is not None:
        import base64

        cred = f"{unquote(url.username or '')}:{unquote(url.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
    headers.update(cfg.headers)
    headers["Content-Type"] = "application/json" if cfg.protocol == "http/json" else "application/x-protobuf"
    if cfg.compression == "gzip":
        import gzip

        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    path = quote(url.path or "/", safe="/%:@!$&'()*+,;=-._~") + (f"?{quote(url.query, safe='=&%+')}" if url.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if url.port:
        host_header += f":{url.port}"
    head = f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    deadline = time.monotonic() + max(timeout, 0.01)
    try:
        sock = socket.create_connection((host, port), timeout=max(timeout, 0.01))
    except ConnectionRefusedError as e:
        # Nothing listens there: retrying inside a 1 s budget only delays the command.
        raise ExportFailed(f"cannot reach {shown}: {e.strerror or e}", retryable=False) from None
    except OSError as e:
        raise ExportFailed(f"cannot reach {shown}: {getattr(e, 'strerror', None) or e}") from None
    try:
        if secure:
            import ssl

            ctx = ssl.create_default_context()
            if cfg.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=host)
        sock.sendall(head.encode("latin-1", "replace") + body)
        status_line = _read_status_line(sock, deadline)
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ExportFailed(f"cannot reach {shown}: {reason}") from None
    finally:
        sock.close()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ExportFailed(f"not an HTTP answer from {shown}: {status_line[:60]!r}")
    status, reason_phrase = int(parts[1]), (parts[2] if len(parts) > 2 else "")
    if status >= 300:
        retry = status in _RETRYABLE_HTTP or status >= 500
        raise ExportFailed(f"HTTP {status} {reason_phrase} from {shown}".rstrip(), retryable=retry)


def _read_status_line(sock: object, deadline: float) -> str:
    """The first line of the response (bounded in size and time)."""
    import socket

    assert isinstance(sock, socket.socket)
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ValueError("timed out waiting for the answer")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            if not data:
                raise ValueError("the connection closed without an answer")
            break
        data += chunk
        if len(data) > RESPONSE_MAX:
            raise ValueError("answer too long")
    return data.split(b"\n", 1)[0].decode("latin-1").strip()


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
