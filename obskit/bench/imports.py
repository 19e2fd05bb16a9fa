"""`bench compare BASE.json HEAD.json`: results other tools already produce, matched by name.

- pytest-benchmark ``--benchmark-json`` files: the raw per-round times when the run was saved
  with ``--benchmark-save-data``, else only the summary statistics (a verdict from the ratio of
  medians against the threshold, with a warning that no interval is possible);
- pyperf JSON (``-o``, also ``.json.gz``): every value of every worker run, warm-ups left out;
- obskit's own ``--json`` documents (``obskit.bench/1``): the head side of each benchmark (its
  base side too when the other file is the same document).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from obskit.bench import stats
from obskit.bench.model import BenchmarkResult, MetricSpec, MetricVerdict
from obskit.errors import InputError
from obskit.safefile import read_input

MAX_FILE = 256 << 20


@dataclass
class Series:
    """One benchmark × metric of one file: raw values, or only a summary median."""

    name: str
    metric: str
    unit: str
    higher_is_better: bool = False
    values: list[float] = field(default_factory=list)
    median: float | None = None  # when there are no raw values
    span: float | None = None  # seconds of measurement in one contiguous run (pytest-benchmark), if known


@dataclass
class Loaded:
    path: str
    kind: str  # pytest-benchmark | pyperf | obskit
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    base_series: dict[tuple[str, str], Series] = field(default_factory=dict)  # obskit documents only


def _finite(xs: Any) -> list[float]:
    return [float(x) for x in (xs if isinstance(xs, list) else [])
            if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]


def _obj(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def read_json(path: str) -> Any:
    data = read_input(path, limit=MAX_FILE)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)[: MAX_FILE + 1]
        except (OSError, EOFError) as e:
            raise InputError(f"{path}: corrupt gzip data ({e})", "the file may be truncated") from None
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path} is not JSON ({str(e)[:80]})",
                         "give pytest-benchmark --benchmark-json, pyperf -o or obskit bench --json output") from None


def _pytest_benchmark(path: str, doc: dict[str, Any]) -> Loaded:
    out = Loaded(path, "pytest-benchmark")
    for b in doc.get("benchmarks") or []:
        if not isinstance(b, dict):
            continue
        name = str(b.get("fullname") or b.get("name") or "")
        st = _obj(b.get("stats"))
        if not name:
            continue
        data = _finite(st.get("data"))
        med = st.get("median")
        total = st.get("total")
        s = Series(name, "time", "s", False, data,
                   float(med) if isinstance(med, (int, float)) and math.isfinite(med) else None,
                   float(total) if isinstance(total, (int, float)) and math.isfinite(total) and total >= 0 else None)
        if s.values or s.median is not None:
            out.series[(name, "time")] = s
    return out


_PYPERF_UNITS = {"second": "s", "byte": "bytes", "integer": ""}


def _pyperf(path: str, doc: dict[str, Any]) -> Loaded:
    out = Loaded(path, "pyperf")
    common = _obj(doc.get("metadata"))
    for b in doc.get("benchmarks") or []:
        if not isinstance(b, dict):
            continue
        meta = {**common, **_obj(b.get("metadata"))}
        name = str(meta.get("name") or "")
        if not name:
            continue
        values: list[float] = []
        for run in b.get("runs") or []:
            if isinstance(run, dict):
                values.extend(_finite(run.get("values")))
        unit = _PYPERF_UNITS.get(str(meta.get("unit", "second")), "")
        if values:
            out.series[(name, "time" if unit == "s" else "value")] = Series(name, "time" if unit == "s" else "value",
                                                                           unit, False, values)
    return out


def _obskit(path: str, doc: dict[str, Any]) -> Loaded:
    from obskit.bench.model import BUILTIN_METRICS

    out = Loaded(path, "obskit")
    runs = [r for r in doc.get("runs") or [] if isinstance(r, dict) and isinstance(r.get("round"), int)
            and r["round"] >= 0]
    for b in doc.get("benchmarks") or []:
        if not isinstance(b, dict):
            continue
        name = str(b.get("name") or "")
        samples = _obj(b.get("samples"))
        for m in b.get("metrics") or []:
            if not isinstance(m, dict) or not isinstance(m.get("metric"), str):
                continue
            metric = m["metric"]
            higher = bool(m.get("higher_is_better"))
            unit = str(m.get("unit") or "")
            for side, target in (("head", out.series), ("base", out.base_series)):
                if doc.get("mode") == "files":
                    vals = _finite(_obj(samples.get(metric)).get(side))
                else:
                    vals = _finite([(r.get(metric) if metric in BUILTIN_METRICS else (r.get("metrics") or {}).get(metric))
                                    for r in runs if r.get("side") == side])
                med = m.get(f"{side}_median")
                target[(name, metric)] = Series(name, metric, unit, higher, vals,
                                                float(med) if isinstance(med, (int, float)) else None)
    return out


def load(path: str) -> Loaded:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not a benchmark result (a JSON object was expected)",
                         "give pytest-benchmark --benchmark-json, pyperf -o or obskit bench --json output")
    schema = doc.get("schema")
    if isinstance(schema, str) and schema.startswith("obskit.bench/"):
        if schema != "obskit.bench/1":
            raise InputError(f"{path}: unsupported document version {schema[:40]!r}", "re-run with this obskit")
        loaded = _obskit(path, doc)
    elif "machine_info" in doc and isinstance(doc.get("benchmarks"), list):
        loaded = _pytest_benchmark(path, doc)
    elif isinstance(doc.get("benchmarks"), list) and "version" in doc and "machine_info" not in doc:
        loaded = _pyperf(path, doc)
    else:
        raise InputError(f"{path}: not a result obskit reads",
                         "give pytest-benchmark --benchmark-json, pyperf -o or obskit bench --json output")
    if not loaded.series:
        raise InputError(f"{path}: no benchmarks with values in it", "was the benchmark run saved completely?")
    return loaded


# Separate runs that each measured less than this cannot show the machine's slow stretches
# (a busy sibling hyperthread, stolen CPU: 0.1-0.5 s at a time on a shared 2-core VM), and
# identical code then moved up to 1.7x between two 50 ms pytest-benchmark runs; such a
# comparison counts only a change beyond 1 + SHORT_RUN_FLOOR.
SHORT_RUN_S = 0.3
SHORT_RUN_FLOOR = 1.0


def compare_files(base_path: str, head_path: str, *, threshold: float, confidence: float,
                  warnings: list[str]) -> list[BenchmarkResult]:
    """Verdicts for every benchmark × metric found in both files (matched by name)."""
    from obskit.bench.runner import verdict_for

    base, head = load(base_path), load(head_path)
    same = os.path.realpath(base_path) == os.path.realpath(head_path)
    base_side = base.base_series if (base.kind == "obskit" and same) else base.series
    # The machine's noise in these two runs, per metric: how far any series wandered within its
    # own run (one noisy stretch slows every benchmark that ran in it, not only the one it was seen in).
    drift: dict[str, float] = {}
    for series in (base_side, head.series):
        for x in series.values():
            d = stats.drift_floor(x.values, confidence=confidence)
            if d is not None:
                drift[x.metric] = max(d, drift.get(x.metric, 0.0))
    results: dict[str, BenchmarkResult] = {}
    short_runs: list[tuple[float, str]] = []
    for key, h in head.series.items():
        b = base_side.get(key)
        if b is None:
            continue
        br = results.setdefault(h.name, BenchmarkResult(h.name))
        br.samples[h.metric] = {"base": b.values, "head": h.values}
        spec = MetricSpec(h.metric, h.unit, h.higher_is_better)
        if len(b.values) >= stats.MIN_SAMPLES and len(h.values) >= stats.MIN_SAMPLES:
            floor = drift.get(h.metric)
            spans = [x.span for x in (b, h) if x.span is not None]
            short = bool(spans) and min(spans) < SHORT_RUN_S
            if short:
                floor = max(floor or 0.0, SHORT_RUN_FLOOR)
            mv = verdict_for(spec, b.values, h.values, None, threshold, confidence, drift=floor)
            if short:
                mv.floor_method = "short-run"
                if mv.verdict == stats.UNCHANGED:
                    mv.verdict = stats.INCONCLUSIVE  # no more sure of "no change" than of a change
                mv.note = (f"a run measured {min(spans) * 1e3:.0f} ms: too short to tell a change from a slow "
                           f"stretch of the machine, so only a change beyond {1 + SHORT_RUN_FLOOR:.0f}x counts")
                short_runs.append((min(spans), h.name))
            br.metrics.append(mv)
            continue
        mb = stats.median(b.values) if b.values else b.median
        mh = stats.median(h.values) if h.values else h.median
        if mb is None or mh is None:
            continue
        ratio = mh / mb if mb > 0 else math.inf
        v = stats.decide_point(ratio, threshold=threshold, higher_is_better=h.higher_is_better)
        note = "no raw samples: verdict from the medians alone, no interval possible"
        br.metrics.append(MetricVerdict(h.metric, h.unit, h.higher_is_better, mb, mh,
                                        ratio if math.isfinite(ratio) else None, None, None, "none", None, "none",
                                        len(b.values), len(h.values), v, note))
        msg = f"{h.name}: {note} (save raw data: pytest --benchmark-save-data)"
        if msg not in warnings:
            warnings.append(msg)
    if short_runs:
        span, name = min(short_runs)
        who = name if len(short_runs) == 1 else f"{len(short_runs)} benchmarks (the shortest, {name})"
        warnings.append(f"{who}: a run measured {span * 1e3:.0f} ms, too short to tell a change from a slow stretch "
                        f"of the machine, so only a change beyond {1 + SHORT_RUN_FLOOR:.0f}x counts (measure longer: "
                        "pytest --benchmark-max-time=1, or compare interleaved with `obskit bench`)")
    only_base = sorted({k[0] for k in base_side} - {k[0] for k in head.series})
    only_head = sorted({k[0] for k in head.series} - {k[0] for k in base_side})
    if only_base:
        warnings.append(f"only in {base_path}: {', '.join(only_base[:10])}{' …' if len(only_base) > 10 else ''}")
    if only_head:
        warnings.append(f"only in {head_path}: {', '.join(only_head[:10])}{' …' if len(only_head) > 10 else ''}")
    if not results:
        raise InputError(f"no benchmark of {head_path} has a match by name in {base_path}",
                         "compare results of the same suite")
    return list(results.values())
