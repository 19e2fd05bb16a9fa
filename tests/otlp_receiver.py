"""Real OTLP receivers on loopback for tests: OTLP/HTTP (protobuf) and OTLP/gRPC.

Usage::

    from otlp_receiver import OtlpHttpReceiver, OtlpGrpcReceiver

    with OtlpHttpReceiver() as rx:            # 127.0.0.1, ephemeral port
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint}
        ...                                   # run something that exports
        spans = rx.wait_for_spans(1, timeout=20)
        assert spans[0].name == "x" and spans[0].resource["service.name"] == "svc"

    with OtlpGrpcReceiver() as rx:            # rx.endpoint = "http://127.0.0.1:PORT"
        ...

Both decode real OTLP protobuf with ``opentelemetry-proto`` and flatten it into
:class:`ReceivedSpan` / :class:`ReceivedLog` (ids as lowercase hex, attributes as plain
dicts).  ``fail_with(status)`` makes the receiver answer every export with an error
(HTTP status, or a gRPC code name such as ``"UNAVAILABLE"``); ``delay`` (seconds)
makes it slow.  Everything is imported lazily so importing this module is cheap.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    start_ns: int
    end_ns: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    trace_state: str = ""
    flags: int = 0


@dataclass
class ReceivedLog:
    body: Any
    severity_number: int
    severity_text: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    trace_id: str
    span_id: str
    time_ns: int
    observed_time_ns: int
    scope: str
    event_name: str = ""


def any_value(v: Any) -> Any:
    """An OTLP AnyValue as a plain Python value."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


_HEX_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _decode(msg: Any, data: bytes, content_type: str) -> None:
    """Parse protobuf, or OTLP/JSON (whose ids are hex, where protobuf's JSON mapping wants base64)."""
    if "json" not in content_type:
        msg.ParseFromString(data)
        return
    import base64
    import json

    from google.protobuf import json_format

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode() if k in _HEX_ID_KEYS and isinstance(v, str) else fix(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    json_format.ParseDict(fix(json.loads(data)), msg, ignore_unknown_fields=True)


_R = TypeVar("_R", bound="_Store")


class _Store:
    """What both receivers keep, and their life cycle: ``with`` starts and stops ``start``/``stop``."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self.endpoint = ""
        self.spans: list[ReceivedSpan] = []
        self.log_records: list[ReceivedLog] = []
        self.requests = 0
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.fail_status: int | str | None = None
        self.delay = 0.0
        self._cond = threading.Condition()

    def __enter__(self: _R) -> _R:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def fail_with(self, status: int | str | None) -> None:
        """Answer every export with ``status`` (None: back to normal)."""
        self.fail_status = status

    def add_traces(self, req: Any) -> None:
        out: list[ReceivedSpan] = []
        for rs in req.resource_spans:
            res = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                out.extend(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        status_code=s.status.code,
                        status_message=s.status.message,
                        attributes=_attrs(s.attributes),
                        resource=res,
                        scope=ss.scope.name,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        events=[(e.name, _attrs(e.attributes)) for e in s.events],
                        trace_state=s.trace_state,
                        flags=s.flags,
                    )
                    for s in ss.spans
                )
        with self._cond:
            self.spans.extend(out)
            self._cond.notify_all()

    def add_logs(self, req: Any) -> None:
        out: list[ReceivedLog] = []
        for rl in req.resource_logs:
            res = _attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                out.extend(
                    ReceivedLog(
                        body=any_value(r.body),
                        severity_number=r.severity_number,
                        severity_text=r.severity_text,
                        attributes=_attrs(r.attributes),
                        resource=res,
                        trace_id=r.trace_id.hex(),
                        span_id=r.span_id.hex(),
                        time_ns=r.time_unix_nano,
                        observed_time_ns=r.observed_time_unix_nano,
                        scope=sl.scope.name,
                        event_name=getattr(r, "event_name", ""),
                    )
                    for r in sl.log_records
                )
        with self._cond:
            self.log_records.extend(out)
            self._cond.notify_all()

    def count(self) -> None:
        with self._cond:
            self.requests += 1
            self._cond.notify_all()

    def _wait(self, what: str, n: int, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(getattr(self, what)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} {what}, got {len(getattr(self, what))} in {timeout}s")
                self._cond.wait(left)
            return list(getattr(self, what))

    def wait_for_spans(self, n: int = 1, timeout: float = 20.0) -> list[ReceivedSpan]:
        return self._wait("spans", n, timeout)

    def wait_for_logs(self, n: int = 1, timeout: float = 20.0) -> list[ReceivedLog]:
        return self._wait("log_records", n, timeout)

    def span(self, name: str) -> ReceivedSpan:
        """The one received span called ``name``."""
        found = [s for s in self.spans if s.name == name]
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in self.spans]}"
        return found[0]


class OtlpHttpReceiver(_Store):
    """OTLP/HTTP protobuf receiver: POST /v1/traces, /v1/logs, /v1/metrics on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _reply(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                if store.delay:
                    time.sleep(store.delay)
                store.paths.append(self.path)
                store.headers.append({k.lower(): v for k, v in self.headers.items()})
                if store.fail_status is not None:
                    store.count()
                    self._reply(int(store.fail_status))
                    return
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    data = gzip.decompress(data)
                path = self.path.split("?")[0]
                try:
                    if path.endswith("/v1/traces"):
                        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts

                        req = ts.ExportTraceServiceRequest()
                        _decode(req, data, self.headers.get("Content-Type", ""))
                        store.add_traces(req)
                        body = ts.ExportTraceServiceResponse().SerializeToString()
                    elif path.endswith("/v1/logs"):
                        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as ls

                        lreq = ls.ExportLogsServiceRequest()
                        _decode(lreq, data, self.headers.get("Content-Type", ""))
                        store.add_logs(lreq)
                        body = ls.ExportLogsServiceResponse().SerializeToString()
                    elif path.endswith("/v1/metrics"):
                        body = b""
                    else:
                        store.count()
                        self._reply(404)
                        return
                except Exception:  # undecodable body: what a collector answers
                    store.count()
                    self._reply(400)
                    return
                store.count()
                self._reply(200, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class OtlpGrpcReceiver(_Store):
    """OTLP/gRPC receiver (TraceService/Export, LogsService/Export) on 127.0.0.1."""

    def start(self) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as ls
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as lsg
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tsg

        store = self

        def gate(context: Any) -> bool:
            if store.delay:
                time.sleep(store.delay)
            store.headers.append(dict(context.invocation_metadata()))
            store.count()
            if store.fail_status is not None:
                code = store.fail_status
                status = getattr(grpc.StatusCode, str(code).upper(), grpc.StatusCode.UNAVAILABLE)
                context.abort(status, "receiver told to fail")
                return False
            return True

        class Traces(tsg.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                if gate(context):
                    store.add_traces(request)
                return ts.ExportTraceServiceResponse()

        class Logs(lsg.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                if gate(context):
                    store.add_logs(request)
                return ls.ExportLogsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        tsg.add_TraceServiceServicer_to_server(Traces(), self._server)
        lsg.add_LogsServiceServicer_to_server(Logs(), self._server)
        port = self._server.add_insecure_port(f"127.0.0.1:{self._port}")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait(5)
            self._server = None
