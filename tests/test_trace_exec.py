"""`obskit trace exec` against real OTLP/HTTP and OTLP/gRPC receivers on loopback."""

from __future__ import annotations

import json
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, obskit_process, run_obskit
from otlp_receiver import OtlpGrpcReceiver, OtlpHttpReceiver
from trace_helpers import PARENT_SID, PARENT_TID, Cli, trace_state

PRINT_CTX = (
    "import os, json; print(json.dumps({k: os.environ.get(k) for k in ('TRACEPARENT', 'TRACESTATE', 'BAGGAGE')}))"
)

state = pytest.fixture(trace_state, name="state")


def test_http_span_parent_attributes_resource_and_propagation(state: Path) -> None:
    with OtlpHttpReceiver() as rx:
        r = run_obskit(
            "trace",
            "exec",
            "--name",
            "migrate-db",
            "--attr",
            "db=orders",
            "--attr",
            "batch=7",
            "--kind",
            "client",
            "--",
            sys.executable,
            "-c",
            PRINT_CTX,
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
                "OTEL_SERVICE_NAME": "deploy-bot",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
                "TRACEPARENT": f" 00-{PARENT_TID.upper()}-{PARENT_SID}-01 ",
                "TRACESTATE": "vendor=abc",
                "BAGGAGE": "user=alice",
            },
        )
        assert r.exit_code == 0, r.stderr
        (span,) = rx.wait_for_spans(1)
    assert span.name == "migrate-db" and span.kind == 3  # SPAN_KIND_CLIENT
    assert span.trace_id == PARENT_TID and span.parent_span_id == PARENT_SID
    assert span.status_code == 1 and span.trace_state == "vendor=abc"
    assert span.attributes["db"] == "orders" and span.attributes["batch"] == 7
    assert span.attributes["process.exit.code"] == 0
    assert span.attributes["process.command_args"] == [sys.executable, "-c", PRINT_CTX]
    assert span.end_ns > span.start_ns
    assert span.resource["service.name"] == "deploy-bot"
    assert span.resource["deployment.environment"] == "staging"
    assert span.resource["host.name"] and span.resource["process.pid"] > 0
    assert rx.headers[0]["x-tenant"] == "acme" and rx.paths == ["/v1/traces"]
    # The child saw the exec span itself as its parent, strictly formatted.
    seen = json.loads(r.stdout)
    assert seen["TRACEPARENT"] == f"00-{PARENT_TID}-{span.span_id}-01"
    assert seen["TRACESTATE"] == "vendor=abc" and seen["BAGGAGE"] == "user=alice"


def test_grpc_failed_command_has_error_status(state: Path) -> None:
    with OtlpGrpcReceiver() as rx:
        r = run_obskit(
            "trace",
            "exec",
            "--",
            sys.executable,
            "-c",
            "import sys; sys.exit(3)",
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t0ken",
            },
        )
        assert r.exit_code == 3, r.stderr
        (span,) = rx.wait_for_spans(1)
    assert span.name == sys.executable and span.parent_span_id == ""
    assert span.status_code == 2 and span.status_message == "exit code 3"
    assert span.attributes["process.exit.code"] == 3
    assert rx.headers[0]["authorization"] == "Bearer t0ken"
    assert not state.joinpath("spool").exists() or not list(state.joinpath("spool").iterdir())


def test_exit_codes_are_kept(state: Path, cli: Cli, tmp_path: Path) -> None:
    assert cli("trace", "exec", "--", "true").exit_code == 0
    assert cli("trace", "exec", "--", sys.executable, "-c", "raise SystemExit(3)").exit_code == 3
    r = cli("trace", "exec", "--", "no-such-command-xyz")
    assert r.exit_code == 127 and "command not found" in r.stderr
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    assert cli("trace", "exec", "--", str(script)).exit_code == 126
    r = cli("trace", "exec", "--", sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert r.exit_code == 128 + signal.SIGTERM
    # Every command left a span in the local OTLP/JSON file, errors marked.
    r = cli("trace", "show", "--json", "--last", "0")
    view = json.loads(r.stdout)
    assert view["schema"] == "obskit.trace.show/1" and view["total_traces"] == 5
    by_code = {s["attributes"]["process.exit.code"]: s for t in view["traces"] for s in t["spans"]}
    assert set(by_code) == {0, 3, 127, 126, 143}
    assert by_code[0]["status"] == "ok" and by_code[127]["status"] == "error"
    assert by_code[143]["attributes"]["process.exit.signal"] == "SIGTERM"
    assert "command not found" in by_code[127]["status_message"]


def test_sigterm_is_forwarded_to_the_child(state: Path) -> None:
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('child got TERM', flush=True), sys.exit(7)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with obskit_process("trace", "exec", "--name", "waiter", "--", sys.executable, "-u", "-c", child, cwd=ROOT) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # readiness handshake from the grandchild
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert "child got TERM" in out and proc.returncode == 7, err
    text = (state / "spans.otlp.jsonl").read_text()
    assert '"SIGTERM"' in text and "obskit.signals_forwarded" in text


@pytest.mark.slow
def test_collector_down_bounded_then_spooled_then_flushed_once(state: Path) -> None:
    rx = OtlpHttpReceiver()
    rx.start()
    port, endpoint = rx.port, rx.endpoint
    rx.stop()  # nothing listens there now: connection refused
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    r = run_obskit("trace", "exec", "--name", "while-down", "--", sys.executable, "-c", "print('work done')", env=env)
    assert r.exit_code == 0 and r.stdout == "work done\n"
    assert "1 span(s) spooled" in r.stderr and "obskit trace flush" in r.stderr
    spooled = list((state / "spool").iterdir())
    assert len(spooled) == 1 and stat.S_IMODE(spooled[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "spool").stat().st_mode) == 0o700
    errors = [json.loads(x) for x in (state / "errors.jsonl").read_text().splitlines()]
    assert "cannot reach" in errors[-1]["error"]

    st = run_obskit("trace", "status", "--json", env=env)
    assert st.exit_code == 10  # the test span could not be delivered
    status = json.loads(st.stdout)
    assert status["spooled_batches"] == 1 and status["last_errors"]

    with OtlpHttpReceiver(port) as rx2:
        f = run_obskit("trace", "flush", "--json", env=env)
        assert f.exit_code == 0, f.stderr
        assert json.loads(f.stdout)["sent"] == 1
        (span,) = rx2.wait_for_spans(1)
        assert span.name == "while-down" and span.attributes["process.exit.code"] == 0
        again = run_obskit("trace", "flush", "--json", env=env)
        assert json.loads(again.stdout)["sent"] == 0
        assert rx2.requests == 1 and len(rx2.spans) == 1  # delivered exactly once
    assert list((state / "spool").iterdir()) == []


@pytest.mark.slow
def test_slow_collector_never_delays_the_command(state: Path) -> None:
    with OtlpHttpReceiver() as rx:
        rx.delay = 30.0  # accepts the connection, answers after 30 s
        started = time.monotonic()
        r = run_obskit(
            "trace",
            "exec",
            "--export-timeout",
            "0.5",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(4)",
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint},
        )
        elapsed = time.monotonic() - started
        rx.delay = 0
    assert r.exit_code == 4
    # Unbounded, this would take 30 s; the budget is 0.5 s plus interpreter start-up on a loaded machine.
    assert elapsed < 15, elapsed
    assert "timed out" in r.stderr or "cannot reach" in r.stderr
    assert len(list((state / "spool").iterdir())) == 1


def test_failing_collector_is_spooled_not_fatal(state: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpGrpcReceiver() as rx:
        rx.fail_with("UNAVAILABLE")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        r = cli("trace", "exec", "--export-timeout", "2", "--", "true")
        assert r.exit_code == 0 and "UNAVAILABLE" in r.stderr
        assert rx.requests >= 1 and not rx.spans
        rx.fail_with(None)
        f = cli("trace", "flush")
        assert f.exit_code == 0 and "sent 1 span(s)" in f.stdout
        assert len(rx.wait_for_spans(1)) == 1


def test_sampler_off_propagates_unsampled_and_exports_nothing(
    state: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    out = tmp_path / "tp.txt"
    write_tp = f"import os; open({str(out)!r}, 'w').write(os.environ['TRACEPARENT'])"
    with OtlpHttpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
        assert cli("trace", "exec", "--", sys.executable, "-c", write_tp).exit_code == 0
        assert out.read_text().endswith("-00")
        # Parent-based: the parent's flag wins over a root ratio of 0, both ways.
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
        monkeypatch.setenv("TRACEPARENT", f"00-{PARENT_TID}-{PARENT_SID}-01")
        assert cli("trace", "exec", "-n", "kept", "--", "true").exit_code == 0
        monkeypatch.setenv("TRACEPARENT", f"00-{PARENT_TID}-{PARENT_SID}-00")
        assert cli("trace", "exec", "-n", "dropped", "--", sys.executable, "-c", write_tp).exit_code == 0
        assert out.read_text().endswith("-00")
        # Exports are synchronous in each command: whatever was sent has arrived.
        assert [s.name for s in rx.spans] == ["kept"] and rx.requests == 1


def test_http_json_protocol_and_traceparent_template(state: Path) -> None:
    with OtlpHttpReceiver() as rx:
        r = run_obskit(
            "trace",
            "exec",
            "--protocol",
            "http/json",
            "--",
            "echo",
            "tp={{traceparent}}",
            env={
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.endpoint + "/v1/traces",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            },
        )
        assert r.exit_code == 0, r.stderr
        (span,) = rx.wait_for_spans(1)
    assert rx.headers[0]["content-type"] == "application/json" and rx.headers[0]["content-encoding"] == "gzip"
    assert r.stdout.strip() == f"tp=00-{span.trace_id}-{span.span_id}-01"
    assert span.attributes["process.command_args"] == ["echo", f"tp=00-{span.trace_id}-{span.span_id}-01"]


def test_sigkill_of_obskit_takes_the_child_with_it(state: Path) -> None:
    """obskit killed without a chance to forward anything: its child must not run on orphaned."""
    import os

    child = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(120)\n"
    with obskit_process("trace", "exec", "--", sys.executable, "-u", "-c", child, cwd=ROOT) as proc:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        state_of_child = "?"
        while time.monotonic() < deadline:
            try:
                state_of_child = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                state_of_child = "gone"
            if state_of_child in ("gone", "Z", "X"):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        assert state_of_child in ("gone", "Z", "X"), f"child {pid} still running ({state_of_child})"
