"""CPU, memory and pids budgets of located cgroups, and the counters sampled over the window."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from obskit.cgroups import (
    Hierarchy,
    Throttling,
    binding_cpu_level,
    binding_memory_level,
    cpu_levels,
    memory_bytes,
    memory_levels,
    parse_cpu_list,
    read_int,
    read_keyed,
    read_pressure,
    read_text,
    read_throttling,
)
from obskit.proc import ProcFS

from .model import CpuBudget, MemoryBudget, PidsBudget


def rounding(limit: float | None, affinity: int) -> dict[str, int]:
    """What each school would pick for a CPU limit (the raw float is reported beside it)."""
    if limit is None:
        return {"floor": affinity, "ceil": affinity, "automaxprocs": affinity, "go125": affinity,
                "nproc": affinity}
    return {
        "floor": math.floor(limit),
        "ceil": math.ceil(limit),
        "automaxprocs": max(1, math.floor(limit)),  # uber-go/automaxprocs: floor, min 1
        "go125": min(affinity, max(2, math.ceil(limit))),  # Go 1.25: ceil, min 2, capped by affinity
        "nproc": max(1, int(limit + 0.5)),  # GNU nproc (2025): round half up, min 1
    }


def cpu_budget(h: Hierarchy | None, cpuset_h: Hierarchy | None, host_cpus: int, affinity: int) -> CpuBudget:
    levels = cpu_levels(h)
    best = binding_cpu_level(levels)
    limit = best.limit if best else None
    cpuset = None
    if cpuset_h is not None:
        name = "cpuset.cpus.effective" if cpuset_h.version == 2 else "cpuset.effective_cpus"
        cpus = parse_cpu_list(read_text(Path(cpuset_h.leaf) / name))
        cpuset = len(cpus) or None
    shares = None
    if h is not None:
        shares = read_int(Path(h.leaf) / ("cpu.weight" if h.version == 2 else "cpu.shares"))
    cap = min(affinity, cpuset) if cpuset else affinity
    effective = min(limit, float(cap)) if limit is not None else float(cap)
    return CpuBudget(
        limit=limit,
        limiting_level=best.path if best else None,
        levels=levels,
        host_cpus=host_cpus,
        affinity=affinity,
        cpuset=cpuset,
        effective=effective,
        shares=shares,
        rounding=rounding(limit, cap),
    )


def memory_budget(h: Hierarchy | None) -> MemoryBudget:
    empty = MemoryBudget(None, None, [], None, None, None, None, None, None, None, None, None, None)
    if h is None:
        return empty
    v2 = h.version == 2
    levels = memory_levels(h)
    best = binding_memory_level(levels)
    highs = [lv.high for lv in levels if lv.high is not None]
    leaf = Path(h.leaf)
    stat = read_keyed(leaf / "memory.stat")
    if v2:
        current = read_int(leaf / "memory.current")
        peak = read_int(leaf / "memory.peak")
        inactive = stat.get("inactive_file")
        anon, file, shmem = stat.get("anon"), stat.get("file"), stat.get("shmem")
        swap = memory_bytes(read_int(leaf / "memory.swap.max")) if (leaf / "memory.swap.max").exists() else None
        group = read_int(leaf / "memory.oom.group")
        oom_group = None if group is None else bool(group)
    else:
        current = read_int(leaf / "memory.usage_in_bytes")
        peak = read_int(leaf / "memory.max_usage_in_bytes")
        inactive = stat.get("total_inactive_file", stat.get("inactive_file"))
        anon = stat.get("total_rss", stat.get("rss"))
        file = stat.get("total_cache", stat.get("cache"))
        shmem = stat.get("total_shmem", stat.get("shmem"))
        memsw = memory_bytes(read_int(leaf / "memory.memsw.limit_in_bytes"))
        mem = best.limit if best else None
        swap = memsw - mem if memsw is not None and mem is not None else None
        oom_group = None
    working = max(0, current - (inactive or 0)) if current is not None else None
    return MemoryBudget(
        limit=best.limit if best else None,
        limiting_level=best.path if best else None,
        levels=levels,
        high=min(highs) if highs else None,
        swap_limit=swap,
        current=current,
        peak=peak,
        working_set=working,
        inactive_file=inactive,
        anon=anon,
        file=file,
        shmem=shmem,
        oom_group=oom_group,
    )


def pids_budget(h: Hierarchy | None) -> PidsBudget:
    if h is None:
        return PidsBudget(None, None)
    limits = [v for v in (read_int(Path(d) / "pids.max") for d in h.levels) if v is not None]
    return PidsBudget(min(limits) if limits else None, read_int(Path(h.leaf) / "pids.current"))


@dataclass
class Counters:
    """One sample of everything that is compared across the window."""

    cpu_usage_s: float | None = None
    throttle: Throttling | None = None
    memory_events: dict[str, int] = field(default_factory=dict)
    psi: dict[str, dict[str, float]] = field(default_factory=dict)
    psi_scope: str | None = None


def read_counters(found: dict[str, Hierarchy], limiting_cpu_level: str | None, procfs: ProcFS) -> Counters:
    c = Counters()
    cpu = found.get("cpu")
    acct = found.get("cpuacct")
    if cpu is not None:
        # Throttling is counted at the level whose quota ran out; the limiting level is the one to read.
        c.throttle = read_throttling(limiting_cpu_level or cpu.leaf)
        if cpu.version == 2:
            leaf_stat = read_keyed(Path(cpu.leaf) / "cpu.stat")
            if "usage_usec" in leaf_stat:
                c.cpu_usage_s = leaf_stat["usage_usec"] / 1e6
    if c.cpu_usage_s is None and acct is not None:
        if acct.version == 1:
            ns = read_int(Path(acct.leaf) / "cpuacct.usage")
            c.cpu_usage_s = ns / 1e9 if ns is not None else None
        else:
            st = read_keyed(Path(acct.leaf) / "cpu.stat")
            c.cpu_usage_s = st["usage_usec"] / 1e6 if "usage_usec" in st else None
    mem = found.get("memory")
    if mem is not None:
        if mem.version == 2:
            c.memory_events = read_keyed(Path(mem.leaf) / "memory.events")
        else:
            oc = read_keyed(Path(mem.leaf) / "memory.oom_control")
            ev: dict[str, int] = {}
            if "oom_kill" in oc:
                ev["oom_kill"] = oc["oom_kill"]
            if "under_oom" in oc:
                ev["under_oom"] = oc["under_oom"]
            fc = read_int(Path(mem.leaf) / "memory.failcnt")
            if fc is not None:
                ev["failcnt"] = fc
            c.memory_events = ev
    unified = found.get("unified")
    for res in ("cpu", "memory", "io"):
        p = read_pressure(Path(unified.leaf) / f"{res}.pressure") if unified is not None else None
        scope = f"cgroup {unified.cgroup_path}" if unified is not None else "system"
        if p is None:
            p = read_pressure(procfs.root / "pressure" / res)
            scope = "system"
        if p is not None:
            c.psi[res] = {k: v.get("avg10", 0.0) for k, v in p.items()}
            c.psi_scope = c.psi_scope or scope
    return c
