"""The result document of `obskit bench compare` (``obskit.bench/1``): every run, every verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# The metrics obskit measures itself, with their unit; all are "lower is better".
BUILTIN_METRICS: dict[str, str] = {"wall": "s", "cpu": "s", "rss": "bytes"}


@dataclass
class MetricSpec:
    name: str
    unit: str = ""
    higher_is_better: bool = False
    regex: str = ""  # --metric NAME=REGEX; empty for built-ins and JSON-lines metrics


@dataclass
class Side:
    name: str  # base | head | calib (a second base series for the A/A noise floor)
    argv: list[str]  # redacted for the document
    cwd: str = ""
    ref: str = ""  # git ref of --base-ref, and the commit it resolved to
    commit: str = ""


@dataclass
class Run:
    side: str
    round: int  # 0-based; -1 for warm-up runs (not used in any verdict)
    position: int  # order within its round
    wall: float
    cpu: Optional[float]
    rss: Optional[int]
    exit_code: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class MetricVerdict:
    metric: str
    unit: str
    higher_is_better: bool
    base_median: Optional[float]
    head_median: Optional[float]
    ratio: Optional[float]  # head / base
    ci_low: Optional[float]
    ci_high: Optional[float]
    ci_method: str
    noise_floor: Optional[float]  # ± half-width of the A/A interval at the same number of runs
    floor_method: str  # aa | split-half | drift | short-run | none
    n_base: int
    n_head: int
    verdict: str  # regressed | improved | unchanged | inconclusive
    note: str = ""


@dataclass
class WhereFunction:
    name: str
    file: str
    line: int
    base_share: float  # self share of samples in base
    head_share: float
    delta: float  # head_share - base_share
    base_time: Optional[float] = None  # seconds a run: share x the side's median CPU (or wall) time
    head_time: Optional[float] = None
    time_delta: Optional[float] = None  # head_time - base_time: what ranks the functions


@dataclass
class WhereReport:
    """Where the time went: profiles of a few extra runs of each side after a confirmed regression."""

    runs_per_side: int
    rate: int
    base_samples: int
    head_samples: int
    time_metric: str = "cpu"  # the measured median each side's shares are scaled by
    grown: list[WhereFunction] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchmarkResult:
    name: str
    metrics: list[MetricVerdict] = field(default_factory=list)
    # files mode: the raw values read from each file, per metric (commands mode: see BenchResult.runs)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[str]:
        return [m.verdict for m in self.metrics]


@dataclass
class Machine:
    cpu_model: str = ""
    cpus: int = 0
    load: list[float] = field(default_factory=list)
    governor: str = ""
    python: str = ""
    platform: str = ""
    kernel: str = ""


@dataclass
class Settings:
    threshold: float
    confidence: float
    runs: int
    warmup: int
    max_runs: int
    max_time: float
    calibrate: bool
    method: str  # cgroup-v1 | rusage (how CPU and peak memory were measured) | files
    fail_on: str


@dataclass
class BenchResult:
    SCHEMA = "obskit.bench/1"

    mode: str  # commands | files
    settings: Settings
    machine: Machine
    sides: list[Side] = field(default_factory=list)
    benchmarks: list[BenchmarkResult] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    rounds: int = 0
    elapsed: float = 0.0
    stop_reason: str = ""  # decided | max-runs | max-time | files
    where: Optional[WhereReport] = None
    warnings: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # files mode: BASE.json, HEAD.json

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("regressed", "improved", "unchanged", "inconclusive"), 0)
        for b in self.benchmarks:
            for m in b.metrics:
                out[m.verdict] = out.get(m.verdict, 0) + 1
        return out

    @property
    def verdict(self) -> str:
        c = self.counts()
        for v in ("regressed", "inconclusive", "improved"):
            if c.get(v):
                return v
        return "unchanged"

