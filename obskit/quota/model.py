"""The `obskit quota` result: plain dataclasses, serialised as ``obskit.quota/1``."""

from __future__ import annotations

from dataclasses import dataclass, field

from obskit.cgroups import CpuLevel, MemLevel, Throttling


@dataclass
class Count:
    """A number and where it came from (``"129 = 2×64+1 where 64 is the host CPU count"``)."""

    value: int
    source: str  # cmdline | env | config | default | observed
    explanation: str

    @property
    def provenance(self) -> str:
        """The explanation with where an explicit value was set: "--workers 6 on the command line"."""
        where = {"cmdline": " on the command line", "env": " in the environment"}.get(self.source, "")
        head, sep, rest = self.explanation.partition(": ")
        return f"{head}{where}{sep}{rest}" if where else self.explanation


@dataclass
class CpuBudget:
    limit: float | None  # min over every visible level; None = no quota anywhere
    limiting_level: str | None
    levels: list[CpuLevel]
    host_cpus: int
    affinity: int  # CPUs the target may run on (sched_getaffinity / Cpus_allowed_list)
    cpuset: int | None  # cpuset.cpus.effective / cpuset.effective_cpus
    effective: float  # what the processes can really use: min(limit, affinity)
    shares: int | None  # v1 cpu.shares / v2 cpu.weight: a scheduling weight, never a budget
    rounding: dict[str, int]  # floor, ceil, automaxprocs, go125, nproc


@dataclass
class MemoryBudget:
    limit: int | None
    limiting_level: str | None
    levels: list[MemLevel]
    high: int | None
    swap_limit: int | None
    current: int | None
    peak: int | None
    working_set: int | None
    inactive_file: int | None
    anon: int | None
    file: int | None
    shmem: int | None
    oom_group: bool | None  # v2 memory.oom.group; None on v1 (a single process is killed)


@dataclass
class PidsBudget:
    limit: int | None
    current: int | None


@dataclass
class Evidence:
    window_s: float
    cpu_usage_cores: float | None  # over the window
    cpu_usage_of_limit: float | None
    cpu_usage_source: str | None  # "cgroup" (cpuacct/cpu.stat) or "processes" (Σ of members' CPU time)
    window: Throttling | None
    lifetime: Throttling | None
    throttle_ratio: float | None  # window, Δthrottled/Δperiods
    lifetime_throttle_ratio: float | None
    psi_scope: str | None  # "cgroup" or "system"
    psi: dict[str, dict[str, float]] = field(default_factory=dict)  # cpu/memory/io → some/full avg10
    memory_events: dict[str, int] = field(default_factory=dict)  # lifetime
    memory_events_delta: dict[str, int] = field(default_factory=dict)  # over the window


@dataclass
class Proc:
    pid: int
    ppid: int
    nspid: int | None  # PID inside the target's namespace (1 = the container's main process)
    name: str
    command: str
    role: str
    threads: int
    python_version: str | None
    cpu_cores: float | None  # CPU used over the window, in cores
    rss: int | None
    uss: int | None  # Private_Clean + Private_Dirty
    pss: int | None
    shared: int | None  # PSS - USS
    oom_score: int | None
    oom_score_adj: int | None
    env: dict[str, str] = field(default_factory=dict)  # only the knobs that size workers
    blas: list[str] = field(default_factory=list)  # BLAS/OpenMP libraries mapped


@dataclass
class ServiceMemory:
    master_uss: int | None
    worker_uss_median: int | None
    worker_uss_max: int | None
    shared: int | None  # Σ(PSS − USS) over the service: pages shared between its processes
    projected: int | None  # master + N × median private + shared, N = configured workers
    projected_worst: int | None  # the same with the largest worker
    formula: str


@dataclass
class Service:
    kind: str  # gunicorn | uvicorn | celery | pool | python
    master_pid: int
    command: str
    python_version: str | None
    workers: Count
    running_workers: int
    worker_pids: list[int]
    threads_per_worker: Count | None
    native_threads: Count | None  # BLAS/OpenMP threads per process
    worker_class: str | None = None
    preload: bool | None = None
    max_requests: int | None = None
    cpu_busy_workers: int = 0
    parallel_demand: int = 0  # workers × threads that can run at once
    memory: ServiceMemory | None = None
    recommended_workers: int | None = None
    recommended_by_cpu: int | None = None
    recommended_by_memory: int | None = None
    recommendation_formula: str = ""


@dataclass
class OomForecast:
    victim_pid: int | None
    victim_command: str | None
    oom_score: int | None
    visible_as_oomkilled: bool | None
    explanation: str


@dataclass
class Finding:
    id: str
    severity: str  # info | warn | error
    title: str
    detail: str
    formula: str = ""


@dataclass
class Recommendation:
    id: str
    setting: str  # the exact flag or env line
    applies_to: str
    formula: str
    reason: str


@dataclass
class CgroupPath:
    controller: str
    version: int
    cgroup_path: str
    directory: str
    visible_levels: int


@dataclass
class QuotaReport:
    SCHEMA = "obskit.quota/1"

    target_pid: int | None
    view: str  # "self" or "/proc/N/root"
    cgroup_version: str  # v1 | v2 | hybrid | none
    kernel: str | None
    paths: list[CgroupPath]
    cpu: CpuBudget
    memory: MemoryBudget
    pids: PidsBudget
    evidence: Evidence
    processes: list[Proc]
    services: list[Service]
    oom: OomForecast
    findings: list[Finding]
    recommendations: list[Recommendation]
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    collect_seconds: float = 0.0  # time spent reading, window excluded

    @property
    def worst(self) -> str:
        order = {"info": 0, "warn": 1, "error": 2}
        return max((f.severity for f in self.findings), key=lambda s: order[s], default="ok")
