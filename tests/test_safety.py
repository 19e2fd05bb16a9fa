"""Issue 8: the default sampling configuration keeps the target fast (deep and shallow stacks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Target, needs_ptrace, run_obskit

from obskit.profile import safety

DEEP = """
import sys, time
sys.setrecursionlimit(5000)
def a(n, d): return b(n - 1, d) if n else leaf(d)
def b(n, d): return c(n - 1, d) if n else leaf(d)
def c(n, d): return a(n - 1, d) if n else leaf(d)
def leaf(d):
    s = 0
    for i in range(2000):
        s += i * d
    return s
print("ready", flush=True)
d = 0
while True:
    a(200 + (d * 37) % 600, d)
    d += 1
"""

SHALLOW = """
def hot_loop(n):
    s = 0
    for i in range(n):
        s += i
    return s
print("ready", flush=True)
while True:
    hot_loop(5000)
"""


def test_choose_keeps_shallow_rate() -> None:
    d = safety.choose(0.0002, requested_rate=None)
    assert (d.rate, d.mode) == (100.0, "blocking")
    assert d.predicted_pause_share == pytest.approx(0.02)
    assert not d.warning


def test_choose_lowers_rate_for_deep_stacks() -> None:
    d = safety.choose(0.006, requested_rate=None, max_overhead=0.05)
    assert d.mode == "blocking"
    assert safety.MIN_RATE <= d.rate < 10
    assert d.predicted_pause_share is not None and d.predicted_pause_share <= 0.05
    assert "lowered" in d.reason


def test_choose_speed_wins_when_even_the_floor_is_too_slow() -> None:
    d = safety.choose(0.2, requested_rate=None, max_overhead=0.05)
    assert d.mode == "nonblocking" and d.rate == safety.SPEED_WINS_RATE
    assert "speed wins" in d.warning


def test_choose_explicit_rate_warns_over_budget() -> None:
    d = safety.choose(0.006, requested_rate=1000, max_overhead=0.05)
    assert (d.rate, d.mode) == (1000.0, "blocking")
    assert "predicted" in d.warning and "budget 5%" in d.warning
    assert not safety.choose(0.0001, requested_rate=200).warning
    unmeasured = safety.choose(None, requested_rate=None)
    assert (unmeasured.rate, unmeasured.mode) == (safety.CALIBRATION_RATE, "blocking")
    nb = safety.choose(0.006, requested_rate=None, forced_mode="nonblocking")
    assert nb.mode == "nonblocking" and nb.predicted_pause_share == 0.0


def _record(t: Target, tmp_path: Path, *args: str) -> dict[str, Any]:
    """`profile record --json` of ``t``; the report document."""
    r = run_obskit("profile", "record", "--pid", str(t.pid), *args, "--json", "-o", str(tmp_path / "p.json"))
    assert r.exit_code == 0, r.stderr
    return dict(json.loads(r.stdout))


@needs_ptrace
@pytest.mark.slow
def test_default_on_deep_stacks_lowers_the_rate(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    m = _record(spawn_python(DEEP), tmp_path, "-d", "5")["metadata"]
    assert m["mode"] == "blocking"
    assert m["requested_rate"] == 100
    segs = m["segments"]
    assert segs[0]["rate"] == safety.CALIBRATION_RATE
    # 200-800 frames cost milliseconds per sample: the rate must come down well below 100 Hz.
    assert len(segs) >= 2 and segs[-1]["rate"] < 50, segs
    # the pause is measured on the first segment that took samples (a short calibration may take none)
    pauses = [sg["pause_per_sample_ms"] for sg in segs if sg.get("pause_per_sample_ms") is not None]
    assert pauses and pauses[0] > 0.5, segs
    assert m["samples_attempted"] == m["samples_valid"] + m["samples_failed"]
    assert m["samples_valid"] >= 0.9 * m["samples_attempted"] > 0
    assert 0 < m["pause_share"] <= 0.1
    assert m["max_overhead"] == 0.05
    assert m["effective_rate"] < 50


@needs_ptrace
@pytest.mark.slow
def test_default_on_shallow_stacks_keeps_100hz(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    data = _record(spawn_python(SHALLOW), tmp_path, "-d", "4")
    m = data["metadata"]
    # Shallow stacks cost ~0.1-0.4 ms a sample: 100 Hz fits; a loaded machine may shave a little off.
    assert m["segments"][-1]["rate"] >= 50, m["segments"]
    assert m["mode"] == "nonblocking"  # shallow stacks: nonblocking samples are valid, and exact about idleness
    assert m["samples_valid"] >= 0.9 * m["samples_attempted"] > 0
    assert m["pause_share"] < 0.05
    assert not m["warnings"]
    assert data["top_functions"][0]["name"] == "hot_loop"


@needs_ptrace
@pytest.mark.slow
def test_explicit_rate_beyond_budget_warns(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python(DEEP)
    r = run_obskit("profile", "record", "--pid", str(t.pid), "-d", "3", "-r", "1000", "--json",
                   "-o", str(tmp_path / "w.json"))
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr and "predicted to stop the target" in r.stderr
    m = json.loads(r.stdout)["metadata"]
    assert m["requested_rate"] == 1000
    assert m["segments"][-1]["rate"] == 1000
    assert any("budget" in w for w in m["warnings"])
