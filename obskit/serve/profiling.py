"""Continuous profiling: every interval, short profile slices of the selected processes.

The slice itself comes from the caller (``commands/serve.py`` passes the profile sampler's
record as a :data:`SliceFn`), which keeps each target under its own pause budget.  This
scheduler adds the node-wide cap on obskit's own CPU (``--max-cpu``, in cores): a token bucket
refilled at that rate; a slice starts only when the bucket holds its estimated cost, and the
targets that did not fit wait for the next interval in round-robin order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from obskit.serve.collect import ProcSample
from obskit.serve.pyroscope import Push, Pusher


@dataclass
class Slice:
    pprof: bytes  # gzipped pprof
    start: float  # epoch seconds, the slice's real bounds
    end: float
    rate: float
    samples: int


# (pid, seconds, stop event) -> a slice, or None when the target could not be sampled
SliceFn = Callable[[int, float, threading.Event], "Slice | None"]
CpuFn = Callable[[], float]  # obskit's CPU seconds so far, children (py-spy) included


@dataclass
class ProfStats:
    slices: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    empty: int = 0


class Profiler:
    def __init__(self, slice_fn: SliceFn, pusher: Pusher, *, interval: float, duration: float, max_cpu: float,
                 cpu_fn: CpuFn, targets: Callable[[], list[ProcSample]], host: str = "",
                 by: tuple[str, ...] = ("role", "service")) -> None:
        self.slice_fn = slice_fn
        self.pusher = pusher
        self.interval = interval
        self.duration = min(duration, interval)
        self.max_cpu = max_cpu
        self.cpu_fn = cpu_fn
        self.targets = targets
        self.host = host
        self.by = by
        self.stats = ProfStats()
        self.stop_event = threading.Event()
        self._queue: deque[int] = deque()
        self._cost = 0.5 * duration * 0.1 + 0.2  # CPU seconds per slice until one is measured
        self._tokens = max_cpu * interval
        self._thread: threading.Thread | None = None
        self._active: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="obskit-serve-profile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """End every slice (each stops its py-spy and lets its target go), then flush the spool once."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        for t in list(self._active):
            t.join(max(0.0, deadline - time.monotonic()))
        self.pusher.replay(deadline=time.monotonic() + min(5.0, max(0.0, deadline - time.monotonic())))

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            self._tokens = min(self.max_cpu * self.interval, self._tokens + self.max_cpu * (t0 - last))
            last = t0
            self.pusher.replay(deadline=t0 + self.interval / 3)
            self._round()
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def _round(self) -> None:
        procs = {p.pid: p for p in self.targets()}
        self._queue = deque([pid for pid in self._queue if pid in procs])
        for pid in sorted(procs):
            if pid not in self._queue:
                self._queue.append(pid)
        chosen: list[ProcSample] = []
        budget = self._tokens
        for _ in range(len(self._queue)):
            if budget < self._cost and (chosen or self._tokens < self._cost):
                break
            pid = self._queue.popleft()
            self._queue.append(pid)
            chosen.append(procs[pid])
            budget -= self._cost
        skipped = len(procs) - len(chosen)
        if skipped:
            self.stats.skipped["cpu-budget"] = self.stats.skipped.get("cpu-budget", 0) + skipped
        if not chosen:
            return
        cpu0 = self.cpu_fn()
        threads = [threading.Thread(target=self._one, args=(p,), name=f"obskit-serve-slice-{p.pid}", daemon=True)
                   for p in chosen]
        for t in threads:
            self._active.add(t)
            t.start()
        for t in threads:
            t.join()
            self._active.discard(t)
        spent = max(0.0, self.cpu_fn() - cpu0)
        self._tokens -= spent
        self._cost = 0.5 * self._cost + 0.5 * (spent / len(chosen))

    def _one(self, p: ProcSample) -> None:
        try:
            sl = self.slice_fn(p.pid, self.duration, self.stop_event)
        except Exception:
            sl = None
        if sl is None:
            self.stats.failed += 1
            return
        self.stats.slices += 1
        if sl.samples == 0:
            self.stats.empty += 1
        labels = {"container": p.container, "pod": p.pod, "host": self.host}
        if "role" in self.by:
            labels["role"] = p.role
        if "pid" in self.by:
            labels["pid"] = str(p.pid)
        with self._lock:
            self.pusher.push(Push(p.service or "python", labels, sl.start, sl.end, max(1, round(sl.rate)), sl.pprof))
