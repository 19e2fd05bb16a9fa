"""``--otlp``: the filtered records as OTLP logs over HTTP (protobuf or JSON).

Configured by the standard variables: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT (used as is) or
OTEL_EXPORTER_OTLP_ENDPOINT (+ ``/v1/logs``), ..._HEADERS, ..._TIMEOUT, ..._PROTOCOL,
OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.

Reading never waits for the collector: records go on a bounded queue (full: dropped and
counted); one thread batches and POSTs them with a short timeout; after a failure the
exporter backs off and drops (counted) instead of retrying into a dead collector.  At the
end, flushing is bounded by one deadline.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from obskit.errors import UsageError
from obskit.logs.model import LEVELS, LogRecord

BATCH = 512
QUEUE_MAX = 20000
DEFAULT_TIMEOUT = 3.0
BACKOFF = 5.0


@dataclass
class OtlpConfig:
    endpoint: str
    headers: dict[str, str]
    timeout: float
    protocol: str
    resource: dict[str, str]


def _env(name: str) -> str | None:
    v = os.environ.get(f"OTEL_EXPORTER_OTLP_LOGS_{name}") or os.environ.get(f"OTEL_EXPORTER_OTLP_{name}")
    return v.strip() if v else None


def parse_headers(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[urllib.parse.unquote(k.strip())] = urllib.parse.unquote(v.strip())
    return out


def parse_timeout(text: str | None) -> float:
    """The spec says milliseconds; the Python SDK reads seconds.  Small values are taken as seconds."""
    if not text:
        return DEFAULT_TIMEOUT
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"OTEL_EXPORTER_OTLP_TIMEOUT={text!r} is not a number", "give milliseconds, e.g. 3000") from None
    return v if v < 100 else v / 1000


def config_from_env(endpoint: str | None = None) -> OtlpConfig:
    logs_ep = os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    if endpoint:
        ep = endpoint if endpoint.rstrip("/").endswith("/v1/logs") else endpoint.rstrip("/") + "/v1/logs"
    elif logs_ep:
        ep = logs_ep.strip()
    else:
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318").strip()
        ep = base.rstrip("/") + "/v1/logs"
    if not ep.startswith(("http://", "https://")):
        raise UsageError(f"OTLP logs endpoint {ep!r} is not an http(s) URL", "e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318")
    protocol = (_env("PROTOCOL") or "http/protobuf").lower()
    if protocol not in ("http/protobuf", "http/json"):
        raise UsageError(f"--otlp sends OTLP over HTTP; protocol {protocol!r} is not supported",
                         "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and use the collector's HTTP port (4318)")
    resource = parse_headers(os.environ.get("OTEL_RESOURCE_ATTRIBUTES"))
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource["service.name"] = os.environ["OTEL_SERVICE_NAME"]
    resource.setdefault("service.name", "obskit-logs")
    return OtlpConfig(ep, parse_headers(_env("HEADERS")), parse_timeout(_env("TIMEOUT")), protocol, resource)


def _any_value(pb: Any, v: Any, depth: int = 0) -> None:
    if isinstance(v, bool):
        pb.bool_value = v
    elif isinstance(v, int) and -(1 << 63) <= v < (1 << 63):
        pb.int_value = v
    elif isinstance(v, float):
        pb.double_value = v
    elif isinstance(v, str):
        pb.string_value = v
    elif isinstance(v, dict) and depth < 8:
        for k, item in v.items():
            kv = pb.kvlist_value.values.add()
            kv.key = str(k)
            _any_value(kv.value, item, depth + 1)
    elif isinstance(v, list) and depth < 8:
        for item in v:
            _any_value(pb.array_value.values.add(), item, depth + 1)
    elif v is None:
        pass
    else:
        pb.string_value = str(v)


def _hex_bytes(h: str | None, n: int) -> bytes:
    if not h or len(h) != 2 * n:
        return b""
    try:
        b = bytes.fromhex(h)
    except ValueError:
        return b""
    return b if any(b) else b""


def encode(records: list[LogRecord], resource: dict[str, str], paths: dict[str, str]) -> Any:
    """An ExportLogsServiceRequest, one ResourceLogs per source (the file is a resource attribute)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    by_source: dict[str, list[LogRecord]] = {}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    now = time.time_ns()
    from obskit import __version__

    for source, recs in by_source.items():
        rl = req.resource_logs.add()
        attrs = dict(resource)
        path = paths.get(source)
        attrs["log.source"] = source
        if path:
            attrs["log.file.path"] = path
            attrs["log.file.name"] = os.path.basename(path)
        for k, v in attrs.items():
            kv = rl.resource.attributes.add()
            kv.key = k
            kv.value.string_value = v
        sl = rl.scope_logs.add()
        sl.scope.name = "obskit.logs"
        sl.scope.version = __version__
        for r in recs:
            lr = sl.log_records.add()
            if r.time is not None:
                lr.time_unix_nano = int(r.time * 1e9)
            lr.observed_time_unix_nano = now
            if r.level:
                lr.severity_number = LEVELS[r.level]  # type: ignore[assignment]
                lr.severity_text = r.level.upper()
            lr.body.string_value = r.message if r.format != "plain" else r.raw
            if r.logger:
                kv = lr.attributes.add()
                kv.key = "logger.name"
                kv.value.string_value = r.logger
            for k, v in r.attrs.items():
                kv = lr.attributes.add()
                kv.key = str(k)
                _any_value(kv.value, v)
            tid = _hex_bytes(r.trace_id, 16)
            if tid:
                lr.trace_id = tid
                sid = _hex_bytes(r.span_id, 8)
                if sid:
                    lr.span_id = sid
            elif r.trace_id:
                kv = lr.attributes.add()
                kv.key = "trace_id"
                kv.value.string_value = r.trace_id
    return req


class OtlpExporter:
    """Bounded, non-blocking OTLP/HTTP log exporter (one background thread)."""

    def __init__(self, cfg: OtlpConfig, paths: dict[str, str]) -> None:
        # import the protobuf classes now, so a missing dependency is an error at start, not a silent drop
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2  # noqa: F401

        self.cfg = cfg
        self.paths = paths
        self.q: queue.Queue[LogRecord | None] = queue.Queue(maxsize=QUEUE_MAX)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.requests = 0
        self.last_error: str | None = None
        self._down_until = 0.0
        self._stop_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="obskit-otlp", daemon=True)
        self._thread.start()

    def submit(self, rec: LogRecord) -> None:
        try:
            self.q.put_nowait(rec)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        batch: list[LogRecord] = []
        done = False
        while not done:
            try:
                item = self.q.get(timeout=0.5)
                if item is None:
                    done = True
                else:
                    batch.append(item)
                    while len(batch) < BATCH:
                        nxt = self.q.get_nowait()
                        if nxt is None:
                            done = True
                            break
                        batch.append(nxt)
            except queue.Empty:
                pass
            if batch and (done or len(batch) >= BATCH or self.q.empty()):
                self._send(batch)
                batch = []

    def _send(self, batch: list[LogRecord]) -> None:
        now = time.monotonic()
        if now < self._down_until or (self._stop_at is not None and now > self._stop_at):
            self.failed += len(batch)
            return
        try:
            req = encode(batch, self.cfg.resource, self.paths)
            if self.cfg.protocol == "http/json":
                from google.protobuf.json_format import MessageToJson

                body = MessageToJson(req).encode()
                ctype = "application/json"
            else:
                body = req.SerializeToString()
                ctype = "application/x-protobuf"
            timeout = self.cfg.timeout
            if self._stop_at is not None:
                timeout = max(0.05, min(timeout, self._stop_at - now))
            http_req = urllib.request.Request(self.cfg.endpoint, data=body, method="POST",
                                              headers={"Content-Type": ctype, **self.cfg.headers})
            self.requests += 1
            with urllib.request.urlopen(http_req, timeout=timeout) as resp:
                resp.read()
            self.sent += len(batch)
        except Exception as e:
            self.failed += len(batch)
            self.last_error = f"{type(e).__name__}: {e}"
            self._down_until = time.monotonic() + BACKOFF

    def close(self, deadline: float | None = None) -> dict[str, Any]:
        """Flush what is queued within ``deadline`` seconds; return the counters."""
        budget = self.cfg.timeout + 1.0 if deadline is None else deadline
        self._stop_at = time.monotonic() + budget
        try:
            self.q.put(None, timeout=budget)
        except queue.Full:
            pass
        self._thread.join(budget + 0.5)
        # whatever is still queued will never be sent
        left = self.q.qsize()
        self.failed += left
        return self.stats()

    def stats(self) -> dict[str, Any]:
        return {"endpoint": self.cfg.endpoint, "protocol": self.cfg.protocol, "sent": self.sent, "failed": self.failed,
                "dropped": self.dropped, "requests": self.requests, "last_error": self.last_error}
