"""Process bookkeeping of a recording: which processes were sampled, their facts, roles and CPU time.

Facts (command line, parent, Python version) and CPU seconds are read while each process
is alive, so a worker that exits mid-recording keeps its row, its role and its CPU share.
"""

from __future__ import annotations

import time

from obskit.errors import ObskitError
from obskit.proc import ProcessFacts, ProcFS, classify_roles
from obskit.profile.model import Profile


class ProcessBook:
    """The target (and with ``subprocesses`` its descendants) as seen during one recording."""

    SCAN_EVERY = 2.0

    def __init__(self, fs: ProcFS, pid: int, *, subprocesses: bool) -> None:
        self.fs = fs
        self.pid = pid
        self.subprocesses = subprocesses
        self.facts: dict[int, ProcessFacts] = {}
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._last_scan = 0.0

    def add_target(self, facts: ProcessFacts) -> None:
        self.facts[self.pid] = facts
        self._cpu_first[self.pid] = self._cpu_last[self.pid] = facts.cpu_seconds

    @property
    def target(self) -> ProcessFacts | None:
        return self.facts.get(self.pid)

    def target_alive(self) -> bool:
        return self.fs.exists(self.pid)

    def python_processes(self) -> int:
        """How many Python processes each sample visits (1 without ``subprocesses``)."""
        if not self.subprocesses:
            return 1
        return max(1, sum(1 for f in self.facts.values() if f.is_python and self.fs.exists(f.pid)))

    def scan(self, *, force: bool = False, pids: set[int] | None = None) -> None:
        """Remember facts of every process while it is alive (for roles), and refresh CPU figures."""
        now = time.monotonic()
        if not force and (not self.subprocesses or now - self._last_scan < self.SCAN_EVERY):
            return
        self._last_scan = now
        todo = set(pids or ())
        if self.subprocesses:
            try:
                todo.update(self.fs.descendants(self.pid))
            except ObskitError:
                pass
        for pid in todo - set(self.facts):
            try:
                self.facts[pid] = self.fs.facts(pid)
            except (ObskitError, OSError, IndexError, ValueError):
                continue
            self._cpu_first[pid] = self._cpu_last[pid] = self.facts[pid].cpu_seconds
        self.update_cpu()

    def update_cpu(self) -> None:
        """CPU seconds of every known process, read while it is alive (an exited one keeps its last figure)."""
        self._cpu_last.update(self.fs.cpu_seconds_of(list(self._cpu_first)))

    def label(self, prof: Profile, *, final: bool) -> None:
        """Roles, command lines and (when ``final``) CPU time and exit state of the profile's processes."""
        facts = dict(self.facts)
        classify_roles(facts)
        if final:
            self.update_cpu()
        sampled = {s.pid for s in prof.samples}
        keep = []
        for p in prof.processes:
            f = facts.get(p.pid)
            if f is not None:
                p.role = f.role
                p.cmdline = p.cmdline or f.command
                p.python_version = p.python_version or f.python_version
            if final and not self.fs.exists(p.pid):
                p.exited = True
            if final and p.pid in self._cpu_first:
                p.cpu_seconds = round(self._cpu_last[p.pid] - self._cpu_first[p.pid], 3)
            # py-spy roots children with their ancestors; a non-Python ancestor (a shell) is not a sampled process.
            if p.pid in sampled or p.pid == self.pid or (f is not None and f.is_python):
                keep.append(p)
        prof.processes = keep
