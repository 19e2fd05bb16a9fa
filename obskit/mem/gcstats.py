"""GC summary and advice from the agent's record (the collector side of `obskit gc`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Advice thresholds: a service spending more than this share of wall time in collections pays for it.
PAUSE_SHARE_WARN = 0.02
GEN2_MAX_PAUSE_WARN = 0.010
GEN2_DOMINANT_SHARE = 0.5


@dataclass
class GenerationStats:
    generation: int
    collections: int
    per_minute: float
    pause_total_s: float
    pause_max_s: float
    pause_mean_s: float
    collected: int
    uncollectable: int
    threshold: int
    count: int


@dataclass
class GCEvent:
    SCHEMA = "obskit.gc.event/1"

    seq: int
    at_s: float
    generation: int
    pause_s: float
    collected: int
    uncollectable: int

    def line(self) -> str:
        """One gctrace-style line."""
        return (
            f"gc {self.seq} @{self.at_s:.3f}s gen{self.generation} {self.pause_s * 1e3:.1f}ms pause "
            f"{self.collected} collected {self.uncollectable} uncollectable"
        )


@dataclass
class GCSummary:
    SCHEMA = "obskit.gc/1"

    pid: int
    python: str
    window_s: float
    window: str  # "since agent start" or "last N s"
    enabled: bool
    thresholds: list[int]
    frozen: int | None
    garbage: int
    generations: list[GenerationStats]
    pause_total_s: float
    pause_max_s: float
    pause_share: float
    uncollectable: int
    advice: list[str] = field(default_factory=list)


def events_from(reply: dict[str, Any]) -> list[GCEvent]:
    return [GCEvent(int(e[0]), float(e[1]), int(e[2]), float(e[3]), int(e[4]), int(e[5])) for e in reply.get("events", [])]


def summarize(
    pid: int,
    hello: dict[str, Any],
    now: dict[str, Any],
    before: dict[str, Any] | None = None,
    window_events: list[GCEvent] | None = None,
) -> GCSummary:
    """Summary over the agent's lifetime, or over the window between two ``gc`` replies.

    Maximum pauses are lifetime ones unless the window's own events are given.
    """
    window = float(now["uptime_s"]) - (float(before["uptime_s"]) if before else 0.0)
    window = max(window, 1e-9)

    def delta(key: str, g: int) -> Any:
        return now[key][g] - (before[key][g] if before else 0)

    state = now["gc"]
    gens: list[GenerationStats] = []
    for g in range(3):
        n = int(delta("collections", g))
        pause = float(delta("pause_s", g))
        gens.append(
            GenerationStats(
                generation=g,
                collections=n,
                per_minute=n / window * 60,
                pause_total_s=pause,
                pause_max_s=(
                    max((e.pause_s for e in window_events if e.generation == g), default=0.0)
                    if window_events is not None
                    else float(now["max_pause_s"][g])
                ),
                pause_mean_s=pause / n if n else 0.0,
                collected=int(delta("collected", g)),
                uncollectable=int(delta("uncollectable", g)),
                threshold=int(state["threshold"][g]) if g < len(state["threshold"]) else 0,
                count=int(state["count"][g]) if g < len(state["count"]) else 0,
            )
        )
    total = sum(g.pause_total_s for g in gens)
    summary = GCSummary(
        pid=pid,
        python=str(hello.get("python", "?")),
        window_s=window,
        window=(f"last {window:.1f}s" if window_events is not None else f"last {window:.1f}s, max since agent start")
        if before
        else "since agent start",
        enabled=bool(state.get("enabled", True)),
        thresholds=[int(x) for x in state["threshold"]],
        frozen=state.get("frozen"),
        garbage=int(state.get("garbage", 0)),
        generations=gens,
        pause_total_s=total,
        pause_max_s=max(g.pause_max_s for g in gens),
        pause_share=total / window,
        uncollectable=sum(g.uncollectable for g in gens),
    )
    summary.advice = advise(summary)
    return summary


def advise(s: GCSummary) -> list[str]:
    out: list[str] = []
    gen2 = s.generations[2]
    if not s.enabled:
        out.append("automatic GC is disabled (gc.disable()): cycles are never freed; memory grows unless the app calls gc.collect()")
    if s.pause_total_s > 0 and gen2.pause_total_s / s.pause_total_s >= GEN2_DOMINANT_SHARE and gen2.pause_max_s >= GEN2_MAX_PAUSE_WARN:
        out.append(
            f"gen-2 collections take {gen2.pause_total_s / s.pause_total_s:.0%} of GC time, up to "
            f"{gen2.pause_max_s * 1e3:.1f}ms each: call gc.freeze() once start-up is done (before forking workers) "
            "so long-lived start-up objects leave the collector's scans"
        )
    if s.pause_share >= PAUSE_SHARE_WARN:
        t0 = s.thresholds[0] if s.thresholds else 700
        out.append(
            f"GC pauses take {s.pause_share:.1%} of wall time: raise the gen-0 threshold, e.g. "
            f"gc.set_threshold({max(t0 * 10, 10000)}, {', '.join(str(t) for t in s.thresholds[1:3]) or '10, 10'}), "
            "and look for code creating reference cycles in hot paths"
        )
    if s.uncollectable or s.garbage:
        out.append(
            f"{s.uncollectable} uncollectable objects ({s.garbage} in gc.garbage): cycles the collector cannot free "
            "(gc.DEBUG_SAVEALL or `obskit mem top` find where they come from)"
        )
    if s.frozen == 0 and gen2.collections and gen2.pause_max_s >= GEN2_MAX_PAUSE_WARN and not any("freeze" in a for a in out):
        out.append("nothing is frozen: in pre-fork servers (gunicorn --preload), gc.freeze() before fork keeps pages shared")
    return out
