"""Spans from shell scripts (span start/end, event, span --start/--end), show, status, selftrace."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import obskit_process, run_obskit
from otlp_receiver import OtlpHttpReceiver
from trace_helpers import PARENT_SID, PARENT_TID, Cli, trace_state

from obskit import selftrace
from obskit.errors import TargetNotFound

state = pytest.fixture(trace_state, name="state")


def test_shell_script_flow(state: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpHttpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        r = cli("trace", "span", "start", "--name", "deploy", "--attr", "env=prod")
        assert r.exit_code == 0, r.stderr
        tp = r.stdout.strip()
        assert tp.startswith("00-") and len(tp) == 55 and not rx.spans  # nothing sent while open
        monkeypatch.setenv("TRACEPARENT", tp)
        assert cli("trace", "event", "migrations-applied", "--attr", "count=12").exit_code == 0
        assert cli("trace", "exec", "--name", "step", "--", "true").exit_code == 0
        assert (
            cli("trace", "span", "--name", "build", "--start=-3s", "--end", "-1s", "--attr", "cache=hit").exit_code == 0
        )
        r = cli("trace", "span", "end", "--status", "error", "--message", "canary failed")
        assert r.exit_code == 0, r.stderr
        spans = rx.wait_for_spans(3)
        deploy = rx.span("deploy")
    step, build = rx.span("step"), rx.span("build")
    assert deploy.trace_id == step.trace_id == build.trace_id
    assert step.parent_span_id == deploy.span_id == build.parent_span_id
    assert tp == f"00-{deploy.trace_id}-{deploy.span_id}-01"
    assert deploy.status_code == 2 and deploy.status_message == "canary failed"
    assert deploy.attributes["env"] == "prod"
    assert deploy.events == [("migrations-applied", {"count": 12})]
    assert 1.9e9 <= build.end_ns - build.start_ns <= 2.1e9 and build.attributes["cache"] == "hit"
    assert deploy.start_ns < step.start_ns <= step.end_ns < deploy.end_ns
    assert len(spans) == 3
    # The open span is gone: ending it twice is an input error, not a second span.
    assert cli("trace", "span", "end", tp).exit_code == 9


def test_event_without_open_span_is_a_zero_length_span(state: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEPARENT", f"00-{PARENT_TID}-{PARENT_SID}-01")
    assert cli("trace", "event", "cache-warmed").exit_code == 0
    view = json.loads(cli("trace", "show", "--json").stdout)
    (span,) = view["traces"][0]["spans"]
    assert span["name"] == "cache-warmed" and span["duration_s"] == 0
    assert span["parent_span_id"] == PARENT_SID and view["traces"][0]["trace_id"] == PARENT_TID


def test_span_usage_errors(state: Path, cli: Cli) -> None:
    r = cli("trace", "span", "--name", "x")
    assert r.exit_code == 2 and "--start" in r.stderr
    r = cli("trace", "span", "--name", "x", "--start", "-1s", "--end", "-5s")
    assert r.exit_code == 2 and "before" in r.stderr
    r = cli("trace", "span", "--name", "x", "--start", "last tuesday")
    assert r.exit_code == 9 and "Traceback" not in r.stderr
    r = cli("trace", "span", "end", "not-a-traceparent")
    assert r.exit_code == 9 and "traceparent" in r.stderr
    r = cli("trace", "exec", "--kind", "sideways", "--", "true")
    assert r.exit_code == 2


def test_show_tree_and_bad_files(state: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tp = cli("trace", "span", "start", "--name", "release [v2]").stdout.strip()
    monkeypatch.setenv("TRACEPARENT", tp)
    assert (
        cli("trace", "exec", "--name", "unit-tests", "--", sys.executable, "-c", "raise SystemExit(1)").exit_code == 1
    )
    assert cli("trace", "span", "end", "--status", "error").exit_code == 0
    r = cli("trace", "show")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"trace {tp[3:35]}") and "2 error(s)" in lines[0]
    assert any(line.startswith("  ✗ release [v2]") for line in lines)  # markup in names is escaped
    assert any(line.startswith("    ✗ unit-tests") and "exit code 1" in line for line in lines)
    # A truncated last line (crash mid-write) is skipped and reported, not fatal.
    spans_file = state / "spans.otlp.jsonl"
    with spans_file.open("a") as f:
        f.write('{"resourceSpans": [{"scopeSp')
    r = cli("trace", "show", str(spans_file), "--json")
    view = json.loads(r.stdout)
    assert view["skipped_lines"] == 1 and [s["depth"] for s in view["traces"][0]["spans"]] == [0, 1]
    r = cli("trace", "show", str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 9 and "no span file" in r.stderr


def test_status_redacts_headers_and_sends_a_test_span(state: Path) -> None:
    with OtlpHttpReceiver() as rx:
        r = run_obskit(
            "trace",
            "status",
            "--json",
            "--header",
            "x-api-key=sk-live-abcdef123456",
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20tok-9876543210",
            },
        )
        assert r.exit_code == 0, r.stderr
        (span,) = rx.wait_for_spans(1)
    status = json.loads(r.stdout)
    assert status["schema"] == "obskit.trace.status/1"
    assert "abcdef123456" not in r.stdout and "9876543210" not in r.stdout
    assert status["config"]["headers"] == {"authorization": "Bearer tok-…", "x-api-key": "sk-l…"}
    assert status["config"]["endpoint"] == rx.endpoint + "/v1/traces"
    assert status["test_span"]["sent"] == 1 and span.name == "obskit.trace.status"
    assert span.trace_id == status["test_span"]["trace_id"]
    assert rx.headers[0]["x-api-key"] == "sk-live-abcdef123456"  # redacted only in the report


def test_selftrace_exports_nested_spans_with_env_parent(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpHttpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "obskit-ci")
        monkeypatch.setenv("TRACEPARENT", f"00-{PARENT_TID}-{PARENT_SID}-01")
        with selftrace.span("obskit.profile.record", pid=1234, rate=100) as outer:
            assert outer.trace_id == PARENT_TID and len(outer.span_id) == 16
            with selftrace.span("obskit.profile.collect") as inner:
                inner.set_attribute("samples", 812)
            assert not rx.spans  # exported when the outermost span ends, not before
        with pytest.raises(TargetNotFound), selftrace.span("obskit.stacks", pid=99999999):
            raise TargetNotFound("no process 99999999", "check the PID")
        rx.wait_for_spans(3)
    record, collect, stacks = (
        rx.span("obskit.profile.record"),
        rx.span("obskit.profile.collect"),
        rx.span("obskit.stacks"),
    )
    assert record.parent_span_id == PARENT_SID and record.span_id == outer.span_id
    assert collect.parent_span_id == record.span_id and collect.attributes["samples"] == 812
    assert record.attributes["pid"] == 1234 and record.resource["service.name"] == "obskit-ci"
    assert record.status_code == 1
    assert stacks.status_code == 2 and stacks.status_message == "no process 99999999"
    assert stacks.events[0][1]["exception.type"] == "TargetNotFound"


def test_selftrace_off_is_a_no_op(state: Path) -> None:
    with selftrace.span("obskit.x") as s:
        assert s.trace_id is None and s.span_id is None
    assert not state.exists()


def test_an_obskit_command_traces_itself(state: Path, tmp_path: Path) -> None:
    spans_file = tmp_path / "some.jsonl"
    spans_file.write_text('{"resourceSpans": []}\n')  # (an empty FILE is an input error, exit 9)
    with OtlpHttpReceiver() as rx:
        r = run_obskit("trace", "show", str(spans_file), env={"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint})
        assert r.exit_code == 0, r.stderr
        (span,) = rx.wait_for_spans(1)
    assert span.name == "obskit.trace.show" and span.attributes["process.command_args"][-1] == str(spans_file)


def test_help_imports_no_otel() -> None:
    import subprocess

    code = (
        "import sys; from obskit.commands import main; main(['trace', 'exec', '--help']); "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'google', 'grpc', 'rich'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_ctrl_c_while_the_collector_hangs_spools_the_span(state: Path) -> None:
    """Ctrl-C during an export to a collector that never answers: exit 0, span spooled, one line."""
    import signal
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(60)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        with obskit_process("trace", "span", "--name", "x", "--start", "-1s", "--endpoint", endpoint,
                            "--export-timeout", "60", "--json", env={"OBSKIT_TRACE_DIR": str(state)}) as proc:
            conn, _ = server.accept()  # the export is under way: the readiness handshake
            with conn:
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out)["spooled"] == 1
    assert "interrupted (Ctrl-C)" in err
    assert len(list((state / "spool").glob("*.pb"))) == 1


def test_damaged_open_span_file_is_an_input_error_not_a_crash(state: Path, cli: Cli) -> None:
    r = cli("trace", "span", "start", "--name", "deploy")
    assert r.exit_code == 0, r.stderr
    tp = r.stdout.strip()
    open_file = state / "open" / f"{tp.split('-')[2]}.json"
    assert open_file.exists()
    for damaged in ('{"name": 5}', '{"name": "x", "trace_id": "t", "span_id": "s", "start_ns": 1, "events": [{}]}'):
        open_file.write_text(damaged)
        r = cli("trace", "span", "end", tp, "--json")
        assert r.exit_code == 9 and r.stdout == "" and r.stderr.startswith("obskit: error: no open span"), r.stderr
        assert cli("trace", "status", "--json").exit_code == 0
