"""obskit's own profile model: stacks per process and thread, with counts and metadata.

A :class:`Profile` is what every collector produces and every renderer reads.  Frames
are interned (``Profile.frames``); a :class:`Sample` is one distinct stack of one
thread with the number of times it was seen.  ``to_dict``/``from_dict`` give the
versioned ``.json`` format (``schema: obskit.profile/1``), which loads back unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from obskit.errors import InputError

SCHEMA = "obskit.profile/1"


@dataclass(frozen=True)
class Frame:
    """One stack frame: function name, file and line (0 when unknown)."""

    name: str
    file: str = ""
    line: int = 0

    def label(self, *, with_line: bool = True) -> str:
        if not self.file:
            return self.name
        return f"{self.name} ({self.file}:{self.line})" if with_line and self.line else f"{self.name} ({self.file})"

    @property
    def short_file(self) -> str:
        return self.file.rsplit("/", 1)[-1]


@dataclass
class ProcessMeta:
    pid: int
    cmdline: str = ""
    role: str = "plain"
    python_version: str | None = None
    exited: bool = False


@dataclass
class ThreadMeta:
    pid: int
    tid: int
    name: str = ""


@dataclass
class Sample:
    """A distinct stack (frame indices, root first) of one thread, seen ``count`` times."""

    pid: int
    tid: int
    frames: tuple[int, ...]
    count: int


@dataclass
class Metadata:
    obskit_version: str = ""
    sampler: str = ""
    start_time: float | None = None  # epoch seconds
    duration_s: float | None = None  # wall-clock time of the recording
    requested_rate: float | None = None
    effective_rate: float | None = None
    mode: str = "blocking"  # blocking | nonblocking
    idle: bool = False
    gil: bool = False
    native: bool = False
    subprocesses: bool = False
    target_pid: int | None = None
    target_cmdline: str = ""
    python_version: str | None = None
    host: str = ""
    container_id: str | None = None
    samples_attempted: int | None = None
    samples_valid: int | None = None
    samples_failed: int | None = None
    pause_share: float | None = None  # estimated share of wall time the target was stopped
    max_overhead: float | None = None  # budget, as a share (0.05 = 5 %)
    end_reason: str = ""  # duration | interrupted | target-exited | loaded
    trace_id: str | None = None
    span_id: str | None = None
    source_format: str = ""
    warnings: list[str] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FunctionStat:
    name: str
    file: str
    line: int
    self_count: int
    total_count: int
    self_share: float
    total_share: float


@dataclass
class ProcessStat:
    pid: int
    cmdline: str
    role: str
    samples: int
    share: float
    top_function: str
    top_function_share: float
    exited: bool


@dataclass
class Profile:
    SCHEMA = SCHEMA

    metadata: Metadata = field(default_factory=Metadata)
    frames: list[Frame] = field(default_factory=list)
    processes: list[ProcessMeta] = field(default_factory=list)
    threads: list[ThreadMeta] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    _frame_index: dict[Frame, int] = field(default_factory=dict, repr=False, compare=False, metadata={"json": False})
    _sample_index: dict[tuple[int, int, tuple[int, ...]], int] = field(
        default_factory=dict, repr=False, compare=False, metadata={"json": False}
    )

    # -- building ---------------------------------------------------------------
    def intern(self, frame: Frame) -> int:
        idx = self._frame_index.get(frame)
        if idx is None:
            if len(self._frame_index) != len(self.frames):
                self._reindex()
                return self.intern(frame)
            idx = len(self.frames)
            self.frames.append(frame)
            self._frame_index[frame] = idx
        return idx

    def add_stack(self, pid: int, tid: int, stack: Iterable[Frame], count: int = 1) -> None:
        """Add ``count`` observations of ``stack`` (root first) in thread ``tid`` of ``pid``."""
        if count <= 0:
            return
        key = (pid, tid, tuple(self.intern(f) for f in stack))
        if len(self._sample_index) != len(self.samples):
            self._reindex()
        i = self._sample_index.get(key)
        if i is None:
            self._sample_index[key] = len(self.samples)
            self.samples.append(Sample(pid, tid, key[2], count))
        else:
            self.samples[i].count += count

    def ensure_process(self, pid: int, **kw: Any) -> ProcessMeta:
        for p in self.processes:
            if p.pid == pid:
                for k, v in kw.items():
                    if v not in (None, ""):
                        setattr(p, k, v)
                return p
        p = ProcessMeta(pid=pid, **kw)
        self.processes.append(p)
        return p

    def ensure_thread(self, pid: int, tid: int, name: str = "") -> ThreadMeta:
        for t in self.threads:
            if t.pid == pid and t.tid == tid:
                if name and not t.name:
                    t.name = name
                return t
        t = ThreadMeta(pid, tid, name)
        self.threads.append(t)
        return t

    def merge(self, other: Profile) -> None:
        """Add every sample of ``other`` (used for segments and for respawned workers)."""
        for p in other.processes:
            self.ensure_process(p.pid, cmdline=p.cmdline, role=p.role, python_version=p.python_version)
        for t in other.threads:
            self.ensure_thread(t.pid, t.tid, t.name)
        for s in other.samples:
            self.add_stack(s.pid, s.tid, [other.frames[i] for i in s.frames], s.count)

    def _reindex(self) -> None:
        self._frame_index = {f: i for i, f in enumerate(self.frames)}
        self._sample_index = {(s.pid, s.tid, s.frames): i for i, s in enumerate(self.samples)}

    # -- reading ----------------------------------------------------------------
    @property
    def total_samples(self) -> int:
        return sum(s.count for s in self.samples)

    def stacks(self) -> Iterator[tuple[Sample, list[Frame]]]:
        for s in self.samples:
            yield s, [self.frames[i] for i in s.frames]

    def process(self, pid: int) -> ProcessMeta | None:
        return next((p for p in self.processes if p.pid == pid), None)

    def thread_name(self, pid: int, tid: int) -> str:
        t = next((t for t in self.threads if t.pid == pid and t.tid == tid), None)
        return t.name if t and t.name else f"thread {tid}"

    def top_functions(self, limit: int | None = 20, *, pid: int | None = None) -> list[FunctionStat]:
        """Functions by self samples: (name, file) grouped, with the line seen most in self samples."""
        total = 0
        self_counts: dict[tuple[str, str], int] = {}
        total_counts: dict[tuple[str, str], int] = {}
        line_counts: dict[tuple[str, str], dict[int, int]] = {}
        for s in self.samples:
            if pid is not None and s.pid != pid:
                continue
            total += s.count
            if not s.frames:
                continue
            seen: set[tuple[str, str]] = set()
            for i in s.frames:
                f = self.frames[i]
                key = (f.name, f.file)
                if key not in seen:
                    seen.add(key)
                    total_counts[key] = total_counts.get(key, 0) + s.count
            leaf = self.frames[s.frames[-1]]
            lk = (leaf.name, leaf.file)
            self_counts[lk] = self_counts.get(lk, 0) + s.count
            lines = line_counts.setdefault(lk, {})
            lines[leaf.line] = lines.get(leaf.line, 0) + s.count
        if total == 0:
            return []
        keys = sorted(total_counts, key=lambda k: (-self_counts.get(k, 0), -total_counts[k], k))
        out = []
        for k in keys[:limit] if limit else keys:
            seen_lines = line_counts.get(k)
            if seen_lines:
                line = max(seen_lines.items(), key=lambda kv: kv[1])[0]
            else:
                line = next((self.frames[i].line for s in self.samples for i in s.frames if self.frames[i].name == k[0]
                             and self.frames[i].file == k[1]), 0)
            sc = self_counts.get(k, 0)
            out.append(FunctionStat(k[0], k[1], line, sc, total_counts[k], sc / total, total_counts[k] / total))
        return out

    def per_process(self) -> list[ProcessStat]:
        total = self.total_samples
        counts: dict[int, int] = {}
        for s in self.samples:
            counts[s.pid] = counts.get(s.pid, 0) + s.count
        pids = {p.pid for p in self.processes} | set(counts)
        out = []
        for pid in pids:
            meta = self.process(pid) or ProcessMeta(pid)
            top = self.top_functions(1, pid=pid)
            out.append(
                ProcessStat(
                    pid=pid,
                    cmdline=meta.cmdline,
                    role=meta.role,
                    samples=counts.get(pid, 0),
                    share=counts.get(pid, 0) / total if total else 0.0,
                    top_function=top[0].name if top else "",
                    top_function_share=top[0].self_share if top else 0.0,
                    exited=meta.exited,
                )
            )
        out.sort(key=lambda p: (-p.samples, p.pid))
        return out

    # -- persistence ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "metadata": asdict(self.metadata),
            "frames": [[f.name, f.file, f.line] for f in self.frames],
            "processes": [asdict(p) for p in self.processes],
            "threads": [asdict(t) for t in self.threads],
            "samples": [[s.pid, s.tid, list(s.frames), s.count] for s in self.samples],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("obskit.profile/"):
            raise InputError("not an obskit profile (no 'schema: obskit.profile/N')", "give a file written by obskit")
        if data["schema"] != SCHEMA:
            raise InputError(f"profile schema {data['schema']!r} is newer than this obskit reads ({SCHEMA})",
                             "upgrade obskit")
        try:
            meta_fields = set(Metadata.__dataclass_fields__)
            meta = Metadata(**{k: v for k, v in data.get("metadata", {}).items() if k in meta_fields})
            prof = cls(metadata=meta)
            prof.frames = [Frame(str(n), str(f), int(ln)) for n, f, ln in data.get("frames", [])]
            prof.processes = [ProcessMeta(**p) for p in data.get("processes", [])]
            prof.threads = [ThreadMeta(**t) for t in data.get("threads", [])]
            nframes = len(prof.frames)
            for pid, tid, frames, count in data.get("samples", []):
                idx = tuple(int(i) for i in frames)
                if any(i < 0 or i >= nframes for i in idx):
                    raise ValueError("frame index out of range")
                prof.samples.append(Sample(int(pid), int(tid), idx, int(count)))
        except (TypeError, ValueError, KeyError) as e:
            raise InputError(f"malformed obskit profile: {e}", "the file may be truncated") from None
        prof._reindex()
        return prof

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")


# -- folded stacks (py-spy raw, flamegraph.pl, inferno) ---------------------------

_FRAME_RE = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_THREAD_RE = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)(?::\s*(?P<name>.*))?$")
_PROCESS_RE = re.compile(r'^process (?P<pid>\d+):"?(?P<cmd>.*?)"?$')


def parse_frame(text: str) -> Frame:
    """``name (file:line)`` → Frame; anything else is a bare name."""
    m = _FRAME_RE.match(text)
    if m and m.group("file"):
        return Frame(m.group("name"), m.group("file"), int(m.group("line") or 0))
    return Frame(text)


def parse_collapsed(lines: Iterable[str], profile: Profile | None = None, *, default_pid: int = 0) -> Profile:
    """Read folded stacks: ``frame;frame;frame COUNT`` per line, root first.

    py-spy's raw output puts ``process PID:"cmd"`` and ``thread (TID): name`` roots
    first when recorded with ``--subprocesses``/``--threads``; they become the
    sample's process and thread instead of frames.
    """
    prof = profile if profile is not None else Profile()
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        stack_text, sep, count_text = line.rpartition(" ")
        if not sep:
            raise InputError(f"line {lineno} is not a folded stack (no sample count)", "expected `a;b;c 12`")
        try:
            count = int(count_text)
        except ValueError:
            raise InputError(f"line {lineno} is not a folded stack (count {count_text[:20]!r})",
                             "expected `a;b;c 12`") from None
        parts = stack_text.split(";") if stack_text else []
        pid, tid = default_pid, 0
        if parts:
            m = _PROCESS_RE.match(parts[0])
            if m:
                pid = int(m.group("pid"))
                prof.ensure_process(pid, cmdline=m.group("cmd"))
                parts = parts[1:]
        if parts:
            m2 = _THREAD_RE.match(parts[0])
            if m2:
                t = m2.group("tid")
                tid = int(t, 16) if t.startswith("0x") else int(t)
                prof.ensure_thread(pid, tid, (m2.group("name") or "").strip())
                parts = parts[1:]
        if pid and prof.process(pid) is None:
            prof.ensure_process(pid)
        prof.add_stack(pid, tid, [parse_frame(p) for p in parts], count)
    return prof


def to_collapsed(profile: Profile, *, with_process: bool | None = None, with_thread: bool = True) -> str:
    """Folded stacks that flamegraph.pl and inferno read (process and thread as root frames)."""
    if with_process is None:
        with_process = len({s.pid for s in profile.samples}) > 1
    out = []
    for s, frames in profile.stacks():
        parts: list[str] = []
        if with_process:
            meta = profile.process(s.pid)
            parts.append(f'process {s.pid}:"{_clean(meta.cmdline if meta else "")}"')
        if with_thread:
            parts.append(f"thread ({s.tid}): {_clean(profile.thread_name(s.pid, s.tid))}")
        parts.extend(_clean(f.label()) for f in frames)
        out.append(f"{';'.join(parts)} {s.count}")
    return "\n".join(out) + ("\n" if out else "")


def _clean(text: str) -> str:
    # ';' separates frames and a newline separates stacks: neither may appear inside a frame.
    return text.replace(";", ":").replace("\n", " ").replace("\r", " ")
