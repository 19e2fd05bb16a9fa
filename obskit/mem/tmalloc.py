"""`obskit mem top` / `mem diff`: tracemalloc allocation sites of the target, through its agent.

Cost, stated to users: while tracing, tracemalloc hooks every allocation.  A pure
allocation loop (object creation, nothing else) measured 5× slower with 1 frame and
~10× with 10 frames on a 2-core machine; real services slow down by the share of their
time spent allocating.  Each traced block also costs memory (~30–60 bytes plus its
traceback).  So tracing is stopped again at the end unless it was already on
or ``--keep`` is given.  A snapshot walks every traced block while holding the GIL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from obskit.agent.client import AgentClient


@dataclass
class Site:
    file: str
    line: int
    size: int
    count: int
    size_diff: int | None = None
    count_diff: int | None = None
    stack: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class TracemallocReport:
    SCHEMA = "obskit.mem.tracemalloc/1"

    pid: int
    mode: str  # "top" or "diff"
    frames: int
    interval_s: float
    traced_bytes: int
    peak_bytes: int
    overhead_bytes: int
    was_tracing: bool
    left_tracing: bool
    sites: list[Site]
    notes: list[str] = field(default_factory=list)


def _sites(reply: dict[str, Any]) -> list[Site]:
    return [
        Site(str(s["file"]), int(s["line"]), int(s["size"]), int(s["count"]), s.get("size_diff"), s.get("count_diff"),
             [(str(f), int(n)) for f, n in s.get("stack", [])])
        for s in reply.get("sites", [])
    ]


def run(client: AgentClient, *, mode: str, interval: float, frames: int, limit: int, keep: bool) -> TracemallocReport:
    started = client.request("tm.start", frames=frames)
    was_tracing = bool(started.get("already"))
    notes: list[str] = []
    if not was_tracing and mode == "top":
        notes.append(f"tracemalloc started now: only allocations made in the last {interval:g}s are seen")
    try:
        if mode == "diff":
            client.request("tm.snapshot", limit=1, baseline=True)
        if mode == "diff" or not was_tracing:
            client.wait(interval)  # Ctrl-C: the snapshot of what was traced so far
        reply = client.request("tm.diff" if mode == "diff" else "tm.snapshot", limit=limit)
    finally:
        left = keep or was_tracing
        if not left:
            try:
                client.request("tm.stop")
            except Exception:
                notes.append("could not stop tracemalloc in the target; it keeps tracing")
                left = True
    if left and not was_tracing:
        notes.append("tracemalloc left running in the target (--keep): stop it with `obskit mem top --pid N --stop`")
    sites = _sites(reply)
    if mode == "diff":
        sites = [s for s in sites if (s.size_diff or 0) != 0 or (s.count_diff or 0) != 0]
    return TracemallocReport(
        pid=client.pid,
        mode=mode,
        frames=int(reply.get("frames", started.get("frames", frames)) or frames),
        interval_s=interval if (mode == "diff" or not was_tracing) else 0.0,
        traced_bytes=int(reply["traced_bytes"]),
        peak_bytes=int(reply["peak_bytes"]),
        overhead_bytes=int(reply["overhead_bytes"]),
        was_tracing=was_tracing,
        left_tracing=left,
        sites=sites,
        notes=notes,
    )


@dataclass
class TracemallocStopped:
    """What `mem top --stop` did (its --json)."""

    SCHEMA = "obskit.mem.tracemalloc.stop/1"

    pid: int
    was_tracing: bool


def stop(client: AgentClient, pid: int) -> TracemallocStopped:
    return TracemallocStopped(pid=pid, was_tracing=bool(client.request("tm.stop").get("was_tracing")))

