"""`obskit trace` against bad environments: credentials in endpoints, exports that cannot
succeed, absurd timeouts, FIFO outputs without a reader, bad options and empty files."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest
from conftest import run_obskit
from otlp_receiver import OtlpHttpReceiver
from trace_helpers import Cli, trace_state

state = pytest.fixture(trace_state, name="state")
SECRET = "s3cr3t-pw-4711"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_userinfo(endpoint: str) -> str:
    return endpoint.replace("http://", f"http://deploy:{SECRET}@")


def test_endpoint_password_is_never_shown_or_stored(state: Path) -> None:
    with OtlpHttpReceiver() as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": _with_userinfo(rx.endpoint)}
        for args in (("trace", "status"), ("trace", "status", "--json")):
            r = run_obskit(*args, env=env)
            assert r.exit_code == 0, r.stderr
            assert SECRET not in r.stdout + r.stderr
        assert "deploy:***@" in r.stdout
        assert json.loads(r.stdout)["config"]["endpoint"].startswith("http://deploy:***@127.0.0.1")
        rx.wait_for_spans(2)
        assert rx.headers[0]["authorization"].startswith("Basic ")  # the collector still gets it
    # Collector down: the stderr line, the stored error log and its report carry no password.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://deploy:{SECRET}@127.0.0.1:{_dead_port()}"}
    r = run_obskit("trace", "exec", "--", "true", env=env)
    assert r.exit_code == 0 and "spooled" in r.stderr and SECRET not in r.stderr
    assert SECRET not in (state / "errors.jsonl").read_text()
    for args in (("trace", "status"), ("trace", "status", "--json"), ("trace", "flush")):
        r = run_obskit(*args, env=env)
        assert r.exit_code == 10 and SECRET not in r.stdout + r.stderr


def test_argv_and_headers_of_obskit_itself_are_redacted_in_its_own_spans(state: Path) -> None:
    with OtlpHttpReceiver() as rx:
        r = run_obskit("trace", "status", "--header", f"authorization=Bearer {SECRET}",
                       env={"OBSKIT_TRACE": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint})
        assert r.exit_code == 0, r.stderr
        rx.wait_for_spans(1)
        assert all(SECRET not in json.dumps(s.attributes) for s in rx.spans)


@pytest.mark.parametrize("endpoint", ["file:///tmp/obskit-spans", "ftp://collector:21", "http://"])
def test_an_endpoint_that_cannot_work_says_so_and_keeps_the_span(state: Path, endpoint: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    r = run_obskit("trace", "exec", "--", sys.executable, "-c", "raise SystemExit(4)", env=env)
    assert r.exit_code == 4, r.stderr  # the command's code, whatever happens to its span
    assert "no export can succeed" in r.stderr and "1 span(s) spooled" in r.stderr
    assert len(list((state / "spool").iterdir())) == 1
    r = run_obskit("trace", "status", "--json", env=env)
    assert r.exit_code == 10 and json.loads(r.stdout)["test_span"]["sent"] == 0
    r = run_obskit("trace", "exec", "--endpoint", endpoint, "--", "true")
    assert r.exit_code == 2 and "no export can succeed" in r.stderr  # a bad flag: nothing ran


def test_an_absurd_timeout_is_capped_not_a_crash(state: Path) -> None:
    with OtlpHttpReceiver() as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": "99999999999999999999"}
        r = run_obskit("trace", "exec", "--", "true", env=env)
        assert r.exit_code == 0, r.stderr
        assert "Overflow" not in r.stderr and "using 600 s" in r.stderr
        rx.wait_for_spans(1)
    r = run_obskit("trace", "exec", "--export-timeout", "1e30", "--", "true")
    assert r.exit_code == 2 and "at most" in r.stderr


def test_fifo_output_without_a_reader_never_holds_the_exit_code(state: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "spans.fifo"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = run_obskit("trace", "exec", "-o", str(fifo), "--", sys.executable, "-c", "raise SystemExit(3)", timeout=60)
    assert r.exit_code == 3, r.stderr
    assert time.monotonic() - t0 < 30
    assert "FIFO with no reader" in r.stderr and "spans dropped" in r.stderr


def test_fifo_output_with_a_reader_gets_the_span(state: Path, tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "spans.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before obskit writes

    def read() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not got:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = b""
            if chunk:
                got.append(chunk)
            time.sleep(0.05)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        r = run_obskit("trace", "exec", "--name", "piped", "-o", str(fifo), "--", "true", timeout=60)
        reader.join(40)
    finally:
        os.close(fd)
    assert r.exit_code == 0, r.stderr
    assert got and json.loads(got[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] == "piped"


def test_bad_options_are_usage_errors_and_run_nothing(state: Path, cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cmd = ("touch", str(marker))
    for run in (lambda *a: run_obskit(*a), cli):  # the fast entry and the full CLI agree
        for args in (("--bogus", "--", *cmd), ("--kind", "sideways", "--", *cmd), ("--export-timeout", "soon", "--", *cmd),
                     ("--protocol", "smoke", "--", *cmd), ("--name",)):
            r = run("trace", "exec", *args)
            assert r.exit_code == 2, (args, r.stderr)
            assert "obskit: error:" in r.stderr and "obskit/otel" not in r.stderr and not marker.exists()
    assert cli("trace", "exec", "--", "touch", str(marker)).exit_code == 0 and marker.exists()


def test_show_on_an_empty_file_is_an_input_error(state: Path, cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = cli("trace", "show", str(empty))
    assert r.exit_code == 9 and "empty" in r.stderr
    assert run_obskit("trace", "show", "/dev/null").exit_code == 9
