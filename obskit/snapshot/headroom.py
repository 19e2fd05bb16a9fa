"""Memory headroom of the target's pod before the heavy sections.

An ephemeral debug container is accounted in the pod's memory cgroup: obskit and py-spy use the
same limit the service lives under.  The room left is the smallest ``limit - usage`` over every
visible level of the target's memory cgroup (container and pod); the plan shrinks or skips the
heavy sections when obskit plus py-spy could push the pod towards its limit.
"""

from __future__ import annotations

from pathlib import Path

from obskit.cgroups import for_pid, memory_levels, read_int
from obskit.errors import ObskitError
from obskit.proc import ProcFS

from .model import Headroom

MIB = 1 << 20
# From benchmarks/snapshot_memory.py (10 processes: obskit 34 MB, obskit + py-spy 74 MB at the
# peak), rounded up: obskit's own peak while building an archive, and one py-spy following a
# process tree (its memory grows with the processes it follows).
OBSKIT_BYTES = 56 * MIB
PYSPY_BASE_BYTES = 16 * MIB
PYSPY_PER_PROCESS_BYTES = 4 * MIB
SAFETY = 1.25  # keep a quarter more than the estimate free: the service allocates meanwhile


def need(processes: int) -> int:
    """Bytes obskit plus one py-spy following ``processes`` processes may take at the peak."""
    return OBSKIT_BYTES + PYSPY_BASE_BYTES + PYSPY_PER_PROCESS_BYTES * max(1, processes)


def _usage(level: str, version: int) -> int | None:
    p = Path(level)
    return read_int(p / ("memory.current" if version == 2 else "memory.usage_in_bytes"))


def assess(procfs: ProcFS, pid: int, processes: int) -> Headroom:
    """The plan for ``pid``'s pod: ``full``, ``shrink`` (profile one busy worker, no -s) or ``minimal``
    (no profile, no stacks, memory without the per-mapping breakdown)."""
    want = need(processes)
    try:
        h = for_pid(procfs, pid, controllers=("memory",)).get("memory")
    except (ObskitError, OSError) as e:
        msg = getattr(e, "message", str(e))
        return Headroom(None, None, None, None, want, "full", f"memory cgroup not readable ({msg}): no check")
    best: tuple[int, int, int, str] | None = None  # headroom, limit, usage, level
    for lv in memory_levels(h):
        if lv.limit is None or h is None:
            continue
        used = _usage(lv.path, h.version)
        if used is None:
            continue
        room = lv.limit - used
        if best is None or room < best[0]:
            best = (room, lv.limit, used, lv.path)
    if best is None:
        return Headroom(None, None, None, None, want, "full", "no memory limit: no check")
    room, limit, used, level = best
    mib = f"{room / MIB:.0f} MiB free of {limit / MIB:.0f} MiB"
    if room >= want * SAFETY:
        return Headroom(limit, used, room, level, want, "full", f"{mib}; obskit + py-spy need ~{want / MIB:.0f} MiB")
    small = need(1)
    if room >= small * SAFETY:
        return Headroom(limit, used, room, level, want, "shrink",
                        f"{mib}, less than obskit + py-spy over {processes} processes (~{want / MIB:.0f} MiB): "
                        "profiling one busy worker instead of all")
    return Headroom(limit, used, room, level, want, "minimal",
                    f"{mib}, too little for obskit + py-spy (~{small / MIB:.0f} MiB): no profile, no stacks, "
                    "memory without the per-mapping breakdown")
