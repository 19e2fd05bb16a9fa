"""`obskit gc`: a GC-heavy process under `obskit run`, the gctrace stream, advice, and no-agent errors."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest
from conftest import ROOT, Result, Target, run_obskit

from obskit.errors import ExitCode
from obskit.mem.gcstats import GCEvent, GCSummary, GenerationStats, advise

# Cycles of objects in a loop: every generation collects, gen 2 over a big live heap pauses.
GC_HEAVY = r"""
import gc, sys, time
class Node:
    def __init__(self):
        self.me = self
        self.items = [self]
keep = [[Node() for _ in range(50)] for _ in range(1000)]
gc.collect()
before = [s["collections"] for s in gc.get_stats()]
while True:
    junk = [Node() for _ in range(1000)]
    now = [s["collections"] for s in gc.get_stats()]
    if all(n > b for n, b in zip(now, before)):
        break
print("ready", flush=True)
while True:
    junk = [Node() for _ in range(500)]
    time.sleep(0.002)
"""


@pytest.fixture
def gc_target(spawn_python: Callable[..., Target], tmp_path: Path) -> Target:
    # exec keeps the PID: the target's PID is the app's, started through `obskit run`.
    launcher = (
        "import os, sys\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'obskit', 'run', '-q', '--', sys.executable, '-u', '-c', sys.argv[1]])"
    )
    return spawn_python(launcher, GC_HEAVY, env={"OBSKIT_AGENT_DIR": str(tmp_path / "agent"), "PYTHONPATH": str(ROOT)},
                        cwd=str(ROOT))


def _env(tmp_path: Path) -> dict[str, str]:
    return {"OBSKIT_AGENT_DIR": str(tmp_path / "agent")}


def test_gc_summary_per_generation(gc_target: Target, tmp_path: Path) -> None:
    r = run_obskit("gc", "--pid", str(gc_target.pid), "--json", env=_env(tmp_path))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "obskit.gc/1"
    assert data["pid"] == gc_target.pid
    gens = data["generations"]
    assert [g["generation"] for g in gens] == [0, 1, 2]
    for g in gens:
        assert g["collections"] >= 1, g
        assert g["pause_total_s"] > 0 and g["pause_max_s"] > 0
        assert g["per_minute"] > 0
    assert gens[0]["collections"] > gens[2]["collections"]
    assert data["thresholds"] == [700, 10, 10] or len(data["thresholds"]) == 3
    assert 0 < data["pause_share"] < 1
    assert data["frozen"] == 0

    r = run_obskit("gc", "--pid", str(gc_target.pid), "--duration", "1", env=_env(tmp_path))
    assert r.exit_code == 0, r.stderr
    assert f"GC of pid {gc_target.pid}" in r.stdout
    assert "last 1." in r.stdout and "pauses: total" in r.stdout


def test_gc_trace_streams_lines(gc_target: Target, tmp_path: Path) -> None:
    r = run_obskit("gc", "--pid", str(gc_target.pid), "--trace", "--duration", "1.5", env=_env(tmp_path))
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines, r.stderr
    pattern = re.compile(r"^gc (\d+) @\d+\.\d{3}s gen[012] \d+\.\dms pause \d+ collected \d+ uncollectable$")
    seqs = []
    for line in lines:
        m = pattern.match(line)
        assert m, line
        seqs.append(int(m.group(1)))
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    r = run_obskit("gc", "--pid", str(gc_target.pid), "--trace", "--json", "-d", "1", env=_env(tmp_path))
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert events and all(e["schema"] == "obskit.gc.event/1" and e["generation"] in (0, 1, 2) for e in events)


def test_gc_without_agent_says_how_to_get_one(spawn_python: Callable[..., Target]) -> None:
    t = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)")
    r = run_obskit("gc", "--pid", str(t.pid))
    assert r.exit_code == ExitCode.UNAVAILABLE
    assert r.stderr.count("\n") == 1
    assert f"process {t.pid} has no obskit agent" in r.stderr
    assert "obskit run" in r.stderr and "OBSKIT_AGENT=1" in r.stderr and "--inject" in r.stderr


@pytest.mark.skipif(not Path("/root/.pyenv/versions/3.8.18/bin/python3").exists(), reason="no Python 3.8 here")
def test_gc_inject_needs_39(spawn_python: Callable[..., Target]) -> None:
    t = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)",
                     executable="/root/.pyenv/versions/3.8.18/bin/python3")
    r = run_obskit("gc", "--pid", str(t.pid), "--inject")
    assert r.exit_code == ExitCode.UNSUPPORTED_VERSION, r.stderr
    assert "3.9+" in r.stderr


def _python314() -> str | None:
    for name in ("python3.14", "python3.15"):
        found = shutil.which(name)
        if found:
            return found
    versions = sorted(Path("/root/.pyenv/versions").glob("3.1[4-9]*/bin/python3"))
    return str(versions[-1]) if versions else None


@pytest.mark.skipif(_python314() is None, reason="no Python 3.14+ installed for sys.remote_exec")
def test_gc_inject_into_314(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    exe = _python314()
    assert exe is not None
    t = spawn_python("import time\nprint('ready', flush=True)\nwhile True:\n    x = [[] for _ in range(100)]\n    time.sleep(0.01)",
                     executable=exe)
    r = run_obskit("gc", "--pid", str(t.pid), "--inject", "--json", timeout=60)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == t.pid


def test_gc_bad_arguments(cli: Callable[..., Result]) -> None:
    assert cli("gc").exit_code == ExitCode.USAGE
    r = cli("gc", "--pid", "99999999")
    assert r.exit_code == ExitCode.TARGET_NOT_FOUND
    assert "Traceback" not in r.stderr


def test_event_line_format() -> None:
    ev = GCEvent(seq=12, at_s=3.402, generation=2, pause_s=0.0041, collected=35120, uncollectable=0)
    assert ev.line() == "gc 12 @3.402s gen2 4.1ms pause 35120 collected 0 uncollectable"


def _summary(pauses: list[float], maxes: list[float], window: float, **kw: object) -> GCSummary:
    gens = [GenerationStats(g, 10, 60.0, pauses[g], maxes[g], pauses[g] / 10, 0, 0, 10, 0) for g in range(3)]
    s = GCSummary(pid=1, python="3.11", window_s=window, window="since agent start", enabled=True,
                  thresholds=[700, 10, 10], frozen=0, garbage=0, generations=gens, pause_total_s=sum(pauses),
                  pause_max_s=max(maxes), pause_share=sum(pauses) / window, uncollectable=0)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_advice_gen2_dominant_suggests_freeze() -> None:
    advice = advise(_summary([0.01, 0.02, 0.5], [0.001, 0.003, 0.08], window=600))
    assert any("gc.freeze()" in a for a in advice)
    assert not any("set_threshold" in a for a in advice)


def test_advice_high_pause_share_suggests_thresholds() -> None:
    advice = advise(_summary([2.0, 0.5, 0.1], [0.002, 0.003, 0.005], window=60))
    assert any("gc.set_threshold(10000, 10, 10)" in a for a in advice)


def test_advice_calm_service_gets_none() -> None:
    assert advise(_summary([0.01, 0.01, 0.01], [0.001, 0.001, 0.002], window=600)) == []


def test_advice_uncollectable_and_disabled() -> None:
    advice = advise(_summary([0.01, 0.01, 0.01], [0.001, 0.001, 0.002], window=600, uncollectable=3, enabled=False))
    assert any("disabled" in a for a in advice) and any("3 uncollectable" in a for a in advice)


def test_module_imports_stay_lazy() -> None:
    import subprocess

    code = "import sys; import obskit.commands.gc, obskit.commands.mem, obskit.commands.run; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert out.strip() == "False"


def test_inject_payload_starts_an_agent(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    # What sys.remote_exec would run, run here as a plain script (no obskit importable in the target).
    from obskit.agent.bootstrap import inject_script

    script = tmp_path / "payload.py"
    script.write_text(inject_script())
    code = (f"exec(compile(open({str(script)!r}).read(), 'payload', 'exec'))\n"
            "import sys, time\nassert 'obskit' not in sys.modules\nprint('ready', flush=True)\ntime.sleep(60)")
    t = spawn_python(code, env={"OBSKIT_AGENT_DIR": str(tmp_path / "agent")}, cwd=str(tmp_path))
    r = run_obskit("gc", "--pid", str(t.pid), "--json", env={"OBSKIT_AGENT_DIR": str(tmp_path / "agent")})
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == t.pid


def test_target_exiting_mid_window_still_reports(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    # The agent refuses connections before its process is gone: that is an exit, not a "stale socket".
    launcher = (
        "import os, sys\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'obskit', 'run', '-q', '--', sys.executable, '-u', '-c', sys.argv[1]])"
    )
    t = spawn_python(launcher, "import time\nprint('ready', flush=True)\ntime.sleep(1.5)",
                     env={**_env(tmp_path), "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
    r = run_obskit("gc", "--pid", str(t.pid), "-d", "30", "--json", env=_env(tmp_path), timeout=60)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["window"] == "since agent start" and "exited during the window" in r.stderr
