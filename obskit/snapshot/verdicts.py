"""Verdicts first: what the sections' JSON documents say, in a few lines.

Works on the documents as written into the archive (plain JSON, each with its ``schema``), so
it needs no collector and reads archives written by other obskit versions of the same schemas.
Every string here comes from the target; the page and the terminal make it inert.
"""

from __future__ import annotations

from typing import Any

from obskit.output import schema_of

from .model import Verdict

MIB = 1 << 20
HOT_SHARE = 0.05  # a function with at least 5 % of the samples (self) is named
HOT_MAX = 5
TREND_MIB_PER_MIN = 5.0
# States of a thread found at the same frame in both dumps that are worth a line, and how loud.
STUCK_STATES = {"running": "warning", "waiting_lock": "warning", "blocked_io": "info"}  # below this the memory of the tree is called steady


def _schema(doc: Any) -> str:
    return schema_of(doc)


def compute(docs: dict[str, Any]) -> list[Verdict]:
    out: list[Verdict] = []
    for name in sorted(docs):
        doc = docs[name]
        kind = _schema(doc)
        try:
            if kind == "obskit.profile.report/1":
                out += hot_functions(doc, name)
            elif kind == "obskit.stacks/1":
                out += stuck_threads(doc, name)
            elif kind == "obskit.quota/1":
                out += quota_findings(doc, name)
            elif kind == "obskit.snapshot.mem-trend/1":
                out += memory_trend(doc, name)
            elif kind == "obskit.ps/1":
                out += worker_table(doc, name)
        except (KeyError, TypeError, ValueError, AttributeError):
            out.append(Verdict("environment", "info", f"{name}: unexpected document shape, no verdict", "", name))
    order = {"error": 0, "warning": 1, "info": 2}
    kinds = {"hot": 0, "quota": 1, "oom": 1, "stuck": 2, "memory": 3, "workers": 4, "environment": 5}
    out.sort(key=lambda v: (kinds.get(v.kind, 9), order.get(v.severity, 3)))
    return out


def hot_functions(doc: dict[str, Any], name: str) -> list[Verdict]:
    total = int(doc.get("total_samples") or 0)
    if total == 0:
        return [Verdict("hot", "info", "no CPU samples: the target was idle or could not be sampled", "", name)]
    out: list[Verdict] = []
    for f in (doc.get("top_functions") or [])[:HOT_MAX]:
        share = float(f.get("self_share") or 0.0)
        if share < HOT_SHARE and out:
            break
        where = f"{f.get('file', '')}:{f.get('line', '')}"
        out.append(Verdict("hot", "warning" if share >= 0.2 else "info",
                           f"{f.get('name', '?')} {share * 100:.0f}% of CPU samples (self)",
                           f"{where}; total {float(f.get('total_share') or 0) * 100:.0f}% of {total} samples", name))
    return out


def stuck_threads(doc: dict[str, Any], name: str) -> list[Verdict]:
    """Threads at the same frame in both dumps, one line per (state, frame) however many workers share it."""
    out: list[Verdict] = []
    watch = doc.get("watch") or {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in watch.get("stuck") or []:
        state = str(s.get("state"))
        if state in STUCK_STATES:  # a worker waiting for requests in the same place is idle, not stuck
            groups.setdefault((state, str(s.get("frame", "?"))), []).append(s)
    for (state, frame), items in list(groups.items())[:10]:
        secs = max(float(s.get("seconds") or 0) for s in items)
        who = ", ".join(f"{s.get('pid')}/{s.get('thread')}" for s in items[:8]) + (" …" if len(items) > 8 else "")
        n = f"{len(items)} threads" if len(items) > 1 else f"thread {items[0].get('thread')} of {items[0].get('pid')}"
        out.append(Verdict("stuck", STUCK_STATES[state], f"{n} stuck {state} at {frame} for {secs:.1f}s",
                           f"pid/thread: {who}", name))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for f in doc.get("findings") or []:
        if f.get("kind") in ("same_lock", "gil_held", "too_many_threads", "thread_growth"):
            by_kind.setdefault(str(f["kind"]), []).append(f)
    for kind, items in by_kind.items():
        first = str(items[0].get("message", ""))
        title = first if len(items) == 1 else f"{kind} in {len(items)} processes, e.g. {first}"
        out.append(Verdict("stuck", "warning" if items[0].get("severity") != "info" else "info", title,
                           ", ".join(str(f.get("pid")) for f in items[:20]), name))
    return out


def quota_findings(doc: dict[str, Any], name: str) -> list[Verdict]:
    out = []
    cpu = (doc.get("cpu") or {}).get("limit")
    mem = (doc.get("memory") or {}).get("limit")
    limits = [f"CPU limit {cpu:g} cores" if cpu is not None else "no CPU limit",
              f"memory limit {mem / MIB:.0f} MiB" if mem is not None else "no memory limit"]
    out.append(Verdict("quota", "info", ", ".join(limits), f"cgroup {doc.get('cgroup_version', '?')}, "
                       f"view {doc.get('view', '?')}", name))
    for f in doc.get("findings") or []:
        sev = str(f.get("severity", "info"))
        if sev == "info" and not str(f.get("id", "")).startswith("workers"):
            continue
        kind = "oom" if "oom" in str(f.get("id", "")) or "memory" in str(f.get("id", "")) else "quota"
        detail = str(f.get("detail", ""))
        if f.get("formula"):
            detail += f" ({f['formula']})"
        out.append(Verdict(kind, sev, str(f.get("title", f.get("id", ""))), detail, name))
    return out


def memory_trend(doc: dict[str, Any], name: str) -> list[Verdict]:
    secs = float(doc.get("seconds") or 0.0)
    delta = int(doc.get("pss_delta_bytes") or 0)
    if secs <= 0:
        return []
    rate = delta / MIB / secs * 60
    sev = "warning" if rate >= TREND_MIB_PER_MIN else "info"
    word = "growing" if rate >= TREND_MIB_PER_MIN else "steady"
    return [Verdict("memory", sev, f"memory {word}: PSS {delta / MIB:+.1f} MiB over {secs:.0f}s "
                    f"({rate:+.1f} MiB/min)", f"{int(doc.get('pss_after_bytes') or 0) / MIB:.0f} MiB PSS now, "
                    f"{doc.get('processes', 0)} processes; a short window: confirm with `obskit mem --watch 5m`", name)]


def worker_table(doc: dict[str, Any], name: str) -> list[Verdict]:
    procs = doc.get("processes") or []
    out = []
    for p in procs:
        kids = [c for c in procs if c.get("ppid") == p.get("pid") and "worker" in str(c.get("role", ""))]
        if kids and "master" in str(p.get("role", "")):
            out.append(Verdict("workers", "info", f"{p.get('role')} {p.get('pid')} with {len(kids)} workers",
                               ", ".join(str(k.get("pid")) for k in kids), name))
    return out
