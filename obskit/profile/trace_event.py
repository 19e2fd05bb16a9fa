"""Chrome's Trace Event Format (JSON Object Format): writer and reader.

Spec: "Trace Event Format" (Google, the document chrome://tracing and Perfetto follow).
The writer puts a sampled profile in the format's two places for one:

- ``stackFrames`` (a tree: id -> name, category, parent) and ``samples`` (one per
  distinct stack of a thread: ``sf`` its leaf, ``weight`` its sample count) — lossless,
  what ``profile show`` reads back;
- ``X`` (complete) events laid out as a flame chart per thread: each call-tree node
  starts where its previous sibling ended and lasts count x sampling period, so Perfetto
  and chrome://tracing draw the profile as a timeline (nodes under 0.01 % of all samples,
  narrower than a pixel, get none); ``M`` events name processes and threads.

Frame names in ``stackFrames`` are ``name (file:line)`` (the folded-stacks label; the
spec has no line field).  ``otherData`` carries the exporter, the sampling period and
the recording's duration.  The reader also takes other tools' traces: ``X`` and
``B``/``E`` events become stacks weighted by self time (1 ms resolution).
"""

from __future__ import annotations

import math
from typing import Any

import obskit
from obskit.errors import InputError
from obskit.profile.model import Frame, Profile, parse_frame


def to_trace_event(profile: Profile) -> dict[str, Any]:
    period_us = profile.sample_period() * 1e6
    labels = [f.label() for f in profile.frames]
    events: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": p.pid, "tid": 0,
                                     "args": {"name": p.cmdline or f"pid {p.pid}"}} for p in profile.processes]
    by_thread: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(profile.samples):
        if s.count > 0:
            by_thread.setdefault((s.pid, s.tid), []).append(i)
    for pid, tid in by_thread:
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"name": profile.thread_name(pid, tid)}})
    stack_frames: dict[str, dict[str, Any]] = {}
    samples: list[dict[str, Any]] = []
    # The flame chart is for the eye: call nodes under 0.01 % of all samples get no X event (as in
    # the HTML flame graph); stackFrames and samples keep every stack.
    min_x = max(1, math.ceil(sum(s.count for s in profile.samples if s.count > 0) * X_MIN_SHARE))
    # One call tree per thread: node -> [frame, parent node, total count, children in first-seen order].
    for (pid, tid), members in by_thread.items():
        frame_of: list[int] = []
        total: list[int] = []
        kids: list[list[int]] = []
        index: dict[tuple[int, int], int] = {}
        base = len(stack_frames) + 1
        leaf_of: list[tuple[int, int]] = []  # (node or -1 for an empty stack, count)
        for i in members:
            s = profile.samples[i]
            node = -1
            for f in s.frames:
                key = (node, f)
                nxt = index.get(key)
                if nxt is None:
                    nxt = index[key] = len(frame_of)
                    frame_of.append(f)
                    total.append(0)
                    kids.append([])
                    if node >= 0:
                        kids[node].append(nxt)
                    fr = profile.frames[f]
                    entry: dict[str, Any] = {"name": labels[f], "category": fr.file or "native"}
                    if node >= 0:
                        entry["parent"] = str(base + node)
                    stack_frames[str(base + nxt)] = entry
                total[nxt] += s.count
                node = nxt
            leaf_of.append((node, s.count))
        # Flame-chart layout: pre-order, children one after another from their parent's start.
        start = [0.0] * len(frame_of)
        roots = [n for n in range(len(frame_of)) if (-1, frame_of[n]) in index and index[(-1, frame_of[n])] == n]
        work: list[tuple[int, float]] = []
        t = 0.0
        for r in roots:
            work.append((r, t))
            t += total[r] * period_us
        work.reverse()
        while work:
            n, at = work.pop()
            start[n] = at
            if total[n] < min_x:  # its subtree is smaller still; samples below keep its start
                _starts(n, at, kids, total, period_us, start)
                continue
            fr = profile.frames[frame_of[n]]
            ev: dict[str, Any] = {"name": fr.name, "cat": fr.file or "native", "ph": "X", "ts": round(at, 3),
                                  "dur": round(total[n] * period_us, 3), "pid": pid, "tid": tid}
            if fr.file:
                ev["args"] = {"file": fr.file, "line": fr.line}
            events.append(ev)
            child_at = at
            pending = []
            for c in kids[n]:
                pending.append((c, child_at))
                child_at += total[c] * period_us
            work.extend(reversed(pending))
        for node, count in leaf_of:
            sample: dict[str, Any] = {"cpu": 0, "pid": pid, "tid": tid, "name": "cpu",
                                      "ts": round(start[node], 3) if node >= 0 else 0, "weight": count}
            if node >= 0:
                sample["sf"] = str(base + node)
            samples.append(sample)
    m = profile.metadata
    return {
        "traceEvents": events,
        "stackFrames": stack_frames,
        "samples": samples,
        "displayTimeUnit": "ms",
        "otherData": {
            "exporter": f"obskit@{obskit.__version__}",
            "title": m.target_cmdline or (f"pid {m.target_pid}" if m.target_pid else "profile"),
            "sample_period_s": profile.sample_period(),
            "duration_s": m.duration_s,
        },
    }


X_MIN_SHARE = 0.0001


def _starts(node: int, at: float, kids: list[list[int]], total: list[int], period_us: float,
            start: list[float]) -> None:
    """Flame-chart start of every node below ``node`` (which starts at ``at``), without events."""
    work = [(node, at)]
    while work:
        n, t = work.pop()
        start[n] = t
        for c in kids[n]:
            work.append((c, t))
            t += total[c] * period_us


def _num(v: Any, what: str) -> float:
    x = float(v)
    if not math.isfinite(x) or abs(x) > 1e15:
        raise ValueError(f"{what} {v!r} is out of range")
    return x


def _int(v: Any, what: str) -> int:
    x = _num(v, what)
    if x != int(x):
        raise ValueError(f"{what} {v!r} is not an integer")
    return int(x)


def from_trace_event(doc: Any) -> Profile:
    """A profile from a trace-event document (object with ``traceEvents`` or a bare event array)."""
    try:
        return _read(doc)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise InputError(f"malformed Chrome trace ({e})", "the file may be truncated") from None


def _read(doc: Any) -> Profile:
    events = doc if isinstance(doc, list) else doc.get("traceEvents", [])
    if not isinstance(events, list):
        raise TypeError("traceEvents is not a list")
    prof = Profile()
    prof.metadata.source_format = "trace-event"
    other = doc.get("otherData") if isinstance(doc, dict) else None
    if isinstance(other, dict):
        prof.metadata.sampler = str(other.get("exporter") or "")[:200]
        period = other.get("sample_period_s")
        if isinstance(period, (int, float)) and not isinstance(period, bool) and 0 < period < 1e6:
            prof.metadata.requested_rate = 1.0 / period
        duration = other.get("duration_s")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and 0 < duration < 1e9:
            prof.metadata.duration_s = float(duration)
        title = other.get("title")
        if isinstance(title, str):
            prof.metadata.target_cmdline = title[:1000]
    for ev in events:
        if isinstance(ev, dict) and ev.get("ph") == "M":
            name = (ev.get("args") or {}).get("name")
            if not isinstance(name, str):
                continue
            pid = _int(ev.get("pid", 0), "pid")
            if ev.get("name") == "process_name":
                prof.ensure_process(pid, cmdline=name)
            elif ev.get("name") == "thread_name":
                prof.ensure_thread(pid, _int(ev.get("tid", 0), "tid"), name)
    frames = doc.get("stackFrames") if isinstance(doc, dict) else None
    samples = doc.get("samples") if isinstance(doc, dict) else None
    if isinstance(frames, dict) and isinstance(samples, list) and samples:
        _read_samples(prof, frames, samples)
    else:
        _read_events(prof, events)
    return prof


def _read_samples(prof: Profile, frames: dict[str, Any], samples: list[Any]) -> None:
    interned: dict[str, int] = {}
    stacks: dict[str, tuple[int, ...]] = {}

    def stack_of(sf: str) -> tuple[int, ...]:
        chain: list[str] = []
        seen: set[str] = set()
        cur: str | None = sf
        while cur is not None and cur not in stacks:
            if cur in seen or len(chain) > 100_000:
                raise ValueError(f"stack frame {cur!r} is its own ancestor")
            seen.add(cur)
            entry = frames[cur]
            chain.append(cur)
            parent = entry.get("parent")
            cur = None if parent is None else str(parent)
        out = stacks[cur] if cur is not None else ()
        for node in reversed(chain):
            entry = frames[node]
            name, cat = str(entry["name"]), str(entry.get("category") or "")
            f = parse_frame(name)
            if not f.file and cat and cat != "native":
                f = Frame(name, cat)
            i = interned.get(name + "\0" + f.file)
            if i is None:
                i = interned[name + "\0" + f.file] = prof.intern(f)
            out = (*out, i)
            stacks[node] = out
        return out

    for s in samples:
        pid = _int(s.get("pid", 0), "pid")
        tid = _int(s.get("tid", 0), "tid")
        weight = _int(s.get("weight", 1), "weight")
        if weight < 0:
            raise ValueError(f"negative weight {weight}")
        sf = s.get("sf")
        stack = stack_of(str(sf)) if sf is not None else ()
        if pid and prof.process(pid) is None:
            prof.ensure_process(pid)
        prof.add_indices(pid, tid, stack, weight)


def _read_events(prof: Profile, events: list[Any]) -> None:
    """X and B/E events: the time a stack was on top (its self time), in whole milliseconds."""
    spans: dict[tuple[int, int], list[tuple[float, float, str, str, int]]] = {}
    open_b: dict[tuple[int, int], list[tuple[float, str, str, int]]] = {}
    for ev in events:
        if not isinstance(ev, dict):
            raise TypeError("an event is not an object")
        ph = ev.get("ph")
        if ph not in ("X", "B", "E"):
            continue
        th = (_int(ev.get("pid", 0), "pid"), _int(ev.get("tid", 0), "tid"))
        ts = _num(ev.get("ts", 0), "ts")
        raw_args = ev.get("args")
        args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
        file = str(args.get("file") or "")
        line = args.get("line")
        line = line if isinstance(line, int) and not isinstance(line, bool) and 0 <= line < 1 << 31 else 0
        if ph == "X":
            dur = _num(ev.get("dur", 0), "dur")
            if dur > 0:
                spans.setdefault(th, []).append((ts, ts + dur, str(ev.get("name", "")), file, line))
        elif ph == "B":
            open_b.setdefault(th, []).append((ts, str(ev.get("name", "")), file, line))
        elif open_b.get(th):
            b_ts, name, file, line = open_b[th].pop()
            if ts > b_ts:
                spans.setdefault(th, []).append((b_ts, ts, name, file, line))
    if not spans:
        raise ValueError("no samples and no X or B/E events")
    for (pid, tid), items in spans.items():
        if pid and prof.process(pid) is None:
            prof.ensure_process(pid)
        items.sort(key=lambda x: (x[0], -x[1]))
        selfs: dict[tuple[int, ...], float] = {}
        path: list[list[float]] = []  # open spans: [start, end, time in children]
        keys: list[tuple[int, ...]] = []
        for start, end, name, file, line in items:
            while path and path[-1][1] <= start:
                _close(path, keys, selfs)
            f = prof.intern(Frame(name, file, line))
            keys.append((*keys[-1], f) if keys else (f,))
            path.append([start, min(end, path[-1][1]) if path else end, 0.0])
        while path:
            _close(path, keys, selfs)
        for stack, self_us in selfs.items():
            count = round(self_us / 1000)
            if count > 0:
                prof.add_indices(pid, tid, stack, count)
    prof.metadata.requested_rate = 1000.0


def _close(path: list[list[float]], keys: list[tuple[int, ...]], selfs: dict[tuple[int, ...], float]) -> None:
    start, end, children = path.pop()
    stack = keys.pop()
    selfs[stack] = selfs.get(stack, 0.0) + max(0.0, end - start - children)
    if path:
        path[-1][2] += end - start
