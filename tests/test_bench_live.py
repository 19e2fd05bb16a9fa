"""`obskit bench compare --base CMD --head CMD`: real commands with large effects, no mocks.

The targets are the ones benchmarks/bench_gate.py measures: a CPU-bound script whose hot function
HOT_SLOW=P makes P % slower, and a script whose memory MEM_GROW=P makes P % larger.  Small sizes
and few runs keep this fast; the figures at default settings live in benchmarks/bench_gate.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_obskit

_spec = importlib.util.spec_from_file_location("bench_gate", ROOT / "benchmarks" / "bench_gate.py")
assert _spec and _spec.loader
bench_gate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_gate)

PY = f"{shlex.quote(sys.executable)} -I -S"
FAST = ("--runs", "6", "--max-runs", "24", "--warmup", "0", "--max-time", "60s")


@pytest.fixture
def targets(tmp_path: Path) -> tuple[str, str]:
    return bench_gate.write_targets(str(tmp_path))


def _metrics(doc: dict) -> dict[str, dict]:
    return {m["metric"]: m for m in doc["benchmarks"][0]["metrics"]}


def test_forty_percent_slower_is_regressed(targets: tuple[str, str], tmp_path: Path) -> None:
    hot, _ = targets
    env = {"HOT_N": "300000"}
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step output\n")
    r = run_obskit("bench", "compare", "--base", f"env HOT_SLOW=0 {PY} {hot}", "--head",
                   f"env HOT_SLOW=40 {PY} {hot}", *FAST, "--no-profile", "--json", "--artifacts",
                   str(tmp_path / "art"), env={**env, "GITHUB_STEP_SUMMARY": str(summary)}, timeout=170)
    assert r.exit_code == 3, r.stderr
    doc = json.loads(r.stdout)
    m = _metrics(doc)
    assert m["cpu"]["verdict"] == "regressed" and m["cpu"]["ratio"] > 1.15, m["cpu"]
    assert m["cpu"]["ci_low"] > 1.05 and m["cpu"]["floor_method"] == "aa"
    assert m["rss"]["verdict"] != "regressed"
    # every run's raw values, the machine and the method are in the document
    runs = [x for x in doc["runs"] if x["round"] >= 0]
    assert {x["side"] for x in runs} == {"base", "head", "calib"}
    assert len(runs) == 3 * doc["rounds"] and all(x["wall"] > 0 and x["cpu"] > 0 and x["rss"] > 0 for x in runs)
    expected = "cgroup-v1" if os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup/memory") else "rusage"
    assert doc["settings"]["method"] == expected
    assert doc["machine"]["python"].startswith("CPython") and doc["machine"]["cpus"] >= 1
    assert "regressed" in r.stderr and "cpu" in r.stderr
    # Markdown appended to the job summary; artifacts hold the same document and summary
    md = summary.read_text()
    assert md.startswith("earlier step output\n") and "obskit bench: regressed" in md and "| cpu |" in md
    art = json.loads((tmp_path / "art" / "result.json").read_text())
    assert art["rounds"] == doc["rounds"] and (tmp_path / "art" / "summary.md").read_text() in md
    # obskit's own saved result is a result file too: the same document on both sides compares its base
    # runs with its head runs (unpaired now: a block-bootstrap interval of the ratio of medians, the drift floor)
    saved = str(tmp_path / "art" / "result.json")
    r = run_obskit("bench", "compare", saved, saved, "--json")
    assert r.exit_code in (0, 3), r.stderr
    again = {m["metric"]: m for m in json.loads(r.stdout)["benchmarks"][0]["metrics"]}
    # Unpaired, the interval is wider than the paired one: a noisy round may leave it undecided, never reversed.
    assert again["cpu"]["verdict"] in ("regressed", "inconclusive"), again["cpu"]
    assert (r.exit_code == 3) == (again["cpu"]["verdict"] == "regressed")
    assert again["cpu"]["ratio"] > 1.1 and again["cpu"]["n_base"] == doc["rounds"]


def test_identical_commands_are_not_regressed(targets: tuple[str, str], tmp_path: Path) -> None:
    hot, _ = targets
    cmd = f"env HOT_SLOW=0 {PY} {hot}"
    r = run_obskit("bench", "compare", "--base", cmd, "--head", cmd, *FAST, "--json", "--artifacts",
                   str(tmp_path / "art"), env={"HOT_N": "300000"},
                   timeout=170)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert all(m["verdict"] in ("unchanged", "inconclusive", "improved") for m in doc["benchmarks"][0]["metrics"])
    assert doc["where"] is None


def test_memory_growth_is_regressed_rusage(targets: tuple[str, str]) -> None:
    _, mem = targets
    r = run_obskit("bench", "compare", "--base", f"env MEM_GROW=0 {PY} {mem}", "--head",
                   f"env MEM_GROW=50 {PY} {mem}", *FAST, "--method", "rusage", "--no-calibrate", "--no-profile", "--json",
                   env={"MEM_MB": "30"}, timeout=170)
    assert r.exit_code == 3, r.stderr
    doc = json.loads(r.stdout)
    m = _metrics(doc)
    assert m["rss"]["verdict"] == "regressed" and m["rss"]["ratio"] > 1.25, m["rss"]
    assert doc["settings"]["method"] == "rusage" and m["rss"]["floor_method"] in ("split-half", "none")
    assert {x["side"] for x in doc["runs"]} == {"base", "head"}


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroup v1 per run needs root")
def test_memory_growth_is_regressed_cgroup(targets: tuple[str, str]) -> None:
    _, mem = targets
    r = run_obskit("bench", "compare", "--base", f"env MEM_GROW=0 {PY} {mem}", "--head",
                   f"env MEM_GROW=50 {PY} {mem}", *FAST, "--method", "cgroup", "--no-profile", "--json", env={"MEM_MB": "30"},
                   timeout=170)
    if r.exit_code == 10:
        pytest.skip(f"no writable cgroup v1 here: {r.stderr.strip()}")
    assert r.exit_code == 3, r.stderr
    doc = json.loads(r.stdout)
    assert _metrics(doc)["rss"]["verdict"] == "regressed" and doc["settings"]["method"] == "cgroup-v1"
    leftovers = [d for d in os.listdir("/sys/fs/cgroup/memory") if d.startswith("obskit-bench-")]
    assert not [d for d in leftovers if _owner_alive(d)], leftovers


def _owner_alive(name: str) -> bool:
    # obskit-bench-<pid>-<n>: a group of a finished obskit is a leak; a running one's is not ours to judge
    try:
        pid = int(name.split("-")[2])
    except (IndexError, ValueError):
        return False
    return not os.path.exists(f"/proc/{pid}")


def test_failing_command_has_no_verdict(targets: tuple[str, str]) -> None:
    hot, _ = targets
    bad = f"{PY} -c \"import sys; sys.stderr.write('boom: the head is broken\\n'); sys.exit(4)\""
    r = run_obskit("bench", "compare", "--base", f"{PY} {hot}", "--head", bad, *FAST, env={"HOT_N": "1000"})
    assert r.exit_code == 9, r
    assert "boom: the head is broken" in r.stderr and "head command exited with 4" in r.stderr
    assert r.stdout == ""
    r = run_obskit("bench", "compare", "--base", "/nonexistent/prog", "--head", f"{PY} {hot}", *FAST)
    assert r.exit_code == 9 and "base command exited with 127" in r.stderr, r


METRIC_SCRIPT = """
import json, os, time
speed = 1000.0 * (1 - float(os.environ.get("DROP", "0")) / 100)
print(f"throughput: {speed:.1f} req/s")
print(json.dumps({"name": "items", "value": speed * 2, "direction": "higher"}))
print(json.dumps({"latency_ms": 1000.0 / speed}))
"""


def test_command_metrics_regex_and_json_lines(tmp_path: Path) -> None:
    script = tmp_path / "m.py"
    script.write_text(METRIC_SCRIPT)
    r = run_obskit("bench", "compare", "--base", f"env DROP=0 {PY} {script}", "--head", f"env DROP=30 {PY} {script}",
                   *FAST, "--metric", "rps=throughput: ([0-9.]+):higher", "--json-metrics", "--no-profile", "--json")
    assert r.exit_code == 3, r.stderr
    m = _metrics(json.loads(r.stdout))
    assert m["rps"]["verdict"] == "regressed" and m["rps"]["higher_is_better"] and m["rps"]["ratio"] < 0.8
    assert m["items"]["verdict"] == "regressed" and m["items"]["higher_is_better"]
    assert m["latency_ms"]["verdict"] == "regressed" and not m["latency_ms"]["higher_is_better"]
    # without --json-metrics the JSON lines are not read
    r = run_obskit("bench", "compare", "--base", f"{PY} {script}", "--head", f"{PY} {script}", *FAST,
                   "--metric", "rps=throughput: ([0-9.]+):higher", "--no-profile", "--json")
    assert set(_metrics(json.loads(r.stdout))) == {"wall", "cpu", "rss", "rps"}
    # a regex that never matches is an input error naming the metric
    r = run_obskit("bench", "compare", "--base", f"{PY} {script}", "--head", f"{PY} {script}", *FAST,
                   "--metric", "qps=nothing like this ([0-9]+)")
    assert r.exit_code == 9 and "qps" in r.stderr, r


def test_where_the_time_went(targets: tuple[str, str], tmp_path: Path, require_ptrace: None) -> None:
    hot, _ = targets
    art = tmp_path / "art"
    md = tmp_path / "s.md"
    r = run_obskit("bench", "compare", "--base", f"env HOT_SLOW=0 {PY} {hot}", "--head",
                   f"env HOT_SLOW=100 {PY} {hot}", *FAST, "--profile-runs", "5", "--artifacts", str(art), "--markdown", str(md),
                   "--json", env={"HOT_N": "600000"}, timeout=170)
    assert r.exit_code == 3, r.stderr
    where = json.loads(r.stdout)["where"]
    assert where["base_samples"] >= 20 and where["head_samples"] >= 20, where
    assert where["grown"][0]["name"] == "hot", where["grown"]
    html = (art / "diff.html").read_text()
    assert "obskit diff" in html and "hot" in html
    assert json.loads((art / "head-profile.json").read_text())["samples"]
    text = md.read_text()
    assert "Where the time went" in text and "| `hot` |" in text


def test_too_short_to_sample_is_said(tmp_path: Path, require_ptrace: None) -> None:
    script = tmp_path / "tiny.py"
    script.write_text("import os\nif os.environ.get('SLOW'):\n    sum(range(200000))\n")
    r = run_obskit("bench", "compare", "--base", f"{PY} {script}", "--head", f"env SLOW=1 {PY} {script}",
                   "--runs", "8", "--max-runs", "16", "--warmup", "0", "--profile-runs", "3", "--json",
                   "--artifacts", str(tmp_path / "art"), timeout=170)
    doc = json.loads(r.stdout)
    if doc["where"] is None:
        pytest.skip("no confirmed regression this time (a loaded machine); the note is tested when there is one")
    assert any("too short to sample" in n for n in doc["where"]["notes"]), doc["where"]


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})


def test_base_ref_worktree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    code = "def hot(n):\n    return sum(i * i % 7 for i in range(n))\n\nhot({n})\n"
    (repo / "sub" / "app.py").write_text(code.format(n=200000))
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "base", cwd=repo)
    (repo / "sub" / "app.py").write_text(code.format(n=400000))  # the change under test: twice the work
    r = run_obskit("bench", "compare", "--base-ref", "HEAD", "--head", "python -I -S app.py",
                   "--setup", "python -c \"import sys; assert sys.prefix != sys.base_prefix\"",
                   *FAST, "--no-profile", "--json", cwd=str(repo / "sub"), timeout=170)
    assert r.exit_code == 3, r.stderr
    doc = json.loads(r.stdout)
    assert _metrics(doc)["cpu"]["verdict"] == "regressed"
    base = next(s for s in doc["sides"] if s["name"] == "base")
    assert base["ref"] == "HEAD" and len(base["commit"]) == 40 and base["cwd"].endswith("/sub")
    # the worktree and venvs are gone, the repository has no stale worktree
    assert not os.path.exists(base["cwd"])
    out = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert len(out.strip().splitlines()) == 1, out
    r = run_obskit("bench", "compare", "--base-ref", "no-such-ref", "--head", "true", cwd=str(repo))
    assert r.exit_code == 2 and "fetch-depth" in r.stderr, r


def test_sigterm_still_reports_the_rounds_done(tmp_path: Path) -> None:
    import signal
    import time

    from conftest import obskit_process

    marker = tmp_path / "started"
    cmd = f"{PY} -c \"import time, pathlib; pathlib.Path('{marker}').touch(); time.sleep(0.05)\""
    with obskit_process("bench", "compare", "--base", cmd, "--head", cmd, "--runs", "1000", "--max-runs", "1000",
                        "--warmup", "0", "--json", "--artifacts", str(tmp_path / "art")) as proc:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["stop_reason"] == "interrupted" and doc["runs"], doc["stop_reason"]
    assert "interrupted" in " ".join(doc["warnings"])
    assert json.loads((tmp_path / "art" / "result.json").read_text())["stop_reason"] == "interrupted"


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroup v1 per run needs root")
def test_cgroup_counts_the_unwaited_grandchild_rusage_does_not(tmp_path: Path) -> None:
    from obskit.bench.measure import choose_method, run_once

    if choose_method("auto") != "cgroup-v1":
        pytest.skip("no writable cgroup v1 here")
    # The command starts a child that does a fixed amount of work, waits until the child says it is
    # done (a marker file), and exits without ever wait()ing for it.
    child = "import pathlib, sys; sum(range(6 * 10**6)); pathlib.Path(sys.argv[1]).touch()"
    parent = ("import pathlib, subprocess, sys, time\n"
              "m = pathlib.Path(sys.argv[1]); m.unlink(missing_ok=True)\n"
              f"subprocess.Popen([sys.executable, '-c', {child!r}, str(m)])\n"
              "while not m.exists(): time.sleep(0.01)\n")
    marker = str(tmp_path / "done")
    argv = [sys.executable, "-c", parent, marker]
    cg = run_once(argv, method="cgroup-v1", timeout=120)
    ru = run_once(argv, method="rusage", timeout=120)
    assert cg.exit_code == 0 and ru.exit_code == 0
    assert cg.cpu is not None and ru.cpu is not None
    alone = run_once([sys.executable, "-c", child, marker], method="rusage", timeout=120)
    assert alone.cpu is not None
    # the child's work is in the tree's total with a cgroup, and missing from rusage
    assert cg.cpu > ru.cpu + 0.5 * alone.cpu, (cg.cpu, ru.cpu, alone.cpu)
