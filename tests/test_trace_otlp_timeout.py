"""One timeout rule for every OTLP export: `trace exec` and `logs --otlp` read
OTEL_EXPORTER_OTLP_TIMEOUT the same way (milliseconds; under 100 read as seconds, warned),
shown against real loopback receivers that answer after a known delay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CAPTURED, run_obskit
from otlp_receiver import OtlpHttpReceiver
from trace_helpers import trace_state

from obskit.otlp.config import MAX_TIMEOUT_S, read_timeout

state = pytest.fixture(trace_state, name="state")
MIXED = CAPTURED / "logs" / "mixed.log"
DELAY = 1.5  # the receiver answers after this many seconds


@pytest.mark.parametrize(
    "raw, seconds, warned",
    [
        ("2500", 2.5, False),
        ("500", 0.5, False),
        ("100", 0.1, False),
        ("10", 10.0, True),  # the Python SDK's default, in its unit
        ("0.5", 0.5, True),
        ("99999999999999999999", MAX_TIMEOUT_S, True),
        ("0", 1.0, True),
        ("-3", 1.0, True),
        ("nan", 1.0, True),
        ("soon", 1.0, True),
    ],
)
def test_the_timeout_rule(raw: str, seconds: float, warned: bool) -> None:
    value, warning = read_timeout(raw, 1.0)
    assert value == seconds and bool(warning) == warned
    assert "\n" not in warning


def _trace_exec(rx: OtlpHttpReceiver, timeout: str) -> tuple[bool, str]:
    r = run_obskit("trace", "exec", "--name", f"t{timeout}", "--", "true",
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": timeout})
    assert r.exit_code == 0, r.stderr
    delivered = "spooled" not in r.stderr and "timed out" not in r.stderr
    return delivered, r.stderr


def _logs_otlp(rx: OtlpHttpReceiver, timeout: str) -> tuple[bool, str]:
    r = run_obskit("logs", str(MIXED), "--level", "critical", "--otlp", "--summary", "--json",
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": timeout})
    assert r.exit_code == 0, r.stderr
    otlp = json.loads(r.stdout)["otlp"]
    assert otlp["sent"] + otlp["failed"] == 1, otlp
    return otlp["sent"] == 1, r.stderr


@pytest.mark.parametrize("signal", ["trace", "logs"])
def test_both_signals_read_the_timeout_variable_alike(state: Path, signal: str) -> None:
    run = _trace_exec if signal == "trace" else _logs_otlp
    with OtlpHttpReceiver() as rx:
        rx.delay = DELAY
        # "3" as seconds (the Python SDK's unit): long enough for the slow receiver, and warned.
        delivered, err = run(rx, "3")
        assert delivered, err
        assert "OTEL_EXPORTER_OTLP_TIMEOUT=3 read as 3 s" in err
        # "300" is milliseconds: shorter than the receiver's delay, so the export gives up.
        delivered, err = run(rx, "300")
        assert not delivered, err
        assert "read as" not in err
        # "3000" is milliseconds too: 3 s, delivered, no warning.
        delivered, err = run(rx, "3000")
        assert delivered and "warning" not in err, err
