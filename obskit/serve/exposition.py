"""Snapshots as Prometheus text, rendered once per snapshot with prometheus-client.

Series are grouped by the ``--by`` labels (``role``, ``service``, ``pid``; ``container`` and
``pod`` are added where known).  Grouping keeps counters monotonic across worker recycling: a
process that exits leaves its last value in its group's total, and a group whose processes have
all exited is dropped (so are its counters: Prometheus sees a new series if it comes back).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from obskit.serve.collect import GC_BUCKETS, CgroupSample, ProcSample, Snapshot

BY_CHOICES = ("role", "service", "pid")
DEFAULT_BY = ("role", "service")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Group = tuple[str, ...]


def parse_by(text: str) -> tuple[str, ...]:
    """``role,service`` → ("role", "service"); raises ValueError naming a label that is not offered."""
    parts = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [p for p in parts if p not in BY_CHOICES]
    if bad or not parts:
        raise ValueError(f"--by takes a comma-separated list of {', '.join(BY_CHOICES)} (got {text!r})")
    return parts


class _Acc:
    """Per-group counters that stay monotonic while the keys below them (PIDs, cgroups) come and go."""

    def __init__(self) -> None:
        self.carried: dict[tuple[str, Group], float] = {}
        self.last: dict[tuple[str, Any], tuple[Group, float]] = {}
        self.seen: set[tuple[str, Any]] = set()

    def update(self, metric: str, group: Group, key: Any, value: float) -> None:
        k = (metric, key)
        prev = self.last.get(k)
        if prev is not None and prev[0] != group:  # moved group (a role changed): the old group keeps it
            self.carried[(metric, prev[0])] = self.carried.get((metric, prev[0]), 0.0) + prev[1]
        self.last[k] = (group, max(value, prev[1]) if prev is not None and prev[0] == group else value)
        self.seen.add(k)

    def finish(self, live_groups: set[Group]) -> dict[tuple[str, Group], float]:
        for k in [k for k in self.last if k not in self.seen]:
            group, value = self.last.pop(k)
            self.carried[(k[0], group)] = self.carried.get((k[0], group), 0.0) + value
        self.carried = {k: v for k, v in self.carried.items() if k[1] in live_groups}
        totals: dict[tuple[str, Group], float] = dict(self.carried)
        for (metric, _key), (group, value) in self.last.items():
            totals[(metric, group)] = totals.get((metric, group), 0.0) + value
        self.seen = set()
        return totals


@dataclass
class _Data:
    label_names: list[str]
    groups: dict[Group, list[ProcSample]] = field(default_factory=dict)
    totals: dict[tuple[str, Group], float] = field(default_factory=dict)
    snapshot: Snapshot | None = None


class Renderer:
    """Turns snapshots into exposition bytes; keeps the counter state between snapshots."""

    def __init__(self, by: Iterable[str] = DEFAULT_BY) -> None:
        from prometheus_client import CollectorRegistry

        self.by = tuple(by)
        self.label_names = [*self.by, "container", "pod"]
        self._acc = _Acc()
        self._data = _Data(self.label_names)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_SnapshotCollector(self))  # type: ignore[arg-type]

    def group_of(self, p: ProcSample) -> Group:
        values = {"role": p.role, "service": p.service, "pid": str(p.pid)}
        return (*(values[b] for b in self.by), p.container, p.pod)

    def render(self, snap: Snapshot) -> bytes:
        from prometheus_client import generate_latest

        groups: dict[Group, list[ProcSample]] = {}
        for p in snap.procs:
            groups.setdefault(self.group_of(p), []).append(p)
        acc = self._acc
        for g, procs in groups.items():
            levels_seen: set[str] = set()
            for p in procs:
                acc.update("cpu", g, p.pid, p.cpu_seconds)
                if p.gc is not None:
                    for gen, n in enumerate(p.gc.collections):
                        acc.update(f"gc{gen}", g, p.pid, n)
                    for i, n in enumerate(p.gc.buckets):
                        acc.update(f"gcb{i}", g, p.pid, n)
                    acc.update("gc_count", g, p.pid, p.gc.count)
                    acc.update("gc_sum", g, p.pid, p.gc.total_s)
                cg = snap.cgroups.get(p.cgroup_key)
                if cg is None:
                    continue
                # Throttling counts only where a quota binds (elsewhere cpu.stat says nothing useful).
                if cg.cpu_quota_cores is not None and cg.throttle_level and cg.throttle_level not in levels_seen \
                        and cg.periods is not None:
                    levels_seen.add(cg.throttle_level)
                    acc.update("periods", g, cg.throttle_level, cg.periods)
                    acc.update("throttled", g, cg.throttle_level, cg.throttled_periods or 0)
                    acc.update("throttled_s", g, cg.throttle_level, cg.throttled_seconds or 0.0)
                if cg.oom_level and ("oom", cg.oom_level) not in levels_seen and cg.oom_kills is not None:
                    levels_seen.add(cg.oom_level)
                    acc.update("oom", g, ("oom", cg.oom_level), cg.oom_kills)
        self._data = _Data(self.label_names, groups, acc.finish(set(groups)), snap)
        return generate_latest(self._registry)  # type: ignore[arg-type]


class _SnapshotCollector:
    def __init__(self, renderer: Renderer) -> None:
        self.r = renderer

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        d = self.r._data
        names = d.label_names
        snap = d.snapshot

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=names)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=names)

        procs = gauge("obskit_processes", "Python processes in this series (a gunicorn with 3 workers: 1 master + 3).")
        cpu = counter("obskit_process_cpu_seconds", "User and system CPU time of the processes.")
        rss = gauge("obskit_process_resident_memory_bytes", "Resident set size (RSS), summed over the processes.")
        pss = gauge("obskit_process_pss_bytes", "Proportional set size (shared pages split between their users).")
        uss = gauge("obskit_process_uss_bytes", "Unique set size: private pages, freed if the processes exited.")
        threads = gauge("obskit_process_threads", "Threads of the processes.")
        fds = gauge("obskit_process_open_fds", "Open file descriptors of the processes.")
        quota = gauge("obskit_cgroup_cpu_quota_cores", "Effective CPU quota in cores: the smallest over every cgroup level.")
        mlimit = gauge("obskit_cgroup_memory_limit_bytes", "Effective memory limit: the smallest over every cgroup level.")
        musage = gauge("obskit_cgroup_memory_usage_bytes", "Memory charged to the cgroup whose limit binds (page cache included).")
        headroom = gauge("obskit_cgroup_memory_headroom_bytes", "Memory limit minus the usage charged against it.")
        periods = counter("obskit_cgroup_cpu_periods", "CFS bandwidth periods of the cgroup whose quota binds.")
        throttled = counter("obskit_cgroup_cpu_throttled_periods", "Periods in which the cgroup was throttled.")
        throttled_s = counter("obskit_cgroup_cpu_throttled_seconds", "Time the cgroup's threads were throttled.")
        oom = counter("obskit_cgroup_oom_kills", "Processes killed by the OOM killer in the memory cgroup.")
        gc_col = CounterMetricFamily("obskit_python_gc_collections", "GC collections (needs the obskit agent in the target).",
                                     labels=[*names, "generation"])
        gc_hist = HistogramMetricFamily("obskit_python_gc_pause_seconds",
                                        "GC pause durations seen by the obskit agent (since obskit serve started).",
                                        labels=names)
        t = d.totals
        for g, plist in sorted(d.groups.items()):
            labels = list(g)
            procs.add_metric(labels, len(plist))
            cpu.add_metric(labels, t.get(("cpu", g), 0.0))
            rss.add_metric(labels, sum(p.rss_bytes or 0 for p in plist))
            if any(p.pss_bytes is not None for p in plist):
                pss.add_metric(labels, sum(p.pss_bytes or 0 for p in plist))
                uss.add_metric(labels, sum(p.uss_bytes or 0 for p in plist))
            threads.add_metric(labels, sum(p.threads for p in plist))
            if any(p.fds is not None for p in plist):
                fds.add_metric(labels, sum(p.fds or 0 for p in plist))
            cgs: list[CgroupSample] = [c for c in (snap.cgroups.get(p.cgroup_key) for p in plist) if c] if snap else []
            quotas = [c.cpu_quota_cores for c in cgs if c.cpu_quota_cores is not None]
            if quotas:
                quota.add_metric(labels, min(quotas))
            limited = [c for c in cgs if c.memory_limit_bytes is not None]
            if limited:
                tight = min(limited, key=lambda c: c.memory_limit_bytes or 0)
                assert tight.memory_limit_bytes is not None
                mlimit.add_metric(labels, tight.memory_limit_bytes)
                if tight.memory_usage_bytes is not None:
                    musage.add_metric(labels, tight.memory_usage_bytes)
                    headroom.add_metric(labels, tight.memory_limit_bytes - tight.memory_usage_bytes)
            if ("periods", g) in t:
                periods.add_metric(labels, t[("periods", g)])
                throttled.add_metric(labels, t.get(("throttled", g), 0))
                throttled_s.add_metric(labels, t.get(("throttled_s", g), 0.0))
            if ("oom", g) in t:
                oom.add_metric(labels, t[("oom", g)])
            if ("gc_count", g) in t:
                for gen in range(3):
                    gc_col.add_metric([*labels, str(gen)], t.get((f"gc{gen}", g), 0))
                buckets = [(_le(b), t.get((f"gcb{i}", g), 0)) for i, b in enumerate(GC_BUCKETS)]
                buckets.append(("+Inf", t[("gc_count", g)]))
                gc_hist.add_metric(labels, buckets, t.get(("gc_sum", g), 0.0))
        yield from (procs, cpu, rss, pss, uss, threads, fds, quota, mlimit, musage, headroom, periods, throttled,
                    throttled_s, oom, gc_col, gc_hist)
        if snap is not None:
            svc = ["service", "role", "container", "pod"]
            workers = GaugeMetricFamily("obskit_service_workers", "Workers running under a master.", labels=svc)
            rec = GaugeMetricFamily("obskit_service_workers_recommended",
                                    "Workers the effective CPU quota sustains (the rule of `obskit quota`).", labels=svc)
            verdict = GaugeMetricFamily("obskit_service_workers_verdict",
                                        "-1: fewer workers than the quota sustains, 0: right, 1: more (oversubscribed).",
                                        labels=svc)
            by_pid = {p.pid: p for p in snap.procs}
            for s in snap.services:
                p = by_pid.get(s.master_pid)
                labels = [s.service, s.role, p.container if p else "", p.pod if p else ""]
                workers.add_metric(labels, s.workers)
                if s.recommended is not None:
                    rec.add_metric(labels, s.recommended)
                if s.verdict is not None:
                    verdict.add_metric(labels, s.verdict)
            yield from (workers, rec, verdict)


def _le(bound: float) -> str:
    return repr(float(bound))


def render_health(values: dict[str, tuple[str, str, float | dict[str, float]]]) -> bytes:
    """The small block rendered at scrape time: ``name -> (type, help, value | {label: value})``."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Health:
        def describe(self) -> list[Any]:
            return []

        def collect(self) -> Iterator[Any]:
            for name, (kind, doc, value) in values.items():
                if isinstance(value, dict):
                    fam: Any = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=["kind"])
                    for k, v in sorted(value.items()):
                        fam.add_metric([k], v)
                else:
                    fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, value=value)
                yield fam

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Health())  # type: ignore[arg-type]
    return generate_latest(reg)
