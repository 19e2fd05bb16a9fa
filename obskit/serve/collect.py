"""One collection: every selected Python process, its cgroup limits and counters, its GC numbers.

Static facts of a process (command line, Python version, service name, container) are read once
per process (keyed by PID and start time); what changes (CPU, memory, threads, fds, cgroup
counters) is read every collection.  Cgroup limits are read once per cgroup per collection, so
three workers in one pod cost one set of cgroup reads.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from obskit import cgroups
from obskit.errors import ObskitError
from obskit.proc import (
    STAT_NUM_THREADS,
    STAT_PPID,
    STAT_STARTTIME,
    STAT_STIME,
    STAT_UTIME,
    ProcessFacts,
    ProcFS,
    classify_roles,
    container_ids,
    parse_status,
)

SCHEMA = "obskit.serve.snapshot/1"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
MAX_SERVICE = 64
AGENT_RETRY_S = 60.0  # a process without an agent is asked again after this long
SERVICE_ENV = ("OTEL_SERVICE_NAME", "SERVICE_NAME")
_APP_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.()]*$")
_CHILD_ROLES = ("mp-child", "fork-child")
_LAUNCHERS = ("gunicorn", "uvicorn", "celery", "hypercorn", "daphne", "granian", "waitress-serve")


@dataclass
class GcSample:
    collections: list[int]  # per generation, since the agent started
    pause_seconds: list[float]  # per generation, total
    buckets: list[int]  # cumulative counts per GC_BUCKETS bound (then +Inf = count)
    count: int
    total_s: float


@dataclass
class ProcSample:
    pid: int
    ppid: int
    role: str
    service: str
    container: str
    pod: str
    cgroup_key: str  # /proc/PID/cgroup text: processes with the same text share limits
    cpu_seconds: float
    rss_bytes: int | None
    pss_bytes: int | None
    uss_bytes: int | None
    threads: int
    fds: int | None
    gc: GcSample | None = None


@dataclass
class CgroupSample:
    cpu_quota_cores: float | None
    memory_limit_bytes: int | None
    memory_usage_bytes: int | None
    throttle_level: str | None
    periods: int | None
    throttled_periods: int | None
    throttled_seconds: float | None
    oom_level: str | None
    oom_kills: int | None


@dataclass
class ServiceSample:
    """A master and its workers, with what the CPU quota sustains (from the verdict callable)."""

    service: str
    role: str
    master_pid: int
    workers: int
    recommended: int | None
    verdict: int | None  # -1 fewer workers than the quota sustains, 0 right, 1 more


@dataclass
class Snapshot:
    taken_at: float
    duration_s: float
    procs: list[ProcSample] = field(default_factory=list)
    cgroups: dict[str, CgroupSample] = field(default_factory=dict)
    services: list[ServiceSample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count in this collection
    schema: str = SCHEMA


# (kind, running workers, effective CPU limit in cores or None) -> (recommended workers, verdict)
VerdictFn = Callable[[str, int, "float | None"], "tuple[int | None, int | None]"]


@dataclass
class _Known:
    start: str
    facts: ProcessFacts | None  # None: not a Python process
    service: str = ""


@dataclass
class _AgentState:
    client: object | None = None
    next_try: float = 0.0
    seq: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(GC_BUCKETS))
    count: int = 0
    total: float = 0.0


class Collector:
    """Collects snapshots; keeps per-process caches between collections (one thread at a time)."""

    def __init__(self, procfs: ProcFS, *, pids: list[int] | None = None, exclude: set[int] | None = None,
                 verdict: VerdictFn | None = None, agent: bool = True, agent_timeout: float = 1.0,
                 memory_detail: bool = True) -> None:
        self.fs = procfs
        self.only = set(pids) if pids else None
        self.exclude = set(exclude or ()) | {os.getpid()}
        self.verdict = verdict
        self.agent = agent
        self.agent_timeout = agent_timeout
        self.memory_detail = memory_detail
        self._known: dict[int, _Known] = {}
        self._cg: dict[str, cgroups.PidCgroups] = {}
        self._agents: dict[int, _AgentState] = {}

    # -- discovery -------------------------------------------------------------------------------
    def _selected(self, facts: dict[int, ProcessFacts], ppids: dict[int, int]) -> set[int]:
        """Every Python process, or those at or below the given PIDs (through wrappers: tini, `sh -c`, shims)."""
        if self.only is None:
            return set(facts)
        kids: dict[int, list[int]] = {}
        for pid, ppid in ppids.items():
            kids.setdefault(ppid, []).append(pid)
        chosen: set[int] = set()
        seen: set[int] = set()
        todo = list(self.only)
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            if p in facts:
                chosen.add(p)
            todo.extend(kids.get(p, []))
        return chosen

    def _static(self, pid: int, errors: dict[str, int]) -> tuple[ProcessFacts | None, list[str] | None]:
        try:
            st = self.fs.stat(pid)
        except (ObskitError, OSError):
            return None, None
        start = st[STAT_STARTTIME] if len(st) > STAT_STARTTIME else ""
        known = self._known.get(pid)
        if known is None or known.start != start:
            facts: ProcessFacts | None
            try:
                facts = self.fs.facts(pid)
            except (ObskitError, OSError, ValueError, IndexError):
                facts = None
            if facts is not None and not facts.is_python:
                facts = None
            known = _Known(start, facts)
            if facts is not None:
                known.service = self._service_name(pid, facts)
            self._known[pid] = known
        if known.facts is not None:
            known.facts.ppid = int(st[STAT_PPID])
            known.facts.role = "plain"
            known.facts.children = []
        return known.facts, st

    def _service_name(self, pid: int, facts: ProcessFacts) -> str:
        try:
            env = self.fs.environ(pid)
        except (ObskitError, OSError):
            env = {}
        for key in SERVICE_ENV:
            if env.get(key):
                return _clean(env[key])
        return service_from_cmdline(facts.cmdline)

    # -- one collection --------------------------------------------------------------------------
    def collect(self) -> Snapshot:
        t0 = time.monotonic()
        errors: dict[str, int] = {}
        pids = [p for p in self.fs.pids() if p not in self.exclude]
        facts: dict[int, ProcessFacts] = {}
        stats: dict[int, list[str]] = {}
        ppids: dict[int, int] = {}
        for pid in pids:
            f, st = self._static(pid, errors)
            if st is not None and len(st) > STAT_PPID and st[STAT_PPID].isdigit():
                ppids[pid] = int(st[STAT_PPID])
            if f is not None and st is not None:
                facts[pid] = f
                stats[pid] = st
        for gone in set(self._known) - set(pids):
            del self._known[gone]
            self._agents.pop(gone, None)
        classify_roles(facts)
        chosen = self._selected(facts, ppids)
        # A worker (or a multiprocessing/fork child) belongs to its master's service; a process merely
        # started by another Python program (a supervisor, a test runner) keeps its own.
        service_of: dict[int, str] = {}
        for pid in chosen:
            top = pid
            seen = 0
            while (facts[top].role.endswith("-worker") or facts[top].role in _CHILD_ROLES) \
                    and facts[top].ppid in facts and seen < 64:
                top = facts[top].ppid
                seen += 1
            known = self._known.get(top)
            service_of[pid] = known.service if known else ""
        snap = Snapshot(taken_at=time.time(), duration_s=0.0, errors=errors)
        for pid in sorted(chosen):
            try:
                sample = self._sample(pid, facts[pid], stats[pid], service_of.get(pid, ""), errors)
            except (ObskitError, OSError):  # it exited while being read
                errors["exited"] = errors.get("exited", 0) + 1
                continue
            if sample is None:
                continue
            snap.procs.append(sample)
            if sample.cgroup_key and sample.cgroup_key not in snap.cgroups:
                cg = self._cgroup(pid, sample.cgroup_key, errors)
                if cg is not None:
                    snap.cgroups[sample.cgroup_key] = cg
        self._cg = {k: v for k, v in self._cg.items() if k in snap.cgroups}
        snap.services = self._services(snap, facts)
        snap.duration_s = time.monotonic() - t0
        return snap

    def _sample(self, pid: int, f: ProcessFacts, st: list[str], service: str,
                errors: dict[str, int]) -> ProcSample | None:
        try:
            cpu = (int(st[STAT_UTIME]) + int(st[STAT_STIME])) / self.fs.clock_ticks
            threads = int(st[STAT_NUM_THREADS])
            rss = int(st[STAT_NUM_THREADS + 4]) * PAGE  # field 24: rss in pages
        except (IndexError, ValueError):
            errors["stat"] = errors.get("stat", 0) + 1
            return None
        pss = uss = None
        if self.memory_detail:
            try:
                rollup = parse_status(self.fs.read_text(pid, "smaps_rollup"))
                pss = _kb(rollup.get("Pss"))
                uss = (_kb(rollup.get("Private_Clean")) or 0) + (_kb(rollup.get("Private_Dirty")) or 0)
            except (ObskitError, OSError):
                errors["smaps"] = errors.get("smaps", 0) + 1
        try:
            cg_text = self.fs.read_text(pid, "cgroup")
        except (ObskitError, OSError):
            cg_text = ""
        container, pod = container_ids([ln for ln in cg_text.splitlines() if ln.strip()])
        sample = ProcSample(pid=pid, ppid=f.ppid, role=f.role, service=service, container=(container or "")[:12],
                            pod=pod or "", cgroup_key=cg_text, cpu_seconds=cpu, rss_bytes=rss, pss_bytes=pss,
                            uss_bytes=uss, threads=threads, fds=self.fs.fd_count(pid))
        if self.agent:
            sample.gc = self._gc(pid, errors)
        return sample

    def _cgroup(self, pid: int, key: str, errors: dict[str, int]) -> CgroupSample | None:
        pc = self._cg.get(key)
        if pc is None:
            try:
                pc = cgroups.for_pid(self.fs, pid)
            except (ObskitError, OSError):
                errors["cgroup"] = errors.get("cgroup", 0) + 1
                return None
            self._cg[key] = pc
        quota = pc.cpu_quota()
        mem = pc.memory_limit()
        level = pc.throttle_level()
        thr = cgroups.read_throttling(level) if level else None
        mh = pc.get("memory")
        mem_level = mem.level if mem is not None else (mh.leaf if mh is not None and mh.visible else None)
        usage = oom = None
        if mem_level is not None and mh is not None:
            p = Path(mem_level)
            if mh.version == 2:
                usage = cgroups.read_int(p / "memory.current")
                oom = cgroups.read_keyed(p / "memory.events").get("oom_kill")
            else:
                usage = cgroups.read_int(p / "memory.usage_in_bytes")
                oom = cgroups.read_keyed(p / "memory.oom_control").get("oom_kill")
        return CgroupSample(
            cpu_quota_cores=quota.limit if quota else None,
            memory_limit_bytes=mem.limit if mem else None,
            memory_usage_bytes=usage,
            throttle_level=level,
            periods=thr.periods if thr else None,
            throttled_periods=thr.throttled if thr else None,
            throttled_seconds=thr.throttled_s if thr else None,
            oom_level=mem_level,
            oom_kills=oom,
        )

    def _gc(self, pid: int, errors: dict[str, int]) -> GcSample | None:
        from obskit.agent import client as agent_client

        state = self._agents.setdefault(pid, _AgentState())
        now = time.monotonic()
        if state.client is None:
            if now < state.next_try:
                return None
            state.next_try = now + AGENT_RETRY_S
            path = agent_client.find_socket(pid, proc_root=str(self.fs.root))
            if path is None:
                return None
            state.client = agent_client.AgentClient(pid, path, self.agent_timeout,
                                                    expect_uid=agent_client.target_uid(pid, proc_root=str(self.fs.root)))
        c = state.client
        assert isinstance(c, agent_client.AgentClient)
        try:
            gc = c.request("gc")
            ev = c.request("events", since=state.seq)
        except ObskitError:
            errors["agent"] = errors.get("agent", 0) + 1
            state.client = None
            return None
        for e in ev.get("events", []):
            dur = float(e[3])
            state.count += 1
            state.total += dur
            for i, bound in enumerate(GC_BUCKETS):
                if dur <= bound:
                    state.buckets[i] += 1
        state.seq = int(ev.get("seq", state.seq))
        return GcSample(collections=list(gc["collections"])[:3], pause_seconds=list(gc["pause_s"])[:3],
                        buckets=list(state.buckets), count=state.count, total_s=state.total)

    def _services(self, snap: Snapshot, facts: dict[int, ProcessFacts]) -> list[ServiceSample]:
        if self.verdict is None:
            return []
        out: list[ServiceSample] = []
        by_pid = {p.pid: p for p in snap.procs}
        for p in snap.procs:
            if not p.role.endswith(("-master", "-main")):
                continue
            kind = p.role.split("-", 1)[0]
            workers = sum(1 for c in facts[p.pid].children if c in by_pid and by_pid[c].role.endswith("-worker"))
            cg = snap.cgroups.get(p.cgroup_key)
            limit = cg.cpu_quota_cores if cg else None
            try:
                rec, verdict = self.verdict(kind, workers, limit)
            except Exception:  # a verdict that fails must not cost the metrics
                snap.errors["verdict"] = snap.errors.get("verdict", 0) + 1
                continue
            out.append(ServiceSample(p.service, p.role, p.pid, workers, rec, verdict))
        return out


def service_from_cmdline(cmd: list[str]) -> str:
    """A short service name: the app of gunicorn/uvicorn/celery, the module of ``-m``, the script's stem."""
    words = list(cmd)
    if words and re.match(r"^(python|pypy)[\d.]*$", os.path.basename(words[0])):
        words = words[1:]
        while words and words[0].startswith("-") and words[0] not in ("-m", "-c"):
            words = words[2:] if words[0] in ("-X", "-W") else words[1:]
        if words and words[0] == "-c":
            return "python"
        if len(words) >= 2 and words[0] == "-m":
            words = words[1:]
    if not words:
        return "python"
    head = os.path.basename(words[0])
    if head.endswith(".py"):
        head = head[:-3]
    if head in _LAUNCHERS or head.split(".", 1)[0] in _LAUNCHERS:
        for i, w in enumerate(words[1:], 1):
            if w in ("-A", "--app") and i + 1 < len(words):
                return _clean(words[i + 1])
            if w.startswith("--app="):
                return _clean(w.split("=", 1)[1])
            if _APP_SPEC.match(w):
                return _clean(w)
        return _clean(head)
    return _clean(head)


def _clean(text: str) -> str:
    """Label-safe and bounded: printable ASCII words only (target-controlled text)."""
    out = re.sub(r"[^A-Za-z0-9_.:@-]+", "_", text).strip("_")
    return out[:MAX_SERVICE] or "python"


def _kb(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.split()[0]) * 1024
    except (ValueError, IndexError):
        return None
