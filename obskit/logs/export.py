"""``--otlp``: the filtered records as OTLP logs over HTTP (protobuf or JSON).

Configured like every obskit export, by :mod:`obskit.otlp.config` with signal ``logs``:
OTEL_EXPORTER_OTLP_LOGS_ENDPOINT (used as is) or OTEL_EXPORTER_OTLP_ENDPOINT (+ ``/v1/logs``;
default ``http://localhost:4318``), ..._HEADERS, ..._TIMEOUT (the one timeout rule:
milliseconds, under 100 read as seconds with a warning), ..._PROTOCOL, ..._COMPRESSION,
each with its ``OTEL_EXPORTER_OTLP_LOGS_*`` variant first; OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES for the resource.  Requests go through the shared transport
(:mod:`obskit.otlp.transport`: deadline, retries inside it, gzip, no proxies).

Reading never waits for the collector: records go on a bounded queue (full: dropped and
counted); one thread batches and POSTs them within the timeout; after a failure the
exporter backs off and drops (counted) instead of retrying into a dead collector.  At the
end, flushing is bounded by one deadline.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from obskit.errors import UsageError
from obskit.logs.model import LEVELS, LogRecord
from obskit.otlp import config as otlp_config
from obskit.otlp.config import OtlpConfig, parse_kv_list

BATCH = 512
QUEUE_MAX = 20000
DEFAULT_TIMEOUT = 3.0
DEFAULT_ENDPOINT = "http://localhost:4318"
BACKOFF = 5.0


def config_from_env(endpoint: str | None = None, env: Mapping[str, str] | None = None) -> OtlpConfig:
    """The logs exporter settings (``endpoint``: the --otlp-endpoint base URL)."""
    env = os.environ if env is None else env
    has_env = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip() or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    cfg = otlp_config.load(
        env,
        "logs",
        default_timeout_s=DEFAULT_TIMEOUT,
        endpoint=endpoint or (None if has_env else DEFAULT_ENDPOINT),
        endpoint_flag="--otlp-endpoint",
    )
    problem = cfg.endpoint_problem()
    if problem:
        raise UsageError(problem, "e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318")
    if cfg.protocol not in ("http/protobuf", "http/json"):
        raise UsageError(f"--otlp sends OTLP over HTTP; protocol {cfg.protocol!r} is not supported",
                         "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and use the collector's HTTP port (4318)")
    return cfg


def resource_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    resource = parse_kv_list(env.get("OTEL_RESOURCE_ATTRIBUTES"), "resource attribute", [])
    if env.get("OTEL_SERVICE_NAME", "").strip():
        resource["service.name"] = env["OTEL_SERVICE_NAME"].strip()
    resource.setdefault("service.name", "obskit-logs")
    return resource


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

    def __init__(self, cfg: OtlpConfig, paths: dict[str, str], resource: dict[str, str] | None = None) -> None:
        # import the protobuf classes now, so a missing dependency is an error at start, not a silent drop
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2  # noqa: F401

        from obskit.output import warn

        for w in cfg.warnings:
            warn(w)
        self.cfg = cfg
        self.resource = resource_from_env() if resource is None else resource
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
        from obskit.otlp.transport import ExportFailed, send

        try:
            req = encode(batch, self.resource, self.paths)
            json_body = None
            if self.cfg.protocol == "http/json":
                from google.protobuf.json_format import MessageToJson

                json_body = MessageToJson(req).encode()
            timeout = self.cfg.timeout_s
            if self._stop_at is not None:
                timeout = max(0.05, min(timeout, self._stop_at - now))
            self.requests += 1
            send(self.cfg, req.SerializeToString(), time.monotonic() + timeout, json_body=json_body)
            self.sent += len(batch)
        except ExportFailed as e:
            self._failed(batch, str(e))
        except Exception as e:  # an encoder bug must not stop the reading
            self._failed(batch, f"{type(e).__name__}: {e}")

    def _failed(self, batch: list[LogRecord], error: str) -> None:
        self.failed += len(batch)
        self.last_error = error
        self._down_until = time.monotonic() + BACKOFF

    def close(self, deadline: float | None = None) -> dict[str, Any]:
        """Flush what is queued within ``deadline`` seconds; return the counters."""
        budget = self.cfg.timeout_s + 1.0 if deadline is None else deadline
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
        return {"endpoint": self.cfg.shown_endpoint, "protocol": self.cfg.protocol, "sent": self.sent, "failed": self.failed,
                "dropped": self.dropped, "requests": self.requests, "last_error": self.last_error}
