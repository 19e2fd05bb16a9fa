"""`obskit mem`: smaps breakdown (captured and live), leak verdicts on real processes, HTML, tracemalloc."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from conftest import CAPTURED, ROOT, Result, Target, run_obskit
from hypothesis import given, settings
from hypothesis import strategies as st

from obskit.errors import ExitCode
from obskit.mem.growth import fit, sparkline, theil_sen
from obskit.mem.smaps import Mapping, classify, parse_kb_fields, parse_smaps
from obskit.proc import ProcFS

PROC = CAPTURED / "mem" / "proc"
# Captured from a Python 3.11 process with 3 extra threads, a 20 MiB bytearray and one forked child.
PARENT, CHILD = 29388, 29411


# -- parsing and classification -------------------------------------------------------------

def test_captured_breakdown_adds_up() -> None:
    from obskit.mem.smaps import read_process

    pm = read_process(ProcFS(PROC), PARENT)
    assert pm.kinds is not None
    rollup = parse_kb_fields((PROC / str(PARENT) / "smaps_rollup").read_text())
    assert pm.total.rss == rollup["Rss"]
    assert pm.total.pss == rollup["Pss"]
    assert pm.total.uss == rollup["Private_Clean"] + rollup["Private_Dirty"]
    assert abs(sum(k.rss for k in pm.kinds.values()) - pm.total.rss) <= 64 * 1024
    # Main stack + 3 thread stacks; the 20 MiB buffer lives in anonymous memory (mmap'd by malloc).
    assert pm.kinds["stacks"].mappings == 4 == pm.threads
    assert pm.kinds["anon"].rss >= 20 * 1024 * 1024
    assert pm.kinds["heap"].mappings == 1
    assert pm.kinds["libs"].rss > 1024 * 1024


def test_captured_tree_with_subprocesses() -> None:
    r = run_obskit("mem", "--pid", str(PARENT), "-s", "--json", "--no-agent", "--proc-root", str(PROC))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "obskit.mem/1"
    assert [p["pid"] for p in data["processes"]] == [PARENT, CHILD]
    assert data["processes"][1]["role"] == "fork-child"
    # The forked child shares the parent's pages: PSS halves, and the totals add PSS correctly.
    assert data["total"]["pss"] == sum(p["total"]["pss"] for p in data["processes"])
    assert data["total"]["pss"] < data["total"]["rss"] * 0.6
    assert any("PSS adds up" in n for n in data["notes"])


def test_captured_human_view() -> None:
    r = run_obskit("mem", "--pid", str(PARENT), "--no-agent", "--proc-root", str(PROC))
    assert r.exit_code == 0, r.stderr
    assert "thread stacks" in r.stdout and "shared libraries" in r.stdout
    assert "33.4 MiB" in r.stdout


def _m(start: int, end: int, perms: str, path: str = "") -> Mapping:
    return Mapping(start, end, perms, 0, path, {"Rss": end - start})


def test_classify_thread_stack_vs_arena() -> None:
    maps = [
        _m(0x1000, 0x2000, "r-xp", "/usr/bin/python3.11"),
        _m(0x10000, 0x20000, "rw-p", "[heap]"),
        _m(0x7F0000000000, 0x7F0000021000, "rw-p"),  # malloc arena: used part …
        _m(0x7F0000021000, 0x7F0004000000, "---p"),  # … and its reserve above it
        _m(0x7F1000000000, 0x7F1000001000, "---p"),  # thread guard page …
        _m(0x7F1000001000, 0x7F1000801000, "rw-p"),  # … and the stack above it
        _m(0x7F2000000000, 0x7F2000010000, "r--p", "/usr/lib/libc.so.6"),
        _m(0x7F3000000000, 0x7F3000010000, "r--p", "/var/data/table.bin"),
        _m(0x7F4000000000, 0x7F4000010000, "rw-s", "/dev/shm/queue"),
        _m(0x7FFF00000000, 0x7FFF00021000, "rw-p", "[stack]"),
        _m(0x7FFF10000000, 0x7FFF10001000, "r-xp", "[vdso]"),
    ]
    assert classify(maps) == ["libs", "heap", "anon", "anon", "anon", "stacks", "libs", "files", "shmem", "stacks", "other"]


def test_parse_smaps_headers_with_spaces_in_paths() -> None:
    text = (
        "7f00-7f10 r--p 00000000 08:01 42    /opt/my app/lib.so (deleted)\n"
        "Rss:                  16 kB\nPss:                   8 kB\nPrivate_Dirty:         4 kB\nVmFlags: rd mr\n"
    )
    (m,) = parse_smaps(text)
    assert m.path == "/opt/my app/lib.so (deleted)"
    assert m.values == {"Rss": 16384, "Pss": 8192, "Private_Dirty": 4096}


# -- growth fit -----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(
    slope=st.floats(min_value=-5e6, max_value=5e6, allow_nan=False),
    base=st.floats(min_value=1e7, max_value=1e9),
    n=st.integers(min_value=5, max_value=60),
)
def test_theil_sen_recovers_an_exact_line(slope: float, base: float, n: int) -> None:
    t = [i * 0.5 for i in range(n)]
    y = [base + slope * x for x in t]
    s, lo, hi = theil_sen(t, y)
    assert math.isclose(s, slope, rel_tol=1e-6, abs_tol=1e-3)
    assert lo <= s <= hi


def test_sawtooth_without_trend_is_steady() -> None:
    t = [i * 0.25 for i in range(120)]
    y = [200e6 + 30e6 * ((i % 15) / 15) for i in range(120)]  # the GC/allocator sawtooth
    f = fit(t, y)
    assert f.verdict == "steady", f.evidence


def test_sawtooth_on_a_rising_floor_is_a_leak() -> None:
    t = [i * 0.25 for i in range(120)]
    y = [200e6 + 0.5e6 * x * 4 + 10e6 * ((i % 15) / 15) for i, x in enumerate(t)]
    f = fit(t, y)
    assert f.verdict == "leak-suspected", f.evidence
    assert f.slope_ci_mb_per_min[0] > 0


def test_levelling_off_is_growing_not_leak() -> None:
    t = [float(i) for i in range(120)]
    y = [100e6 + 50e6 * (1 - math.exp(-x / 15)) for x in t]
    f = fit(t, y)
    assert f.verdict == "growing", f.evidence
    assert any("levelling off" in e for e in f.evidence)


def test_too_few_samples_and_sparkline() -> None:
    assert fit([0.0, 1.0], [1.0, 2.0]).verdict == "too-few-samples"
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert len(sparkline([float(i) for i in range(500)], 40)) == 40


# -- live processes -------------------------------------------------------------------------

LEAKER = """
import sys, time
keep = []
print("ready", flush=True)
while True:
    keep.append(bytearray(200_000))  # ~2 MB/s, touched so it is resident
    time.sleep(0.1)
"""

CHURNER = """
import time
print("ready", flush=True)
while True:
    b = bytearray(200_000)  # the same 2 MB/s, freed at once
    del b
    time.sleep(0.1)
"""


@pytest.mark.slow
def test_leak_suspected_and_steady_on_real_processes(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    leak = spawn_python(LEAKER)
    churn = spawn_python(CHURNER)
    html = tmp_path / "leak.html"
    args = ["--watch", "5s", "--interval", "0.25", "--json", "--no-agent"]
    # Both watches run at once to keep the suite short.
    procs = [
        subprocess.Popen([sys.executable, "-m", "obskit", "mem", "--pid", str(leak.pid), *args, "-o", str(html),
                          "--fail-on", "leak-suspected"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen([sys.executable, "-m", "obskit", "mem", "--pid", str(churn.pid), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]
    (leak_out, leak_err), (churn_out, churn_err) = (p.communicate(timeout=120) for p in procs)
    assert procs[0].returncode == ExitCode.FINDINGS, leak_err
    assert procs[1].returncode == 0, churn_err
    leak_w = json.loads(leak_out)["watch"]
    churn_w = json.loads(churn_out)["watch"]
    assert leak_w["verdict"] == "leak-suspected", leak_w["series"][0]["fit"]["evidence"]
    lf = leak_w["series"][0]["fit"]
    assert 30 <= lf["slope_mb_per_min"] <= 240  # ~2 MB/s = ~120 MB/min; a starved target leaks slower
    assert lf["slope_ci_mb_per_min"][0] > 0
    assert churn_w["verdict"] == "steady", churn_w["series"][0]["fit"]["evidence"]
    assert len(leak_w["series"][0]["t"]) >= 10
    text = html.read_text()
    assert "<svg" in text and "leak-suspected" in text
    assert "obskit: error: memory verdict" in leak_err


def test_live_process_snapshot_and_hostile_cmdline(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python(
        "import threading, time\nfor _ in range(2):\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('ready', flush=True)\ntime.sleep(60)",
        "<script>alert(1)</script>", "[bold]x[/bold]",
    )
    out = tmp_path / "r.html"
    r = run_obskit("mem", "--pid", str(t.pid), "--json", "--no-agent", "-o", str(out))
    assert r.exit_code == 0, r.stderr
    (p,) = json.loads(r.stdout)["processes"]
    assert p["total"]["rss"] > 1024 * 1024 and p["total"]["uss"] > 0
    assert p["kinds"]["stacks"]["mappings"] == 3
    html = out.read_text()
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "src=" not in html and "href=" not in html and "@import" not in html
    r = run_obskit("mem", "--pid", str(t.pid), "--no-agent", env={"OBSKIT_WIDTH": "400"})
    assert r.exit_code == 0 and "<script>alert(1)</script> [bold]x[/bold]" in r.stdout


def test_mem_bad_input(cli: Callable[..., Result]) -> None:
    assert cli("mem").exit_code == ExitCode.USAGE
    r = cli("mem", "--pid", "99999999")
    assert r.exit_code == ExitCode.TARGET_NOT_FOUND and r.stderr.count("\n") == 1
    r = cli("mem", "--pid", "1", "--watch", "soon")
    assert r.exit_code == ExitCode.USAGE and "bad duration" in r.stderr


# -- tracemalloc through the agent ----------------------------------------------------------

ALLOCATOR = '''\
import time
import obskit.agent

keep = []


def grow():
    keep.append(bytes(50_000))  # line 8: the site that grows


obskit.agent.start()
print("ready", flush=True)
while True:
    grow()
    time.sleep(0.02)
'''


@pytest.mark.slow
def test_mem_top_and_diff_find_the_growing_line(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    script = tmp_path / "allocator.py"
    script.write_text(ALLOCATOR)
    env = {"OBSKIT_AGENT_DIR": str(tmp_path / "agent"), "PYTHONPATH": str(ROOT)}
    t = spawn_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", env=env)
    r = run_obskit("mem", "diff", "--pid", str(t.pid), "--interval", "1.5", "--json", env=env)
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["schema"] == "obskit.mem.tracemalloc/1" and d["mode"] == "diff"
    top = d["sites"][0]
    assert (top["file"], top["line"]) == (str(script), 8), d["sites"][:3]
    assert top["size_diff"] > 500_000
    assert d["left_tracing"] is False
    r = run_obskit("mem", "top", "--pid", str(t.pid), "--wait", "1", "-n", "5", env=env)
    assert r.exit_code == 0, r.stderr
    assert f"{script}:8" in r.stdout and "tracemalloc top" in r.stdout
    r = run_obskit("mem", "--pid", str(t.pid), env=env)
    assert "Python (agent):" in r.stdout and "objects tracked by the GC" in r.stdout
    r = run_obskit("mem", "--pid", str(t.pid), "--types", "--json", env=env)
    assert dict(json.loads(r.stdout)["python"]["top_types"])["function"] > 10


def test_mem_top_without_agent_is_unavailable(spawn_python: Callable[..., Target]) -> None:
    t = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)")
    r = run_obskit("mem", "top", "--pid", str(t.pid))
    assert r.exit_code == ExitCode.UNAVAILABLE and "obskit run" in r.stderr


def test_ctrl_c_during_watch_still_reports(spawn_python: Callable[..., Target]) -> None:
    import signal
    import time

    t = spawn_python("import os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\nprint('ready', flush=True)\ntime.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-m", "obskit", "mem", "--pid", str(t.pid), "-s", "--watch", "60s",
                             "--interval", "0.1", "--no-agent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "OBSKIT_WIDTH": "120"})
    try:
        assert proc.stderr is not None
        assert "watching pid" in proc.stderr.readline()
        time.sleep(1.0)  # let some samples accumulate; the assertion below does not depend on how many
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "(interrupted)" in out and "tree pss" in out
    assert "Traceback" not in err


def test_target_exiting_mid_watch(spawn_python: Callable[..., Target]) -> None:
    t = spawn_python("import sys, time\nprint('ready', flush=True)\ntime.sleep(1.5)")
    r = run_obskit("mem", "--pid", str(t.pid), "--watch", "20s", "--interval", "0.1", "--json", "--no-agent")
    assert r.exit_code == 0, r.stderr
    (s,) = json.loads(r.stdout)["watch"]["series"]
    assert s["exited_at"] is not None and len(s["t"]) >= 2


def test_kernels_without_smaps_rollup_fall_back_to_smaps(tmp_path: Path) -> None:
    import shutil

    from obskit.mem.smaps import read_rollup

    root = tmp_path / "proc"
    shutil.copytree(PROC, root)
    (root / str(PARENT) / "smaps_rollup").unlink()
    with_rollup = read_rollup(ProcFS(PROC), PARENT)
    without = read_rollup(ProcFS(root), PARENT)
    assert abs(without.rss - with_rollup.rss) <= 64 * 1024
    assert without.uss == with_rollup.uss


def test_report_path_is_checked_before_the_watch(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    # A mistyped -o used to fail only after --watch had run its whole length.
    t = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)")
    for out, words in ((tmp_path / "no" / "mem.html", "does not exist"), (tmp_path / "mem.docx", "HTML")):
        r = run_obskit("mem", "--pid", str(t.pid), "--watch", "10m", "-o", str(out), "--no-agent", timeout=30)
        assert r.exit_code == ExitCode.USAGE and words in r.stderr and r.stderr.count("\n") == 1


def test_zombie_has_exited(zombie_pid: str) -> None:
    for args in (("mem", "--pid", zombie_pid), ("mem", "top", "--pid", zombie_pid), ("gc", "--pid", zombie_pid)):
        r = run_obskit(*args)
        assert r.exit_code == ExitCode.TARGET_EXITED and "zombie" in r.stderr and r.stderr.count("\n") == 1, args


def test_watch_reads_the_one_duration_grammar(cli: Callable[..., Result]) -> None:
    """`--watch 1d` is a day (as for `logs --since`), not an error; a bad unit is one line."""
    import os

    r = cli("mem", "--pid", str(os.getpid()), "--watch", "1d", "--interval", "100000")
    assert r.exit_code == 2 and "--interval is longer than --watch" in r.stderr
    r = cli("mem", "--pid", str(os.getpid()), "--watch", "1y")
    assert r.exit_code == 2 and "bad duration '1y'" in r.stderr
