"""`obskit top`: sampled top functions beside process stats and the container's CPU throttling.

A :class:`TopSession` drives the shared :class:`obskit.profile.sampler.LiveSampler`
(which applies the safe-by-default sampling policy) and reads process stats (psutil)
and the cgroup's ``cpu.stat`` at the same instants, so each :class:`TopWindow` pairs
"where the time went" with "how much CPU the process got and how often it was throttled".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from obskit.errors import ObskitError, TargetExited
from obskit.proc import ProcFS


@dataclass
class TopFunction:
    name: str
    file: str
    line: int
    self_share: float  # of the window's samples
    total_share: float
    self_samples: int
    total_samples: int


@dataclass
class ProcessStats:
    pid: int
    cpu_percent: float | None  # 100 = one core, over the window
    rss_bytes: int | None
    threads: int | None
    fds: int | None
    exited: bool = False


@dataclass
class CpuThrottle:
    """CFS bandwidth control of the target's cgroup over the window (only when a quota is set)."""

    cgroup_dir: str
    version: int
    quota_cpus: float
    periods: int  # enforcement periods elapsed in the window
    throttled_periods: int
    throttled_s: float
    throttled_ratio: float | None  # throttled_periods / periods


@dataclass
class TopWindow:
    SCHEMA = "obskit.top/1"

    pid: int
    subprocesses: bool
    started_at: float
    duration_s: float
    samples: int
    functions: list[TopFunction]
    processes: list[ProcessStats]
    cpu_percent: float | None  # all listed processes together
    rss_bytes: int | None
    throttle: CpuThrottle | None
    quota_note: str
    sampler: dict[str, Any] = field(default_factory=dict)
    target_exited: bool = False


class Sampler(Protocol):
    accounting: Any

    def start(self) -> None: ...
    def collect(self) -> Any: ...
    def stop(self) -> Any: ...


# -- cgroup CPU throttling ------------------------------------------------------------------------
@dataclass
class _CpuCgroup:
    directory: Path
    version: int
    quota_cpus: float | None


def find_cpu_cgroup(pid: int, proc_root: str = "/proc", fs_root: str = "/") -> _CpuCgroup | None:
    """The directory holding the target's cpu.stat and its quota (v1 ``cpu`` controller or v2)."""
    from obskit.quota import cgroups

    try:
        cg_text = Path(proc_root, str(pid), "cgroup").read_text()
        mi_text = Path(proc_root, "self", "mountinfo").read_text()
    except OSError:
        return None
    found = cgroups.locate(cg_text, mi_text, cgroups.Roots(proc=proc_root, fs=fs_root), controllers=("cpu",))
    h = found.get("cpu")
    if h is None or not h.visible:
        return None
    # The effective quota is the smallest one on the way up (a pod's limit sits on a parent directory).
    quota: float | None = None
    leaf = Path(h.levels[0])
    for level in h.levels:
        q = _quota_cpus(Path(level), h.version)
        if q is not None and (quota is None or q < quota):
            quota = q
    return _CpuCgroup(leaf, h.version, quota)


def _quota_cpus(d: Path, version: int) -> float | None:
    from obskit.quota import cgroups

    if version == 1:
        q = cgroups.read_int(d / "cpu.cfs_quota_us")
        p = cgroups.read_int(d / "cpu.cfs_period_us")
        return q / p if q is not None and q > 0 and p else None
    parsed = cgroups.parse_cpu_max(cgroups.read_text(d / "cpu.max"))
    if parsed is None or parsed[0] is None:
        return None
    return parsed[0] / parsed[1]


def read_cpu_stat(d: Path, version: int) -> tuple[int, int, float] | None:
    """(nr_periods, nr_throttled, throttled seconds) from cpu.stat, or None."""
    from obskit.quota import cgroups

    stat = cgroups.read_keyed(d / "cpu.stat")
    if "nr_periods" not in stat:
        return None
    throttled = stat.get("throttled_time", 0) / 1e9 if version == 1 else stat.get("throttled_usec", 0) / 1e6
    return stat["nr_periods"], stat.get("nr_throttled", 0), throttled


# -- the session --------------------------------------------------------------------------------------
class TopSession:
    def __init__(self, pid: int, *, subprocesses: bool = False, proc_root: str = "/proc",
                 sampler: Sampler | None = None, limit: int = 25,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.pid = pid
        self.subprocesses = subprocesses
        self.fs = ProcFS(proc_root)
        self.limit = limit
        self._sampler = sampler
        self._on_warning = on_warning
        self._procs: dict[int, Any] = {}
        self._cpu_before: dict[int, float] = {}
        self._t_before = 0.0
        self._started_at = 0.0
        self._cg = find_cpu_cgroup(pid, proc_root)
        self._cg_before = read_cpu_stat(self._cg.directory, self._cg.version) if self._cg else None
        self.exited = False
        self.total: Any = None  # every window merged: the live view's cumulative columns

    def cumulative_functions(self) -> list[TopFunction]:
        if self.total is None:
            return []
        return [TopFunction(f.name, f.file, f.line, round(f.self_share, 4), round(f.total_share, 4), f.self_count,
                            f.total_count) for f in self.total.top_functions(None)]

    def start(self) -> None:
        if self._sampler is None:
            from obskit.profile.sampler import LiveSampler, SamplerConfig

            self._sampler = LiveSampler(self.pid, SamplerConfig(subprocesses=self.subprocesses,
                                                                proc_root=str(self.fs.root)),
                                        on_warning=self._on_warning)
        self._started_at = time.time()
        self._prime_stats()
        self._sampler.start()

    def window(self) -> TopWindow:
        """Everything since the previous window (or since start)."""
        assert self._sampler is not None
        return self._build(self._samples(self._sampler.collect))

    def stop(self) -> TopWindow:
        assert self._sampler is not None
        return self._build(self._samples(self._sampler.stop))

    def _samples(self, take: Callable[[], Any]) -> Any:
        """What ``take`` returns; None once the target has exited."""
        try:
            return take()
        except TargetExited:
            self.exited = True
            return None

    def poll_exit(self) -> bool:
        if not self.fs.exists(self.pid):
            self.exited = True
        return self.exited

    def sampler_accounting(self) -> dict[str, Any]:
        from obskit.output import to_jsonable

        acc = getattr(self._sampler, "accounting", None)
        out = to_jsonable(acc) if acc is not None else {}
        return out if isinstance(out, dict) else {"accounting": out}

    # -- internals ---------------------------------------------------------------------------------
    def _pids(self) -> list[int]:
        pids = [self.pid]
        if self.subprocesses:
            try:
                pids += self.fs.descendants(self.pid)
            except ObskitError:
                pass
        return pids

    def _prime_stats(self) -> None:
        import psutil

        self._t_before = time.monotonic()
        for pid in self._pids():
            try:
                p = self._procs.get(pid) or psutil.Process(pid)
                t = p.cpu_times()
            except (psutil.Error, OSError):
                continue
            self._procs[pid] = p
            self._cpu_before[pid] = t.user + t.system

    def _stats(self) -> tuple[list[ProcessStats], float]:
        import psutil

        now = time.monotonic()
        elapsed = max(now - self._t_before, 1e-6)
        out: list[ProcessStats] = []
        for pid in self._pids():
            p = self._procs.get(pid)
            try:
                if p is None:
                    p = psutil.Process(pid)
                    self._procs[pid] = p
                with p.oneshot():
                    t = p.cpu_times()
                    cpu_now = t.user + t.system
                    rss = p.memory_info().rss
                    threads = p.num_threads()
                    try:
                        fds: int | None = p.num_fds()
                    except (psutil.AccessDenied, AttributeError):
                        fds = None
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                out.append(ProcessStats(pid, None, None, None, None, exited=True))
                if pid == self.pid:
                    self.exited = True
                continue
            except (psutil.Error, OSError):
                continue
            before = self._cpu_before.get(pid)
            cpu = round(max(0.0, (cpu_now - before) / elapsed * 100), 1) if before is not None else None
            self._cpu_before[pid] = cpu_now
            out.append(ProcessStats(pid, cpu, rss, threads, fds))
        self._t_before = now
        for gone in set(self._procs) - set(self._pids()):
            self._procs.pop(gone, None)
            self._cpu_before.pop(gone, None)
        return out, elapsed

    def _throttle(self) -> tuple[CpuThrottle | None, str]:
        if self._cg is None:
            return None, "no cgroup cpu controller visible"
        if self._cg.quota_cpus is None:
            return None, "no CPU quota on the target's cgroup"
        now = read_cpu_stat(self._cg.directory, self._cg.version)
        before, self._cg_before = self._cg_before, now
        if now is None or before is None:
            return None, f"{self._cg.directory}/cpu.stat not readable"
        periods = max(0, now[0] - before[0])
        throttled = max(0, now[1] - before[1])
        return (
            CpuThrottle(str(self._cg.directory), self._cg.version, round(self._cg.quota_cpus, 3), periods, throttled,
                        round(max(0.0, now[2] - before[2]), 4), round(throttled / periods, 3) if periods else None),
            f"quota {self._cg.quota_cpus:g} CPUs",
        )

    def _build(self, profile: Any) -> TopWindow:
        if getattr(self._sampler, "end_reason", "") == "target-exited":
            self.exited = True
        stats, elapsed = self._stats()
        throttle, note = self._throttle()
        functions: list[TopFunction] = []
        samples = 0
        if profile is not None:
            if self.total is None:
                from obskit.profile.model import Profile

                self.total = Profile()
            self.total.merge(profile)
            samples = int(profile.total_samples)
            functions = [TopFunction(f.name, f.file, f.line, round(f.self_share, 4), round(f.total_share, 4),
                                     f.self_count, f.total_count) for f in profile.top_functions(self.limit)]
        live = [s for s in stats if not s.exited]
        cpus = [s.cpu_percent for s in live if s.cpu_percent is not None]
        rss = [s.rss_bytes for s in live if s.rss_bytes is not None]
        started = self._started_at
        self._started_at = time.time()
        return TopWindow(
            pid=self.pid,
            subprocesses=self.subprocesses,
            started_at=started,
            duration_s=round(elapsed, 3),
            samples=samples,
            functions=functions,
            processes=stats,
            cpu_percent=round(sum(cpus), 1) if cpus else None,
            rss_bytes=sum(rss) if rss else None,
            throttle=throttle,
            quota_note=note,
            sampler=self.sampler_accounting(),
            target_exited=self.exited,
        )
