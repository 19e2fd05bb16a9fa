"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): writer and reader.

The writer emits one ``sampled`` profile per thread, named ``pid N tid M name``, with a
shared frames table; weights are sample counts (unit ``none``) so nothing is lost to
rounding.  The reader takes py-spy's output (unit ``seconds``, one sample per entry,
names like ``Process 12 Thread 34 "MainThread"``) and any other exporter's ``sampled``
or ``evented`` profiles.
"""

from __future__ import annotations

import math
import re
from typing import Any

import obskit
from obskit.errors import InputError
from obskit.profile.model import _PROCESS_RE, _THREAD_RE, Frame, Profile

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"

_UNIT_SECONDS = {"nanoseconds": 1e-9, "microseconds": 1e-6, "milliseconds": 1e-3, "seconds": 1.0}
_NAME_RES = (
    re.compile(r"^pid (?P<pid>\d+) tid (?P<tid>\d+)(?: (?P<name>.*))?$"),
    re.compile(r'^(?:Process (?P<pid>\d+) )?Thread (?P<tid>(?:0x)?[0-9a-fA-F]+)(?: "(?P<name>.*)")?$'),
)


def to_speedscope(profile: Profile) -> dict[str, Any]:
    frames: list[dict[str, Any]] = []
    for f in profile.frames:
        d: dict[str, Any] = {"name": f.name}
        if f.file:
            d["file"] = f.file
        if f.line:
            d["line"] = f.line
        frames.append(d)
    by_thread: dict[tuple[int, int], tuple[list[list[int]], list[int]]] = {}
    for s in profile.samples:
        stacks, weights = by_thread.setdefault((s.pid, s.tid), ([], []))
        stacks.append(list(s.frames))
        weights.append(s.count)
    profiles = []
    # Weights are times: a sample stands for one sampling period of its thread (see Profile.sample_period).
    period = profile.sample_period()
    for (pid, tid), (stacks, counts) in sorted(by_thread.items(), key=lambda kv: (-sum(kv[1][1]), kv[0])):
        name = profile.thread_name(pid, tid)
        times = [c * period for c in counts]
        profiles.append({
            "type": "sampled",
            "name": f"pid {pid} tid {tid} {name}",
            "unit": "seconds",
            "startValue": 0,
            "endValue": sum(counts) * period,
            "samples": stacks,
            "weights": times,
        })
    meta = profile.metadata
    title = meta.target_cmdline or (f"pid {meta.target_pid}" if meta.target_pid else "profile")
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": profiles,
        # The period the weights are multiples of, so the reader recovers exact counts (see _counts).
        "name": f"obskit: {title} @ {1 / period:.12g} Hz",
        "activeProfileIndex": 0,
        "exporter": f"obskit@{obskit.__version__}",
    }


def _thread_of(name: str, ordinal: int) -> tuple[int, int, str]:
    for rx in _NAME_RES:
        m = rx.match(name)
        if m:
            t = m.group("tid")
            tid = int(t, 16) if t.startswith("0x") else int(t)
            return int(m.group("pid") or 0), tid, (m.group("name") or "").strip()
    # Some other exporter: keep its profile name as the thread name.
    return 0, ordinal, name


# A weight is a count or a time: more than 10^15 of either is no profile (and 1e308 would overflow counts).
_MAX_WEIGHT = 1e15


def _weight(w: Any, *, signed: bool = False) -> float:
    x = float(w)
    if not math.isfinite(x) or abs(x) > _MAX_WEIGHT or (x < 0 and not signed):
        raise ValueError(f"weight {w!r} is not a sample count or a time")
    return x


def _line(v: Any) -> int:
    n = int(v or 0)
    return n if 0 <= n < 1 << 31 else 0


_OBSKIT_RATE = re.compile(r" @ (?P<rate>[0-9][0-9.e+-]*) Hz$")


def _counts(weights: list[float], unit: str, rate: float | None = None) -> tuple[list[int], float | None]:
    """Integer sample counts for ``weights``, and the sampling rate they imply (if time)."""
    if unit not in _UNIT_SECONDS:
        return [max(1, round(w)) if w > 0 else 0 for w in weights], None
    scale = _UNIT_SECONDS[unit]
    secs = [w * scale for w in weights]
    positive = [s for s in secs if s > 0]
    if not positive:
        return [0 for _ in secs], None
    if rate:  # obskit's own file says its period
        return [round(s * rate) for s in secs], rate
    quantum = min(positive)
    # py-spy writes one entry per sample with weight 1/rate: counts are exact multiples.
    if all(abs(s / quantum - round(s / quantum)) < 0.01 for s in positive) and quantum >= 1e-5:
        return [round(s / quantum) for s in secs], 1.0 / quantum
    # Arbitrary durations: 1 ms resolution.
    return [max(1, round(s * 1000)) if s > 0 else 0 for s in secs], 1000.0


def from_speedscope(doc: dict[str, Any]) -> Profile:
    try:
        raw_frames = doc["shared"]["frames"]
        profiles = doc["profiles"]
        if not isinstance(raw_frames, list) or not isinstance(profiles, list):
            raise TypeError("frames/profiles are not lists")
        frames = [Frame(str(f["name"]), str(f.get("file") or ""), _line(f.get("line"))) for f in raw_frames]
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise InputError(f"malformed speedscope file ({e})", "the file may be truncated") from None
    prof = Profile()
    interned = [prof.intern(f) for f in frames]
    # py-spy -s / -t put `process PID:"cmd"` and `thread (TID): name` frames at the root of each stack.
    roots: dict[int, tuple[str, int, str]] = {}
    for i, f in enumerate(frames):
        if not f.file:
            pm, tm = _PROCESS_RE.match(f.name), _THREAD_RE.match(f.name)
            if pm:
                roots[i] = ("process", int(pm.group("pid")), pm.group("cmd"))
            elif tm:
                t = tm.group("tid")
                roots[i] = ("thread", int(t, 16) if t.startswith("0x") else int(t), (tm.group("name") or "").strip())
    prof.metadata.source_format = "speedscope"
    prof.metadata.sampler = str(doc.get("exporter") or "")
    rates: list[float] = []
    duration = 0.0
    own_rate = None
    if str(doc.get("exporter") or "").startswith("obskit@"):
        m = _OBSKIT_RATE.search(str(doc.get("name") or ""))
        try:
            own_rate = _weight(m.group("rate")) if m else None
        except ValueError:
            own_rate = None
    for ordinal, p in enumerate(profiles, 1):
        if not isinstance(p, dict):
            raise InputError(f"malformed speedscope profile #{ordinal}", "the file may be truncated")
        pid, tid, tname = _thread_of(str(p.get("name", "")), ordinal)
        if pid:
            prof.ensure_process(pid)
        prof.ensure_thread(pid, tid, tname)
        unit = str(p.get("unit", "none"))
        try:
            if p.get("type") == "sampled":
                stacks = [[int(i) for i in s] for s in p["samples"]]
                weights = [_weight(w) for w in p.get("weights") or [1.0] * len(stacks)]
            elif p.get("type") == "evented":
                stacks, weights = _evented_to_samples(p["events"])
            else:
                prof.metadata.warnings.append(f"skipped speedscope profile of type {p.get('type')!r}")
                continue
            if len(stacks) != len(weights):
                raise ValueError("samples and weights differ in length")
            if any(i < 0 for st in stacks for i in st):
                raise ValueError("negative frame index")
            if unit in _UNIT_SECONDS:
                span = (_weight(p.get("endValue", 0), signed=True) - _weight(p.get("startValue", 0), signed=True))
                duration = max(duration, span * _UNIT_SECONDS[unit])
            counts, rate = _counts(weights, unit, own_rate)
            if rate:
                rates.append(rate)
            for stack, count in zip(stacks, counts):
                spid, stid, j = pid, tid, 0
                # A child's stack is rooted by its ancestors' process frames: the last one is the sampled process.
                while roots and len(stack) > j and roots.get(stack[j], ("",))[0] == "process":
                    _, spid, cmd = roots[stack[j]]
                    prof.ensure_process(spid, cmdline=cmd)
                    j += 1
                if roots and len(stack) > j and roots.get(stack[j], ("",))[0] == "thread":
                    _, stid, name = roots[stack[j]]
                    prof.ensure_thread(spid, stid, name)
                    j += 1
                prof.add_indices(spid, stid, tuple([interned[i] for i in stack[j:]]), count)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
            raise InputError(f"malformed speedscope profile {str(p.get('name', ordinal))[:80]!r} ({e})",
                             "the file may be truncated") from None
    if rates:
        prof.metadata.requested_rate = max(set(rates), key=rates.count)
    if duration:
        prof.metadata.duration_s = duration
    return prof


def _evented_to_samples(events: list[dict[str, Any]]) -> tuple[list[list[int]], list[float]]:
    """Open/close events to (stack, time spent with exactly that stack) pairs."""
    acc: dict[tuple[int, ...], float] = {}
    stack: list[int] = []
    last = None
    for ev in events:
        at = _weight(ev["at"], signed=True)
        if last is not None and stack and at > last:
            key = tuple(stack)
            acc[key] = acc.get(key, 0.0) + (at - last)
        last = at
        if ev["type"] == "O":
            stack.append(int(ev["frame"]))
        elif ev["type"] == "C":
            if not stack:
                raise ValueError("close event without an open frame")
            stack.pop()
        else:
            raise ValueError(f"unknown event type {ev['type']!r}")
    return [list(k) for k in acc], list(acc.values())
