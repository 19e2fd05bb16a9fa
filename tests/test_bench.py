"""`obskit bench`: the decision logic on recorded samples (deterministic), and result files made by
pytest-benchmark and pyperf themselves."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_obskit

from obskit.bench import stats
from obskit.bench.model import MetricSpec, Run
from obskit.bench.runner import RunPlan, evaluate, extract_metrics, parse_metric_option, verdict_for

# CPU milliseconds recorded on this 2-core machine under load (other jobs + a burner): the hot
# function 10 % slower in head; calib is a second base series (the A/A noise floor).
BASE = [46.54, 44.45, 44.12, 47.55, 45.49, 45.95, 45.66, 44.19, 45.27, 42.33, 56.84, 47.7, 47.5, 45.7, 45.85,
        49.56, 49.76, 46.33, 54.02, 47.29, 47.3, 44.26, 44.09, 44.37, 47.39, 44.21, 42.52, 43.17, 48.59, 47.71,
        48.1, 45.83, 42.19]
HEAD = [48.25, 52.08, 48.59, 53.14, 50.5, 48.18, 47.11, 46.41, 46.83, 46.1, 48.87, 51.34, 51.64, 49.91, 48.24,
        47.88, 46.57, 48.38, 53.71, 51.97, 51.65, 58.63, 48.17, 50.06, 50.24, 47.69, 49.22, 50.9, 48.62, 52.61,
        53.3, 59.99, 47.8]
CALIB = [44.69, 45.86, 46.09, 48.05, 44.79, 44.62, 43.4, 44.52, 43.97, 42.33, 45.07, 47.99, 49.88, 47.25, 47.07,
         43.97, 52.35, 46.58, 48.95, 48.37, 46.41, 61.21, 43.59, 47.36, 44.68, 44.04, 45.67, 49.02, 47.61, 48.96,
         63.16, 43.6, 43.4]

CPU = MetricSpec("cpu", "s")


def test_recorded_ten_percent_is_regressed_and_aa_is_not() -> None:
    v = verdict_for(CPU, BASE, HEAD, CALIB, 0.05, 0.95, paired=True)
    assert v.verdict == "regressed", v
    assert 1.05 < v.ratio < 1.12 and v.ci_low > 1.05 and v.ci_method == "hodges-lehmann"
    assert v.floor_method == "aa" and 0 < v.noise_floor < v.ci_low - 1
    aa = verdict_for(CPU, BASE, CALIB, None, 0.05, 0.95, paired=True)
    assert aa.verdict == "unchanged", aa
    # deterministic: the same samples give the same interval to the last digit
    again = verdict_for(CPU, BASE, HEAD, CALIB, 0.05, 0.95, paired=True)
    assert (again.ci_low, again.ci_high, again.noise_floor) == (v.ci_low, v.ci_high, v.noise_floor)


def test_few_runs_are_inconclusive_then_decided() -> None:
    assert verdict_for(CPU, BASE[:8], HEAD[:8], CALIB[:8], 0.05, 0.95, paired=True).verdict == "inconclusive"
    assert verdict_for(CPU, BASE[:2], HEAD[:2], None, 0.05, 0.95, paired=True).verdict == "inconclusive"


def test_noise_floor_shrinks_with_runs_and_blocks_small_changes() -> None:
    f10 = stats.floor_from_aa(BASE[:10], CALIB[:10], paired=True)
    f33 = stats.floor_from_aa(BASE, CALIB, paired=True)
    assert f10 is not None and f33 is not None and f33 < f10
    # A change beyond the threshold but inside the floor is not called a regression.
    iv = stats.Interval(1.08, 1.06, 1.10, "test")
    assert stats.decide(iv, threshold=0.05, floor=None) == "regressed"
    # Within tolerance + noise, but the ratio itself is past the threshold: no verdict either way.
    assert stats.decide(iv, threshold=0.05, floor=0.07) == "inconclusive"
    assert stats.decide(stats.Interval(1.03, 1.0, 1.10, "t"), threshold=0.05, floor=0.07) == "unchanged"
    assert stats.decide(stats.Interval(1.1, 1.06, 1.15, "t"), threshold=0.05, floor=0.07) == "inconclusive"
    assert stats.decide(stats.Interval(1.0, 0.98, 1.03, "t"), threshold=0.05, floor=0.02) == "unchanged"
    assert stats.decide(stats.Interval(1.0, 0.9, 1.11, "t"), threshold=0.05, floor=0.02) == "inconclusive"
    assert stats.decide(stats.Interval(0.8, 0.75, 0.85, "t"), threshold=0.05, floor=0.02) == "improved"


def test_higher_is_better_flips_the_direction() -> None:
    drop = stats.Interval(0.8, 0.75, 0.85, "t")  # requests/s fell by 20 %
    assert stats.decide(drop, threshold=0.05, floor=0.0, higher_is_better=True) == "regressed"
    assert stats.decide(drop, threshold=0.05, floor=0.0, higher_is_better=False) == "improved"
    assert stats.decide_point(0.8, threshold=0.05, higher_is_better=True) == "regressed"
    assert stats.decide_point(1.02, threshold=0.05) == "unchanged"


def test_bootstrap_interval_is_deterministic_and_covers_the_ratio() -> None:
    a = stats.ratio_interval(BASE, HEAD)
    b = stats.ratio_interval(BASE, HEAD)
    assert a == b and a.method == "bootstrap"
    assert a.lo < a.ratio < a.hi and math.isclose(a.ratio, stats.median(HEAD) / stats.median(BASE))
    import random

    rng = random.Random(5)
    big = stats.ratio_interval([rng.gauss(1.0, 0.05) for _ in range(1000)], [rng.gauss(1.2, 0.05) for _ in range(1000)])
    assert big.method == "order-statistics" and 1.15 < big.lo < big.ratio < big.hi < 1.25


def test_evaluate_pairs_runs_of_complete_rounds() -> None:
    runs = []
    for i, (b, h, c) in enumerate(zip(BASE, HEAD, CALIB, strict=False)):
        runs += [Run("base", i, 0, b / 100, b / 1000, 50 << 20, 0, {"rps": 1000 / b}),
                 Run("head", i, 1, h / 100, h / 1000, 50 << 20, 0, {"rps": 1000 / h}),
                 Run("calib", i, 2, c / 100, c / 1000, 50 << 20, 0, {"rps": 1000 / c})]
    runs.append(Run("base", len(BASE), 0, 9.0, 9.0, 1, 0, {"rps": 1.0}))  # an unfinished round: ignored
    runs.append(Run("head", -1, 0, 9.0, 9.0, 1, 0, {"rps": 1.0}))  # warm-up: ignored
    res = evaluate("command", runs, [MetricSpec("rps", "", True)], RunPlan())
    got = {m.metric: m for m in res.metrics}
    assert got["cpu"].verdict == got["wall"].verdict == "regressed"
    assert got["rps"].verdict == "regressed" and got["rps"].ratio < 1  # fewer requests/s is worse
    assert got["rss"].verdict == "unchanged" and got["cpu"].n_base == len(BASE)


def test_metric_option_and_extraction() -> None:
    spec = parse_metric_option("rps=([0-9.,]+) req/s:higher")
    assert (spec.name, spec.higher_is_better, spec.regex) == ("rps", True, "([0-9.,]+) req/s")
    assert parse_metric_option("items=items: (\\d+)").higher_is_better is False
    found, _ = extract_metrics("warmup\n1,234.5 req/s\n", [spec], False)
    assert found == {"rps": 1234.5}
    found, dirs = extract_metrics('{"name": "qps", "value": 12, "direction": "higher"}\n{"lat_ms": 3.5, "ok": true}\n'
                                  "not json {\n", [], True)
    assert found == {"qps": 12.0, "lat_ms": 3.5} and dirs == {"qps": True}
    assert extract_metrics('{"lat_ms": 3.5}', [], False)[0] == {}  # JSON lines only with the flag
    for bad in ("rps", "=x", "wall=(\\d+)", "r=(\\d+", "bad name=x"):
        with pytest.raises(Exception) as e:
            parse_metric_option(bad)
        assert type(e.value).__name__ == "UsageError"


# -- result files made by the tools themselves -------------------------------------------------------

PYTEST_BENCH = """
import os
SLOW = float(os.environ.get("SLOW", "0"))

def work():
    return sum(i * i for i in range(int(3000 * (1 + SLOW))))

def stable():
    return sum(range(2000))

def test_work(benchmark):
    benchmark(work)

def test_stable(benchmark):
    benchmark(stable)
"""

PYPERF_BENCH = """
import os, pyperf
n = int(2000 * (1 + float(os.environ.get("SLOW", "0"))))
runner = pyperf.Runner()
runner.bench_func("work", lambda: sum(i * i for i in range(n)))
"""


def _pytest_benchmark(tmp: Path, name: str, slow: float, max_time: float = 1.0) -> Path:
    src = tmp / "test_pb_suite.py"
    src.write_text(PYTEST_BENCH)
    out = tmp / f"{name}.json"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(src),
            f"--benchmark-json={out}", f"--benchmark-max-time={max_time}", "--benchmark-min-rounds=20",
            "--benchmark-save-data",
            "-o", "addopts=", "-o", "timeout=120"]
    p = subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "SLOW": str(slow)})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return out


def test_pytest_benchmark_files(tmp_path: Path) -> None:
    """Two separate runs at pytest-benchmark's default length (1 s a benchmark): an 8x slowdown is
    a regression however noisy the machine was (its floor reached ±81 % here); the unchanged
    benchmark never is, whatever stretch of load each run met."""
    base = _pytest_benchmark(tmp_path, "base", 0.0)
    head = _pytest_benchmark(tmp_path, "head", 7.0)
    r = run_obskit("bench", "compare", str(base), str(head), "--json")
    assert r.exit_code == 3, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "obskit.bench/1" and doc["mode"] == "files"
    verdicts = {b["name"].split("::")[-1]: {k: v for k, v in b["metrics"][0].items() if k != "samples"}
                for b in doc["benchmarks"]}
    assert verdicts["test_work"]["verdict"] == "regressed", verdicts
    assert verdicts["test_work"]["ci_method"] == "block-bootstrap"
    assert verdicts["test_work"]["floor_method"] == "drift"
    assert verdicts["test_work"]["n_base"] >= 20
    assert verdicts["test_stable"]["verdict"] != "regressed", verdicts
    assert len(doc["benchmarks"][0]["samples"]["time"]["base"]) >= 20
    assert "regressed" in r.stderr and "test_work" in r.stderr

    # Without --benchmark-save-data (the file as pytest-benchmark writes it then: no "data"): a verdict
    # from the medians, with a warning that no interval is possible.
    plain = tmp_path / "plain.json"
    pdoc = json.loads(head.read_text())
    for b in pdoc["benchmarks"]:
        del b["stats"]["data"]
    plain.write_text(json.dumps(pdoc))
    r = run_obskit("bench", "compare", str(base), str(plain))
    assert r.exit_code == 3, r.stderr
    assert "no interval possible" in r.stdout and "test_work" in r.stdout


def test_short_pytest_benchmark_runs_only_count_a_change_beyond_2x(tmp_path: Path) -> None:
    """50 ms runs cannot show the machine's slow stretches (identical code moved up to 1.7x
    between two of them here): a 60 % slowdown is no verdict either way, and the output says why."""
    base = _pytest_benchmark(tmp_path, "base", 0.0, max_time=0.05)
    head = _pytest_benchmark(tmp_path, "head", 0.6, max_time=0.05)
    r = run_obskit("bench", "compare", str(base), str(head), "--json")
    assert r.exit_code in (0, 3), r.stderr
    doc = json.loads(r.stdout)
    for b in doc["benchmarks"]:
        m = b["metrics"][0]
        assert m["floor_method"] == "short-run" and m["noise_floor"] >= 1.0, m
        assert m["verdict"] != "unchanged", m
        if m["verdict"] == "regressed":
            assert m["ci_low"] > 2.0, m
    said = r.stderr + " ".join(doc.get("warnings") or [])
    assert "too short to tell a change from a slow stretch" in said and "--benchmark-max-time" in said


def test_unpaired_intervals_count_stretches_not_rounds() -> None:
    """A run whose last 60 % met a busy stretch (every round 12 % slower): over rounds, a
    certain 10 % regression; over stretches, the drift it is — no verdict."""
    from obskit.bench import stats

    base = [100.0 + (i % 7) - 3 for i in range(2000)]
    head = [100.0 + (i % 7) - 3 for i in range(800)] + [112.0 + (i % 7) - 3 for i in range(1200)]
    narrow = stats.ratio_interval(base, head)
    assert stats.decide(narrow, threshold=0.05, floor=stats.floor_from_split(base)) == "regressed"
    blocked = stats.unpaired_interval(base, head)
    assert blocked.method == "block-bootstrap" and blocked.lo is not None and blocked.lo <= 1.0
    drift = stats.drift_floor(head)
    assert drift is not None and drift > 0.1
    assert stats.decide(blocked, threshold=0.05, floor=drift) == "inconclusive"
    # The same slowdown over the whole run is a regression either way.
    slow = [112.0 + (i % 7) - 3 for i in range(2000)]
    assert stats.decide(stats.unpaired_interval(base, slow), threshold=0.05, floor=stats.drift_floor(slow)) == "regressed"


def test_pyperf_files(tmp_path: Path) -> None:
    import os

    src = tmp_path / "pp.py"
    src.write_text(PYPERF_BENCH)
    paths = {}
    for name, slow in (("base", "0"), ("head", "5")):
        paths[name] = tmp_path / f"{name}.json"
        p = subprocess.run([sys.executable, str(src), "--processes", "6", "--values", "5", "--warmups", "1",
                            "--min-time", "0.01", "--inherit-environ", "SLOW", "-q", "-o", str(paths[name])], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "SLOW": slow})
        assert p.returncode == 0, p.stderr
    r = run_obskit("bench", "compare", str(paths["base"]), str(paths["head"]), "--json")
    assert r.exit_code == 3, r.stderr
    m = json.loads(r.stdout)["benchmarks"][0]["metrics"][0]
    assert m["verdict"] == "regressed" and m["n_base"] == 30 and m["ratio"] > 2
    # Identical files: never a regression (unchanged, or inconclusive when the spread is large), exit 0.
    r = run_obskit("bench", "compare", str(paths["base"]), str(paths["base"]), "--markdown", str(tmp_path / "s.md"))
    assert r.exit_code == 0, r.stderr
    md = (tmp_path / "s.md").read_text()
    assert "| work |" in md and ("unchanged" in md or "inconclusive" in md) and "regressed" not in md


def test_bad_files_are_input_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    notjson = tmp_path / "x.json"
    notjson.write_text("nope")
    for args in ((str(junk), str(junk)), (str(notjson), str(junk)), (str(tmp_path / "missing.json"), str(junk))):
        r = run_obskit("bench", "compare", *args)
        assert r.exit_code == 9, r
        assert r.stderr.startswith("obskit: error:") and len(r.stderr.strip().splitlines()) == 1


def test_usage_errors(tmp_path: Path) -> None:
    cases = [
        ("bench", "compare"),
        ("bench", "compare", "a.json"),
        ("bench", "compare", "--base", "true"),
        ("bench", "compare", "--base", "true", "--head", "true", "--threshold", "lots"),
        ("bench", "compare", "--base", "true", "--head", "true", "--max-time", "forever"),
        ("bench", "compare", "--base", "true", "--head", "true", "--fail-on", "sometimes"),
        ("bench", "compare", "--base", "'unclosed", "--head", "true"),
        ("bench", "compare", "--base", "true", "--head", "true", "--setup", "make"),
        ("bench", "compare", "--base", "true", "--head", "true", "--cwd-base", str(tmp_path / "nope")),
        ("bench", "compare", "a.json", "b.json", "--base", "true"),
    ]
    for args in cases:
        r = run_obskit(*args)
        assert r.exit_code == 2, (args, r)
        assert r.stderr.startswith("obskit: error:") and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_stale_run_cgroups_are_swept(tmp_path: Path) -> None:
    import os

    from obskit.bench.measure import sweep_stale

    cpu, mem = tmp_path / "cpuacct", tmp_path / "memory"
    for d in (cpu, mem):
        (d / "obskit-bench-999999999-3").mkdir(parents=True)  # its obskit is gone
        (d / f"obskit-bench-{os.getpid()}-1").mkdir()  # a live obskit's
        (d / "someone-else").mkdir()
    sweep_stale((str(cpu), str(mem)))
    for d in (cpu, mem):
        assert sorted(p.name for p in d.iterdir()) == sorted([f"obskit-bench-{os.getpid()}-1", "someone-else"])
