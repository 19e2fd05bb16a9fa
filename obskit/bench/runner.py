"""`bench compare --base CMD --head CMD`: interleaved rounds, adaptive until every verdict is decided.

A round runs each series once: base, head and (with calibration) ``calib``, a second series of
the base command that gives the A/A noise floor at the same number of runs.  The order rotates
through every permutation (ABBA without calibration), so drift of the machine (a neighbour's
job starting, a CPU warming up) lands on every side alike.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from obskit.bench import stats
from obskit.bench.measure import CGROUP_ROOT, Measurement, run_once
from obskit.bench.model import (
    BUILTIN_METRICS,
    BenchmarkResult,
    BenchResult,
    Machine,
    MetricSpec,
    MetricVerdict,
    Run,
    Settings,
    Side,
)
from obskit.errors import InputError

ORDERS_3 = (("base", "head", "calib"), ("head", "calib", "base"), ("calib", "base", "head"),
            ("calib", "head", "base"), ("head", "base", "calib"), ("base", "calib", "head"))
ORDERS_2 = (("base", "head"), ("head", "base"))
MIN_ROUNDS = 6  # the fewest pairs with a signed-rank interval at 95 %


class CommandFailed(InputError):
    """The base or head command exited non-zero (or timed out): no verdict is possible."""


@dataclass
class SideSpec:
    name: str
    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    ref: str = ""
    commit: str = ""


@dataclass
class RunPlan:
    runs: int = 10
    warmup: int = 1
    max_runs: int = 60
    max_time: float = 300.0
    threshold: float = 0.05
    confidence: float = 0.95
    calibrate: bool = True
    method: str = "rusage"
    fail_on: str = "regressed"
    timeout: float | None = None  # per run; default: what is left of max_time
    metrics: list[MetricSpec] = field(default_factory=list)
    json_metrics: bool = False
    cgroup_root: str = CGROUP_ROOT


def parse_metric_option(text: str) -> MetricSpec:
    """``NAME=REGEX[:higher|lower]``: the first group (or the whole match) of REGEX in stdout, as a number."""
    from obskit.errors import UsageError

    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not rest:
        raise UsageError(f"bad --metric {text[:60]!r}", "use NAME=REGEX[:higher|lower], e.g. 'rps=([0-9.]+) req/s:higher'")
    if not re.fullmatch(r"[A-Za-z_][\w.\-/]*", name) or name in BUILTIN_METRICS:
        raise UsageError(f"bad --metric name {name[:40]!r}",
                         "a name of letters, digits, _ . - / that is not wall, cpu or rss")
    higher = False
    for suffix, h in ((":higher", True), (":lower", False)):
        if rest.endswith(suffix):
            rest, higher = rest[: -len(suffix)], h
            break
    try:
        re.compile(rest)
    except re.error as e:
        raise UsageError(f"bad --metric regex for {name}: {e}", "check the regular expression") from None
    return MetricSpec(name, "", higher, rest)


def _number(text: str) -> float | None:
    try:
        v = float(text.replace(",", "").strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def extract_metrics(stdout: str, specs: list[MetricSpec], json_lines: bool) -> tuple[dict[str, float], dict[str, bool]]:
    """The command's own figures from its stdout; also the direction JSON lines declare."""
    found: dict[str, float] = {}
    directions: dict[str, bool] = {}
    for spec in specs:
        m = re.search(spec.regex, stdout, re.MULTILINE)
        if m:
            v = _number(m.group(1) if m.groups() else m.group(0))
            if v is not None:
                found[spec.name] = v
    if json_lines:
        for line in stdout.splitlines():
            line = line.strip()
            if not line.startswith("{") or len(line) > 65536:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if isinstance(obj.get("name"), str) and isinstance(obj.get("value"), (int, float)):
                items = [(obj["name"], obj["value"])]
                if obj.get("direction") in ("higher", "lower"):
                    directions[obj["name"]] = obj["direction"] == "higher"
            else:
                items = [(k, v) for k, v in obj.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            for k, v in items:
                if k not in BUILTIN_METRICS and math.isfinite(float(v)) and len(k) <= 100:
                    found[str(k)] = float(v)
    return found, directions


def evaluate(name: str, runs: list[Run], specs: list[MetricSpec], plan: RunPlan) -> BenchmarkResult:
    """Verdicts of every metric from the recorded runs (deterministic: same runs, same verdicts)."""
    out = BenchmarkResult(name)
    # Only complete rounds: the analysis pairs the runs of one round.
    sides_needed = {"base", "head", "calib"} if plan.calibrate else {"base", "head"}
    rounds: dict[int, set[str]] = {}
    for r in runs:
        if r.round >= 0:
            rounds.setdefault(r.round, set()).add(r.side)
    complete = {k for k, v in rounds.items() if sides_needed <= v}
    by_side: dict[str, list[Run]] = {"base": [], "head": [], "calib": []}
    for r in sorted(runs, key=lambda r: (r.round, r.position)):
        if r.round in complete and r.side in by_side:
            by_side[r.side].append(r)

    def values(side: str, metric: str) -> list[float]:
        vals: list[float] = []
        for r in by_side[side]:
            v = r.metrics.get(metric) if metric not in BUILTIN_METRICS else getattr(r, metric)
            if v is not None:
                vals.append(float(v))
        return vals

    all_specs = [MetricSpec(m, u) for m, u in BUILTIN_METRICS.items()] + specs
    for spec in all_specs:
        b, h, c = values("base", spec.name), values("head", spec.name), values("calib", spec.name)
        if not b and not h:
            continue
        out.metrics.append(verdict_for(spec, b, h, c or None, plan.threshold, plan.confidence, paired=True))
    return out


def verdict_for(spec: MetricSpec, base: list[float], head: list[float], calib: list[float] | None,
                threshold: float, confidence: float, *, paired: bool = False,
                drift: float | None = None) -> MetricVerdict:
    """The verdict of one metric; ``paired``: base[i], head[i] and calib[i] ran in the same round.
    Unpaired (two separate runs): block intervals, and the floor is ``drift``, how far the
    runs of these files wandered within themselves (``stats.drift_floor``)."""
    if paired:
        iv = stats.paired_interval(base, head, confidence=confidence)
    else:
        iv = stats.unpaired_interval(base, head, confidence=confidence)
    if calib:
        floor, floor_method = stats.floor_from_aa(base, calib, confidence=confidence, paired=paired), "aa"
    elif not paired:
        floor, floor_method = drift, "drift"
    else:
        floor = stats.floor_from_split(base, confidence=confidence, paired=paired)
        floor_method = "split-half"
    if floor is None:
        floor_method = "none"
    v = stats.decide(iv, threshold=threshold, floor=floor, higher_is_better=spec.higher_is_better)
    note = "" if iv.lo is not None else f"fewer than {stats.MIN_SAMPLES} samples a side: no interval"
    return MetricVerdict(spec.name, spec.unit, spec.higher_is_better,
                         stats.median(base) if base else None, stats.median(head) if head else None,
                         iv.ratio if math.isfinite(iv.ratio) else None, iv.lo, iv.hi, iv.method, floor,
                         floor_method, len(base), len(head), v, note)


def _fail(side: SideSpec, m: Measurement, what: str) -> CommandFailed:
    from obskit.inert import inert

    text = m.stderr_tail.strip()
    if len(text) > 1500:  # keep whole lines only
        text = text[-1500:].partition("\n")[2]
    tail = inert(text, multiline=True)
    last = tail.splitlines()[-1] if tail else ""
    msg = f"the {side.name} command {what}"
    if last:
        msg += f": {last[:200]}"
    err = CommandFailed(msg, "fix the command (run it by hand in its directory); no verdict without both sides")
    err.stderr_tail = tail  # type: ignore[attr-defined]
    err.side = side.name  # type: ignore[attr-defined]
    return err


def compare_commands(base: SideSpec, head: SideSpec, plan: RunPlan, machine: Machine, *,
                     progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run both commands interleaved until every metric is decided or the budget is spent."""
    from obskit.redact import redact_argv

    say = progress or (lambda _msg: None)
    series = {"base": base, "head": head}
    if plan.calibrate:
        series["calib"] = SideSpec("calib", base.argv, base.cwd, base.env, base.ref, base.commit)
    specs = list(plan.metrics)
    keep_stdout = bool(specs) or plan.json_metrics
    settings = Settings(plan.threshold, plan.confidence, plan.runs, plan.warmup, plan.max_runs, plan.max_time,
                        plan.calibrate, plan.method, plan.fail_on)
    res = BenchResult("commands", settings, machine,
                      sides=[Side(s.name, redact_argv(s.argv), s.cwd or os.getcwd(), s.ref, s.commit)
                             for s in series.values()])
    start = time.monotonic()
    known = {s.name for s in specs}
    orders = ORDERS_3 if plan.calibrate else ORDERS_2

    def one(name: str, rnd: int, pos: int) -> float:
        spec = series[name]
        left = plan.max_time - (time.monotonic() - start)
        timeout = plan.timeout if plan.timeout is not None else max(left, 10.0)
        m = run_once(spec.argv, cwd=spec.cwd, env=spec.env, method=plan.method, timeout=timeout,
                     cgroup_root=plan.cgroup_root, keep_stdout=keep_stdout)
        if m.timed_out:
            raise _fail(spec if name != "calib" else base, m, f"ran longer than {timeout:.0f}s and was killed")
        if m.exit_code != 0:
            how = f"exited with {m.exit_code}" if m.exit_code > 0 else f"was killed by signal {-m.exit_code}"
            raise _fail(spec if name != "calib" else base, m, how)
        found, directions = extract_metrics(m.stdout, specs, plan.json_metrics) if keep_stdout else ({}, {})
        for s in specs:
            if s.name not in found:
                raise InputError(f"--metric {s.name}: no match in the {spec.name} command's output (run {rnd + 1})",
                                 "check the regular expression against what the command prints on stdout")
        for k in found:
            if k not in known:
                known.add(k)
                specs.append(MetricSpec(k, "", directions.get(k, False)))
        res.runs.append(Run(name, rnd, pos, m.wall, m.cpu, m.rss, m.exit_code, found))
        return m.wall

    def run_round(rnd: int) -> None:
        for pos, name in enumerate(orders[rnd % len(orders)]):
            one(name, rnd, pos)

    try:
        for k in range(plan.warmup):
            for pos, name in enumerate(orders[k % len(orders)]):
                if name != "calib":
                    one(name, -1, pos)
        target = max(MIN_ROUNDS, min(plan.runs, plan.max_runs))
        plan.max_runs = max(plan.max_runs, MIN_ROUNDS)
        rnd = 0
        round_time = 0.0
        while True:
            while rnd < target:
                elapsed = time.monotonic() - start
                if rnd >= MIN_ROUNDS and elapsed + round_time > plan.max_time:
                    res.stop_reason = "max-time"
                    break
                t0 = time.monotonic()
                run_round(rnd)
                round_time = max(round_time * 0.7, time.monotonic() - t0) if rnd else time.monotonic() - t0
                rnd += 1
            res.rounds = rnd
            bench = evaluate("command", res.runs, specs, plan)
            res.benchmarks = [bench]
            open_ = [m.metric for m in bench.metrics if m.verdict == stats.INCONCLUSIVE]
            if res.stop_reason:
                break
            regressed = any(m.verdict == stats.REGRESSED for m in bench.metrics)
            if not open_ or (regressed and plan.fail_on == "regressed"):
                # (a confirmed regression decides the gate whatever the open metrics turn out to be)
                res.stop_reason = "decided"
                break
            if rnd >= plan.max_runs:
                res.stop_reason = "max-runs"
                break
            if time.monotonic() - start + round_time > plan.max_time:
                res.stop_reason = "max-time"
                break
            target = min(plan.max_runs, rnd + max(2, rnd // 2))
            say(f"{rnd} runs each: {', '.join(open_)} undecided; running {target - rnd} more rounds")
    except KeyboardInterrupt:
        res.stop_reason = "interrupted"
        res.rounds = max([r.round + 1 for r in res.runs] + [0])
        res.benchmarks = [evaluate("command", res.runs, specs, plan)]
        res.warnings.append("interrupted: verdicts from the rounds completed so far")
    res.elapsed = time.monotonic() - start
    return res
