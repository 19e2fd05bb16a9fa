"""Span records <-> OTLP: protobuf ``ExportTraceServiceRequest`` bytes and OTLP/JSON.

Writing is hand-encoded (:func:`to_bytes`, :func:`to_json_doc`, stdlib only: the dozen
fields of a span, no import of protobuf, which costs ~30 ms that ``trace exec`` would add
to every wrapped command); a test checks both against ``opentelemetry-proto``, message by
message.  Reading (spool flush as JSON, other producers' files) uses ``opentelemetry-proto``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from obskit.tracing.model import KINDS, STATUSES, SpanEvent, SpanRecord

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: importing typing costs trace exec a few ms)
if TYPE_CHECKING:
    from typing import Any

_STATUS_CODE = {"unset": 0, "ok": 1, "error": 2}
_KIND_CODE = {k: i + 1 for i, k in enumerate(KINDS)}  # OTLP: 1 internal .. 5 consumer


def _any_value(pb: Any, value: Any) -> None:
    if isinstance(value, bool):
        pb.bool_value = value
    elif isinstance(value, int) and -(2**63) <= value < 2**63:
        pb.int_value = value
    elif isinstance(value, float):
        pb.double_value = value
    elif isinstance(value, (list, tuple)):
        arr = pb.array_value
        for v in value:
            _any_value(arr.values.add(), v)
    elif isinstance(value, bytes):
        pb.bytes_value = value
    else:
        pb.string_value = str(value)


def _kvs(target: Any, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        if v is None:
            continue
        kv = target.add()
        kv.key = str(k)
        _any_value(kv.value, v)


def to_request(spans: Iterable[SpanRecord], resource: dict[str, Any]) -> Any:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _kvs(rs.resource.attributes, resource)
    scopes: dict[str, Any] = {}
    for s in spans:
        ss = scopes.get(s.scope)
        if ss is None:
            ss = scopes[s.scope] = rs.scope_spans.add()
            ss.scope.name = s.scope
            from obskit import __version__

            ss.scope.version = __version__
        p = ss.spans.add()
        p.trace_id = bytes.fromhex(s.trace_id)
        p.span_id = bytes.fromhex(s.span_id)
        if s.parent_span_id:
            p.parent_span_id = bytes.fromhex(s.parent_span_id)
        if s.tracestate:
            p.trace_state = s.tracestate
        # flags: W3C trace flags plus "parent is remote known" bits (0x100, 0x200 when remote).
        p.flags = (s.flags & 0xFF) | 0x100 | (0x200 if s.remote_parent else 0)
        p.name = s.name
        p.kind = _KIND_CODE.get(s.kind, 1)  # type: ignore[assignment]
        p.start_time_unix_nano = s.start_ns
        p.end_time_unix_nano = max(s.end_ns, s.start_ns)
        _kvs(p.attributes, s.attributes)
        for e in s.events:
            pe = p.events.add()
            pe.name = e.name
            pe.time_unix_nano = e.time_ns
            _kvs(pe.attributes, e.attributes)
        p.status.code = _STATUS_CODE.get(s.status, 0)  # type: ignore[assignment]
        if s.status == "error" and s.status_message:
            p.status.message = s.status_message
    return req


# --- hand-written protobuf wire format (proto3, opentelemetry-proto field numbers) -------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 negatives: two's complement, 10 bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(field: int, data: bytes) -> bytes:
    """A length-delimited field (strings, bytes, sub-messages)."""
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "replace")  # lone surrogates (undecodable argv) become U+FFFD


def _pb_any(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    if isinstance(value, (list, tuple)):
        return _ld(5, b"".join(_ld(1, _pb_any(v)) for v in value))
    if isinstance(value, bytes):
        return _ld(7, value)
    return _ld(1, _utf8(str(value)))


def _pb_attrs(field: int, attrs: dict[str, Any]) -> bytes:
    return b"".join(
        _ld(field, _ld(1, _utf8(str(k))) + _ld(2, _pb_any(v))) for k, v in attrs.items() if v is not None
    )


def _pb_span(s: SpanRecord) -> bytes:
    out = [_ld(1, bytes.fromhex(s.trace_id)), _ld(2, bytes.fromhex(s.span_id))]
    if s.tracestate:
        out.append(_ld(3, _utf8(s.tracestate)))
    if s.parent_span_id:
        out.append(_ld(4, bytes.fromhex(s.parent_span_id)))
    if s.name:
        out.append(_ld(5, _utf8(s.name)))
    out.append(b"\x30" + _varint(_KIND_CODE.get(s.kind, 1)))
    out.append(b"\x39" + struct.pack("<Q", s.start_ns))
    out.append(b"\x41" + struct.pack("<Q", max(s.end_ns, s.start_ns)))
    out.append(_pb_attrs(9, s.attributes))
    for e in s.events:
        body = b"\x09" + struct.pack("<Q", e.time_ns) + (_ld(2, _utf8(e.name)) if e.name else b"")
        out.append(_ld(11, body + _pb_attrs(3, e.attributes)))
    code = _STATUS_CODE.get(s.status, 0)
    status = (_ld(2, _utf8(s.status_message)) if s.status == "error" and s.status_message else b"") + (
        b"\x18" + _varint(code) if code else b""
    )
    out.append(_ld(15, status))
    out.append(b"\x85\x01" + struct.pack("<I", _flags(s)))  # field 16, fixed32
    return b"".join(out)


def _flags(s: SpanRecord) -> int:
    # W3C trace flags plus "parent is remote known" bits (0x100, 0x200 when remote).
    return (s.flags & 0xFF) | 0x100 | (0x200 if s.remote_parent else 0)


def _by_scope(spans: Iterable[SpanRecord]) -> dict[str, list[SpanRecord]]:
    scopes: dict[str, list[SpanRecord]] = {}
    for s in spans:
        scopes.setdefault(s.scope, []).append(s)
    return scopes


def to_bytes(spans: Iterable[SpanRecord], resource: dict[str, Any]) -> bytes:
    """ExportTraceServiceRequest bytes: one resource, one scope per scope name."""
    from obskit import __version__

    scopes = b"".join(
        _ld(2, _ld(1, _ld(1, _utf8(name)) + _ld(2, _utf8(__version__))) + b"".join(_ld(2, _pb_span(s)) for s in group))
        for name, group in _by_scope(spans).items()
    )
    return _ld(1, _ld(1, _pb_attrs(1, resource)) + scopes)


def _js_any(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return {"intValue": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"doubleValue": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")}
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_js_any(v) for v in value]} if value else {}}
    if isinstance(value, bytes):
        import base64

        return {"bytesValue": base64.b64encode(value).decode()}
    return {"stringValue": _utf8(str(value)).decode()}


def _js_attrs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**({"key": _utf8(str(k)).decode()} if str(k) else {}), "value": _js_any(v)}
        for k, v in attrs.items()
        if v is not None
    ]


def _js_span(s: SpanRecord) -> dict[str, Any]:
    d: dict[str, Any] = {"traceId": s.trace_id, "spanId": s.span_id}
    if s.tracestate:
        d["traceState"] = s.tracestate
    if s.parent_span_id:
        d["parentSpanId"] = s.parent_span_id
    if s.name:
        d["name"] = _utf8(s.name).decode()
    d["kind"] = _KIND_CODE.get(s.kind, 1)
    for key, ns in (("startTimeUnixNano", s.start_ns), ("endTimeUnixNano", max(s.end_ns, s.start_ns))):
        if ns:
            d[key] = str(ns)
    if _js_attrs(s.attributes):
        d["attributes"] = _js_attrs(s.attributes)
    if s.events:
        events = []
        for e in s.events:
            ev: dict[str, Any] = {"timeUnixNano": str(e.time_ns)}
            if e.name:
                ev["name"] = _utf8(e.name).decode()
            if _js_attrs(e.attributes):
                ev["attributes"] = _js_attrs(e.attributes)
            events.append(ev)
        d["events"] = events
    status: dict[str, Any] = {}
    if s.status == "error" and s.status_message:
        status["message"] = _utf8(s.status_message).decode()
    if _STATUS_CODE.get(s.status, 0):
        status["code"] = _STATUS_CODE[s.status]
    d["status"] = status
    d["flags"] = _flags(s)
    return d


def to_json_doc(spans: Iterable[SpanRecord], resource: dict[str, Any]) -> dict[str, Any]:
    """The same request as OTLP/JSON (ids as hex), as :func:`request_to_json` would make it."""
    from obskit import __version__

    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _js_attrs(resource)},
                "scopeSpans": [
                    {"scope": {"name": name, "version": __version__}, "spans": [_js_span(s) for s in group]}
                    for name, group in _by_scope(spans).items()
                ],
            }
        ]
    }


def to_json_line(spans: Iterable[SpanRecord], resource: dict[str, Any]) -> str:
    import json  # here, not at the top: `trace exec` to a collector never needs it
    return json.dumps(to_json_doc(spans, resource), separators=(",", ":"))


def from_bytes(data: bytes) -> Any:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    req.ParseFromString(data)
    return req


_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def request_to_json(req: Any) -> dict[str, Any]:
    """OTLP/JSON (ids as hex, enums as integers), as the collector's file exporter writes."""
    import base64

    from google.protobuf.json_format import MessageToDict

    d: dict[str, Any] = MessageToDict(req, use_integers_for_enums=True)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in _ID_KEYS and isinstance(v, str):
                    node[k] = base64.b64decode(v).hex()
                else:
                    fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(d)
    return d


def bytes_to_json_line(data: bytes) -> str:
    import json
    return json.dumps(request_to_json(from_bytes(data)), separators=(",", ":"))


def _value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {x["key"]: _value(x.get("value", {})) for x in v["kvlistValue"].get("values", [])}
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {x.get("key", ""): _value(x.get("value", {})) for x in items or []}


def _hexid(v: Any, size: int) -> str:
    s = str(v or "")
    if len(s) == size * 2:
        return s.lower()
    if s:  # base64 (protobuf JSON mapping) from other producers
        import base64

        try:
            return base64.b64decode(s).hex()
        except ValueError:
            return ""
    return ""


def spans_from_json(doc: dict[str, Any]) -> list[tuple[dict[str, Any], SpanRecord]]:
    """(resource attributes, span) pairs from one OTLP/JSON ExportTraceServiceRequest."""
    out: list[tuple[dict[str, Any], SpanRecord]] = []
    for rs in doc.get("resourceSpans", []):
        res = _attrs(rs.get("resource", {}).get("attributes"))
        for ss in rs.get("scopeSpans", []):
            scope = ss.get("scope", {}).get("name", "")
            for p in ss.get("spans", []):
                kind = int(p.get("kind", 1) or 1)
                code = int(p.get("status", {}).get("code", 0) or 0)
                out.append(
                    (
                        res,
                        SpanRecord(
                            name=str(p.get("name", "")),
                            trace_id=_hexid(p.get("traceId"), 16),
                            span_id=_hexid(p.get("spanId"), 8),
                            parent_span_id=_hexid(p.get("parentSpanId"), 8),
                            kind=KINDS[kind - 1] if 1 <= kind <= len(KINDS) else "internal",
                            start_ns=int(p.get("startTimeUnixNano", 0)),
                            end_ns=int(p.get("endTimeUnixNano", 0)),
                            status=STATUSES[code] if 0 <= code < 3 else "unset",
                            status_message=str(p.get("status", {}).get("message", "")),
                            attributes=_attrs(p.get("attributes")),
                            events=[
                                SpanEvent(
                                    str(e.get("name", "")), int(e.get("timeUnixNano", 0)), _attrs(e.get("attributes"))
                                )
                                for e in p.get("events", [])
                            ],
                            tracestate=str(p.get("traceState", "")),
                            flags=int(p.get("flags", 1)) & 0xFF,
                            scope=scope,
                        ),
                    )
                )
    return out
