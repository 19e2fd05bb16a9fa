"""A Pyroscope ingest endpoint on loopback that follows Pyroscope's documented server API.

``POST /ingest?name=APP.cpu{k=v,...}&from=UNIX&until=UNIX&format=pprof&sampleRate=HZ&spyName=NAME``
with ``format=pprof`` sent as multipart form data whose ``profile`` part holds the (gzipped)
pprof.  Anything else is refused with 400, as the real server would, so a client that sends a
raw body or a misnamed part fails the test.  ``stop()`` closes the port (the server is down:
connections are refused); ``start()`` opens it again on the same port.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import re
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_NAME = re.compile(r"^(?P<app>[^{}]+?)\.(?P<type>cpu)(?:\{(?P<labels>[^{}]*)\})?$")


@dataclass
class Ingest:
    app: str
    labels: dict[str, str]
    start: int
    until: int
    sample_rate: int
    spy_name: str
    pprof: bytes  # uncompressed profile.proto

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.app, self.start, self.until, ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())))


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: list[Ingest] = []
        self.refused: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                code, why = receiver._handle(self)
                body = why.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _refuse(self, why: str) -> tuple[int, str]:
        with self._lock:
            self.refused.append(why)
        return 400, why

    def _handle(self, h: BaseHTTPRequestHandler) -> tuple[int, str]:
        url = urllib.parse.urlsplit(h.path)
        if url.path != "/ingest":
            return 404, "not found"
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        for key in ("name", "from", "until", "format", "sampleRate", "spyName"):
            if key not in q:
                return self._refuse(f"missing {key}")
        m = _NAME.match(q["name"])
        if m is None:
            return self._refuse(f"bad name {q['name']!r}")
        if q["format"] != "pprof":
            return self._refuse(f"format {q['format']!r} is not pprof")
        ctype = h.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            return self._refuse(f"pprof must be multipart/form-data, got {ctype!r}")
        length = int(h.headers.get("Content-Length", "0"))
        raw = h.rfile.read(length)
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
        parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
        part = parts.get("profile")
        if part is None:
            return self._refuse(f"no 'profile' part (parts: {sorted(map(str, parts))})")
        data = part.get_payload(decode=True)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        labels = {}
        for item in filter(None, (m.group("labels") or "").split(",")):
            k, _, v = item.partition("=")
            labels[k] = v
        ing = Ingest(m.group("app"), labels, int(q["from"]), int(q["until"]), int(q["sampleRate"]), q["spyName"], data)
        with self._lock:
            self.received.append(ing)
        return 200, ""


def pprof_message(data: bytes) -> Any:
    """``data`` parsed by the protobuf runtime against pprof's profile.proto (the fields read here)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="obskit_test_profile.proto", package="perftools.profiles.test")

    def msg(name: str, fields: list[tuple[str, int, int, bool, str]]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, repeated, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = f".perftools.profiles.test.{type_name}"

    i64, u64, s, m_ = F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_STRING, F.TYPE_MESSAGE
    msg("ValueType", [("type", 1, i64, False, ""), ("unit", 2, i64, False, "")])
    msg("Label", [("key", 1, i64, False, ""), ("str", 2, i64, False, ""), ("num", 3, i64, False, "")])
    msg("Sample", [("location_id", 1, u64, True, ""), ("value", 2, i64, True, ""), ("label", 3, m_, True, "Label")])
    msg("Line", [("function_id", 1, u64, False, ""), ("line", 2, i64, False, "")])
    msg("Location", [("id", 1, u64, False, ""), ("mapping_id", 2, u64, False, ""), ("line", 4, m_, True, "Line")])
    msg("Function", [("id", 1, u64, False, ""), ("name", 2, i64, False, ""), ("filename", 4, i64, False, "")])
    msg("Profile", [("sample_type", 1, m_, True, "ValueType"), ("sample", 2, m_, True, "Sample"),
                    ("location", 4, m_, True, "Location"), ("function", 5, m_, True, "Function"),
                    ("string_table", 6, s, True, ""), ("time_nanos", 9, i64, False, ""),
                    ("duration_nanos", 10, i64, False, ""), ("period", 12, i64, False, "")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.test.Profile"))
    out = cls()
    out.ParseFromString(data)
    return out


def function_samples(prof: Any) -> dict[str, int]:
    """Samples per function name (every function on a stack counts the sample once)."""
    names = {f.id: prof.string_table[f.name] for f in prof.function}
    loc_funcs = {loc.id: [names[ln.function_id] for ln in loc.line] for loc in prof.location}
    out: dict[str, int] = {}
    for smp in prof.sample:
        seen = {fn for lid in smp.location_id for fn in loc_funcs.get(lid, [])}
        for fn in seen:
            out[fn] = out.get(fn, 0) + smp.value[0]
    return out
