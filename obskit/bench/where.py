"""Where the time went: after a confirmed regression, a few extra runs of each side under the profiler.

Each run is the bundled sampler (py-spy, found through :mod:`obskit.pyspy`) starting the command
itself, so sampling begins with the interpreter's first instruction (attaching to a running
PID, as ``obskit profile record`` does, misses most of a command of a few hundred
milliseconds), at an explicit rate high enough for short commands, its chatter discarded.
The folded stacks of one side are merged and compared by the caller.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from obskit.bench.runner import SideSpec

MIN_SAMPLES = 20  # per side, below which a diff says more about sampling than about the code
PROFILE_TIMEOUT = 600.0


@dataclass
class Recorded:
    side: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    short: int = 0  # runs that ended before a single sample


def rate_for(median_wall: float) -> int:
    """Samples per second giving a few hundred samples per run, within py-spy's reach."""
    if median_wall <= 0:
        return 1000
    return int(min(1000, max(100, 300.0 / median_wall)))


SAMPLES_WANTED = 3000  # per side: the share of an 80 % function is then known to about ±1 point


def runs_for(median_wall: float, rate: int) -> int:
    """Profiled runs per side for about SAMPLES_WANTED samples (3 to 30)."""
    per_run = max(1.0, median_wall * rate)
    return int(min(30, max(3, -(-SAMPLES_WANTED // per_run))))


def record(side: SideSpec, directory: str, *, runs: int, rate: int, median_wall: float) -> Recorded:
    from obskit import pyspy
    from obskit.errors import ObskitError

    out = Recorded(side.name)
    try:
        binary = pyspy.binary()
    except ObskitError as e:
        out.notes.append(f"{side.name}: not profiled: {e.message}")
        return out
    env = dict(side.env if side.env is not None else os.environ)
    env["RUST_BACKTRACE"] = "0"  # as obskit.pyspy.env(), on the side's own environment
    for i in range(runs):
        path = os.path.join(directory, f"{side.name}-{i + 1}.txt")
        argv = [binary, "record", "--rate", str(rate), "--format", "raw", "--subprocesses", "--output", path,
                "--", *side.argv]
        try:
            p = subprocess.run(argv, cwd=side.cwd or None, env=env, capture_output=True, text=True,
                               timeout=max(PROFILE_TIMEOUT, 20 * median_wall), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            out.notes.append(f"{side.name}: profiled run {i + 1} took too long and was stopped")
            continue
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            if p.returncode == 0 or "Samples: 0" in (p.stderr or "") or "No python processes" in (p.stderr or ""):
                out.short += 1  # it ended before the sampler found its interpreter
                continue
            else:
                from obskit.inert import inert

                tail = inert((p.stderr or "").strip()[-300:], multiline=True).splitlines()[-1:] or [""]
                out.notes.append(f"{side.name}: profiling failed (exit {p.returncode}): {tail[0]}")
            break
        out.files.append(path)
    if out.short and not out.files:
        out.notes.append(f"{side.name}: too short to sample (every run ended before the sampler's first sample "
                         f"at {rate} Hz; make the benchmark run longer)")
    elif out.short:
        out.notes.append(f"{side.name}: {out.short} of {runs} profiled runs ended before their first sample")
    return out
