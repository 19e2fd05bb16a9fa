"""Pure parts of `obskit trace`: traceparent parsing, sampling, configuration, times, spool."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obskit.errors import InputError, UsageError
from obskit.otel import spans
from obskit.redact import redact_argv
from obskit.tracing import config, propagation, sampling, tracer
from obskit.tracing.propagation import SpanContext, parse_traceparent
from obskit.tracing.spool import Spool

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


# --- traceparent: lenient parse, strict emit -------------------------------------------


def test_parse_valid_and_strict_emit() -> None:
    ctx = parse_traceparent(f"00-{TID}-{SID}-01", "k=v")
    assert ctx == SpanContext(TID, SID, 1, "k=v")
    assert ctx.traceparent() == f"00-{TID}-{SID}-01"


@pytest.mark.parametrize(
    "value",
    [
        f"  00-{TID.upper()}-{SID.upper()}-01 \n",  # case and whitespace
        f"01-{TID}-{SID}-01-extra-fields",  # a future version may append fields
        f"cc-{TID}-{SID}-01",
    ],
)
def test_parse_is_lenient(value: str) -> None:
    ctx = parse_traceparent(value)
    assert ctx is not None
    assert ctx.traceparent() == f"00-{TID}-{SID}-01"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"ff-{TID}-{SID}-01",  # version ff is invalid
        f"00-{TID}-{SID}-01-extra",  # version 00 has exactly four fields
        f"00-{'0' * 32}-{SID}-01",  # all-zero trace id
        f"00-{TID}-{'0' * 16}-01",  # all-zero span id
        f"00-{TID[:-1]}-{SID}-01",
        f"00-{TID}-{SID}-1",
        f"00-{TID}-{SID[:-1]}g-01",
    ],
)
def test_parse_rejects_invalid(value: str) -> None:
    assert parse_traceparent(value) is None


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8), st.integers(0, 255))
def test_emit_parse_roundtrip(tid: bytes, sid: bytes, flags: int) -> None:
    text = propagation.format_traceparent(tid.hex(), sid.hex(), flags)
    ctx = parse_traceparent(text.upper())
    if tid == bytes(16) or sid == bytes(8):
        assert ctx is None
    else:
        assert ctx is not None and ctx.traceparent() == text


def test_child_env_is_a_fresh_copy_per_child() -> None:
    parent_env = {"PATH": "/bin", "TRACEPARENT": "junk", "TRACESTATE": "old=1", "BAGGAGE": "user=alice, bad"}
    ctx = SpanContext(TID, SID, 1, "vendor=x")
    env1 = propagation.child_env(ctx, parent_env)
    env2 = propagation.child_env(SpanContext(TID, "1" * 16, 0, ""), parent_env)
    assert env1["TRACEPARENT"] == f"00-{TID}-{SID}-01" and env1["TRACESTATE"] == "vendor=x"
    assert env1["BAGGAGE"] == "user=alice"  # entries without '=' are dropped
    assert env2["TRACEPARENT"].endswith("-00") and "TRACESTATE" not in env2
    assert parent_env["TRACEPARENT"] == "junk"  # the parent's environment is never modified
    assert propagation.child_env(None, parent_env) == parent_env  # not recording: pass through


def test_tracestate_is_capped_by_whole_entries() -> None:
    value = ",".join(f"k{i}={'v' * 40}" for i in range(40))
    cleaned = propagation.clean_tracestate(value)
    assert len(cleaned) <= 512 and cleaned.count(",") < 32
    assert all(m.count("=") == 1 and m.endswith("v" * 40) for m in cleaned.split(","))


# --- sampling ------------------------------------------------------------------------------


def _ids(n: int) -> list[str]:
    import random

    rnd = random.Random(7)
    return [f"{rnd.getrandbits(128):032x}" for _ in range(n)]


@pytest.mark.parametrize("ratio, low, high", [(0.0, 0, 0), (1.0, 1.0, 1.0), (0.5, 0.47, 0.53), (0.1, 0.085, 0.115)])
def test_traceidratio_rate(ratio: float, low: float, high: float) -> None:
    s, warnings = sampling.parse("traceidratio", str(ratio))
    assert not warnings
    ids = _ids(8000)
    rate = sum(s.should_sample(t, None) for t in ids) / len(ids)
    assert low <= rate <= high


def test_sampler_agrees_with_the_sdk_trace_by_trace() -> None:
    from opentelemetry import trace as api
    from opentelemetry.sdk.trace.sampling import Decision

    for name, arg in [("traceidratio", "0.3"), ("parentbased_traceidratio", "0.7"), ("always_off", None)]:
        ours, _ = sampling.parse(name, arg)
        sdk = sampling.sdk_sampler(ours)
        for t in _ids(2000):
            decision = sdk.should_sample(None, int(t, 16), "x").decision  # type: ignore[attr-defined]
            assert (decision == Decision.RECORD_AND_SAMPLE) == ours.should_sample(t, None), (name, t)
        # Parent-based: the remote parent's sampled flag decides, whatever the ratio.
        for flag in (0, 1):
            parent = SpanContext(TID, SID, flag)
            sc = api.SpanContext(int(TID, 16), int(SID, 16), True, api.TraceFlags(flag))
            pctx = api.set_span_in_context(api.NonRecordingSpan(sc))
            decision = sdk.should_sample(pctx, int(TID, 16), "x").decision  # type: ignore[attr-defined]
            assert (decision == Decision.RECORD_AND_SAMPLE) == ours.should_sample(TID, parent)


def test_parentbased_honours_parent_flag() -> None:
    on, _ = sampling.parse("parentbased_always_on", None)
    off, _ = sampling.parse("parentbased_always_off", None)
    assert on.should_sample(TID, SpanContext(TID, SID, 0)) is False
    assert off.should_sample(TID, SpanContext(TID, SID, 1)) is True
    assert on.should_sample(TID, None) is True and off.should_sample(TID, None) is False
    plain_off, _ = sampling.parse("always_off", None)
    assert plain_off.should_sample(TID, SpanContext(TID, SID, 1)) is False


def test_bad_sampler_env_warns_and_falls_back() -> None:
    s, warnings = sampling.parse("nonsense", None)
    assert s.name == "parentbased_always_on" and warnings
    s, warnings = sampling.parse("traceidratio", "2.5")
    assert s.ratio == 1.0 and warnings


# --- configuration -------------------------------------------------------------------------


def _env(tmp_path: Path, **kv: str) -> dict[str, str]:
    return {"OBSKIT_TRACE_DIR": str(tmp_path), **kv}


def test_endpoint_rules(tmp_path: Path) -> None:
    c = config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://col:4318/"))
    assert c.endpoint == "http://col:4318/v1/traces" and c.protocol == "http/protobuf"
    c = config.load(
        _env(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT="http://a:4318",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://b:9999/custom",
        )
    )
    assert c.endpoint == "http://b:9999/custom"  # per-signal URL is used as is
    c = config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="col:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc"))
    assert c.endpoint == "http://col:4317" and c.protocol == "grpc"
    c = config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://a:1"), endpoint="http://flag:2", protocol="grpc")
    assert c.endpoint == "http://flag:2"
    c = config.load(_env(tmp_path))
    assert c.endpoint == "" and c.output == str(tmp_path / "spans.otlp.jsonl") and c.destination.startswith("file:")


def test_timeout_is_milliseconds_and_flags_win(tmp_path: Path) -> None:
    assert config.load(_env(tmp_path)).timeout_s == 1.0
    assert config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_TIMEOUT="2500")).timeout_s == 2.5
    assert (
        config.load(
            _env(tmp_path, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="300", OTEL_EXPORTER_OTLP_TIMEOUT="9000")
        ).timeout_s
        == 0.3
    )
    assert config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_TIMEOUT="2500"), timeout_s=0.2).timeout_s == 0.2
    with pytest.raises(UsageError):
        config.load(_env(tmp_path), timeout_s=0)
    with pytest.raises(UsageError):
        config.load(_env(tmp_path), protocol="carrier-pigeon")
    c = config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_PROTOCOL="carrier-pigeon"))
    assert c.protocol == "http/protobuf" and c.warnings  # a bad variable warns, a bad flag fails


def test_headers_are_parsed_and_redacted(tmp_path: Path) -> None:
    c = config.load(
        _env(tmp_path, OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20sk-live-123456789,x-tenant=a"),
        headers=["x-api-key=supersecretvalue"],
    )
    assert c.headers["authorization"] == "Bearer sk-live-123456789"
    shown = str(c.summary())
    assert "123456789" not in shown and "supersecretvalue" not in shown
    assert c.summary()["headers"]["x-api-key"] == "supe…"
    assert set(c.summary()["headers"]) == {"authorization", "x-tenant", "x-api-key"}


def test_service_name_and_resource_precedence(tmp_path: Path) -> None:
    c = config.load(
        _env(tmp_path, OTEL_RESOURCE_ATTRIBUTES="service.name=fromres,team=core%2Cinfra,deployment.environment=prod")
    )
    assert c.service_name == "fromres" and c.resource["team"] == "core,infra"
    c = config.load(_env(tmp_path, OTEL_RESOURCE_ATTRIBUTES="service.name=fromres", OTEL_SERVICE_NAME="svc"))
    assert c.service_name == "svc" == c.resource["service.name"]
    c = config.load(_env(tmp_path, OTEL_SERVICE_NAME="svc"), service_name="flag")
    assert c.resource["service.name"] == "flag"
    assert config.load(_env(tmp_path)).resource["service.name"] == "obskit"
    assert c.resource["process.pid"] == os.getpid() and c.resource["host.name"]


def test_resource_container_and_kubernetes(tmp_path: Path) -> None:
    cid = "3f4a" * 16
    cg = tmp_path / "cgroup"
    cg.write_text(
        f"0::/kubepods.slice/kubepods-pod0a1b2c3d_1111_2222_3333_444455556666.slice/cri-containerd-{cid}.scope\n"
    )
    ns = tmp_path / "namespace"
    ns.write_text("payments\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "api-7d9f-x2x", "NODE_NAME": "node-3"}
    res = config.detect_resource(env, cgroup_path=str(cg), namespace_path=str(ns))
    assert res["container.id"] == cid
    assert res["k8s.pod.name"] == "api-7d9f-x2x" and res["k8s.namespace.name"] == "payments"
    assert res["k8s.node.name"] == "node-3" and res["k8s.pod.uid"] == "0a1b2c3d-1111-2222-3333-444455556666"
    outside = config.detect_resource({"HOSTNAME": "laptop"}, cgroup_path=str(tmp_path / "none"), namespace_path=str(ns))
    assert "k8s.pod.name" not in outside and "container.id" not in outside


# --- times and attributes ---------------------------------------------------------------------

NOW = 1_800_000_000 * 10**9


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", NOW),
        ("-5s", NOW - 5 * 10**9),
        ("-2m", NOW - 120 * 10**9),
        ("+250ms", NOW + 250 * 10**6),
        ("1700000000", 1_700_000_000 * 10**9),
        ("1700000000.5", 1_700_000_000_500_000_000),
        ("1700000000123", 1_700_000_000_123 * 10**6),
        ("1700000000123456789", 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20Z", 1_700_000_000 * 10**9),
        ("2023-11-14T22:13:20.250+00:00", 1_700_000_000_250_000_000),
        ("2023-11-14T23:13:20.123456789+01:00", 1_700_000_000_123_456_789),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert spans.parse_time(text, NOW) == expected


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(InputError):
        spans.parse_time("yesterday-ish", NOW)


def test_attrs_are_typed() -> None:
    assert spans.parse_attrs(["a=1", "b=2.5", "c=true", "d=x=y", "e="]) == {
        "a": 1,
        "b": 2.5,
        "c": True,
        "d": "x=y",
        "e": "",
    }
    with pytest.raises(UsageError):
        spans.parse_attrs(["novalue"])
    with pytest.raises(UsageError):
        spans.check_kind("sideways")


# --- spool -----------------------------------------------------------------------------------


def test_spool_is_private_bounded_and_claimed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from obskit.tracing import spool as spool_mod

    monkeypatch.setattr(spool_mod, "SPOOL_MAX_BYTES", 1000)
    store = Spool(tmp_path / "state")
    assert store.put(b"x" * 400, 2) == 0
    assert store.put(b"y" * 400, 3) == 0
    assert store.put(b"z" * 400, 4) == 2  # the oldest batch (2 spans) went to stay under 1000 bytes
    assert store.counters()["dropped_spans"] == 2
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    pending = store.pending()
    assert [p.read_bytes()[:1] for p in pending] == [b"y", b"z"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pending)
    claimed = store.claim(pending[0])
    assert claimed is not None and store.claim(pending[0]) is None  # a second flush cannot take it
    assert len(store.pending()) == 1
    store.release(claimed)
    assert len(store.pending()) == 2


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["curl", "-H", "Authorization: Bearer abc.def", "https://x"],
            ["curl", "-H", "Authorization: ***", "https://x"],
        ),
        (["mysql", "--password", "hunter2", "-u", "root"], ["mysql", "--password", "***", "-u", "root"]),
        (["deploy", "--api-key=k-123", "--region=eu"], ["deploy", "--api-key=***", "--region=eu"]),
        (["psql", "postgres://app:s3cret@db:5432/x"], ["psql", "postgres://app:***@db:5432/x"]),
        (["env", "GITHUB_TOKEN=ghp_x", "make"], ["env", "GITHUB_TOKEN=***", "make"]),
        (["ls", "-la", "/tmp"], ["ls", "-la", "/tmp"]),
    ],
)
def test_command_args_are_redacted(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def test_show_reads_other_producers_files(tmp_path: Path) -> None:
    """A pretty-printed document with base64 ids (protobuf JSON mapping), as other tools write."""
    import base64

    from obskit.otel import show

    b64 = lambda h: base64.b64encode(bytes.fromhex(h)).decode()  # noqa: E731
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "x"},
                        "spans": [
                            {
                                "traceId": b64(TID),
                                "spanId": b64(SID),
                                "name": "GET /",
                                "kind": 2,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "3000",
                                "status": {"code": 2},
                            },
                            {
                                "traceId": TID,
                                "spanId": "1" * 16,
                                "parentSpanId": SID,
                                "name": "db",
                                "startTimeUnixNano": "1500",
                                "endTimeUnixNano": "2000",
                                "attributes": [{"key": "rows", "value": {"intValue": "3"}}],
                            },
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "other.json"
    import json

    path.write_text(json.dumps(doc, indent=2))
    items, skipped = show.load(path)
    view = show.build(str(path), items)
    assert skipped == 0 and view.total_traces == 1
    (trace,) = view.traces
    assert trace.trace_id == TID and trace.errors == 1 and trace.duration_s == 2e-6
    assert [(s.name, s.depth, s.kind, s.service) for s in trace.spans] == [
        ("GET /", 0, "server", "api"),
        ("db", 1, "internal", "api"),
    ]
    assert trace.spans[1].attributes == {"rows": 3}


# -- bad input found in QA ------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_export_timeout_flag_must_be_finite_and_positive(tmp_path: Path, value: float) -> None:
    with pytest.raises(UsageError):
        config.load(_env(tmp_path), timeout_s=value)


@pytest.mark.parametrize("raw", ["-5", "0", "nan", "inf", "abc"])
def test_bad_timeout_variable_warns_and_uses_the_default(tmp_path: Path, raw: str) -> None:
    c = config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_TIMEOUT=raw))
    assert c.timeout_s == config.DEFAULT_BUDGET_S
    assert any("OTEL_EXPORTER_OTLP_TIMEOUT" in w for w in c.warnings)


@pytest.mark.parametrize("text", ["-99999999999s", "99999999999999999999", "0001-01-01T00:00:00Z", "-60y"])
def test_parse_time_rejects_times_otlp_cannot_carry(text: str) -> None:
    with pytest.raises(InputError):
        spans.parse_time(text, NOW)


def test_show_rejects_a_file_with_no_otlp_in_it(tmp_path: Path) -> None:
    from obskit.otel import show

    for content in ("root:x:0:0:root:/root:/bin/bash\n", '{"a": 1}\n', "[1, 2]\n"):
        path = tmp_path / "f.json"
        path.write_text(content)
        with pytest.raises(InputError, match="not an OTLP/JSON span file"):
            show.load(path)
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert show.load(empty) == ([], 0)  # an empty span file is just empty


def test_output_never_touches_a_foreign_file_or_its_directory(tmp_path: Path) -> None:
    """`--output` as root must not append to, rotate or chmod what the user pointed it at."""
    from obskit.tracing import export

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    victim = shared / "passwd"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    cfg = config.load(_env(tmp_path / "state"), output=str(victim))
    record = tracer.new_span(cfg, "x", None)
    record.end_ns = record.start_ns
    result = export.deliver(cfg, [record])
    assert result.sent == 0 and "not an OTLP/JSON span file" in result.error
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    # A new span file in the user's directory: the directory keeps its mode, the file is 0600.
    fresh = shared / "spans.jsonl"
    cfg = config.load(_env(tmp_path / "state"), output=str(fresh))
    assert export.deliver(cfg, [record]).sent == 1
    assert export.deliver(cfg, [record]).sent == 1  # appending to our own span file is fine
    assert len(fresh.read_text().splitlines()) == 2
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777 and stat.S_IMODE(fresh.stat().st_mode) == 0o600
    # trace status probes the file the same way.
    from obskit.otel import status

    assert "not an OTLP/JSON span file" in status.check(config.load(_env(tmp_path / "state"), output=str(victim))).test_span.error
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_headers_that_would_fail_every_export_are_refused(tmp_path: Path) -> None:
    """A bad header is spooled with the span and fails every later flush too: stop it at the door."""
    for flag in ("=v", "a b=v", "x=line\r\nInjected: 1"):
        with pytest.raises(UsageError):
            config.load(_env(tmp_path), headers=[flag])
    c = config.load(_env(tmp_path, OTEL_EXPORTER_OTLP_HEADERS="a=%0d%0ab,ok=1"))
    assert c.headers == {"ok": "1"} and any("ignored header 'a'" in w for w in c.warnings)
    assert config.load(_env(tmp_path), headers=["Authorization=Bearer abc\tdef"]).headers == {
        "Authorization": "Bearer abc\tdef"
    }
