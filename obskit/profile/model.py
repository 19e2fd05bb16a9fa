"""obskit's own profile model: stacks per process and thread, with counts and metadata.

A :class:`Profile` is what every collector produces and every renderer reads.  Frames
are interned (``Profile.frames``); a :class:`Sample` is one distinct stack of one
thread with the number of times it was seen.  ``to_dict``/``from_dict`` give the
versioned ``.json`` format (``schema: obskit.profile/1``), which loads back unchanged.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from obskit.errors import InputError

SCHEMA = "obskit.profile/1"


@dataclass(frozen=True, slots=True)
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
    cpu_seconds: float | None = None  # CPU time the process used during the recording, when measured


@dataclass
class ThreadMeta:
    pid: int
    tid: int
    name: str = ""


@dataclass(slots=True)
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
    # Lookup indexes, built lazily: ``_frames_indexed``/``_samples_indexed`` say how many entries of
    # ``frames``/``samples`` they cover (readers append without them; duplicates are harmless).
    _frame_index: dict[Frame, int] = field(default_factory=dict, repr=False, compare=False, metadata={"json": False})
    _sample_index: dict[tuple[int, int, tuple[int, ...]], int] = field(
        default_factory=dict, repr=False, compare=False, metadata={"json": False}
    )
    _frames_indexed: int = field(default=0, repr=False, compare=False, metadata={"json": False})
    _samples_indexed: int = field(default=0, repr=False, compare=False, metadata={"json": False})

    # -- building ---------------------------------------------------------------
    def intern(self, frame: Frame) -> int:
        if self._frames_indexed != len(self.frames):
            self._reindex()
        idx = self._frame_index.get(frame)
        if idx is None:
            idx = len(self.frames)
            self.frames.append(frame)
            self._frame_index[frame] = idx
            self._frames_indexed += 1
        return idx

    def add_stack(self, pid: int, tid: int, stack: Iterable[Frame], count: int = 1) -> None:
        """Add ``count`` observations of ``stack`` (root first) in thread ``tid`` of ``pid``."""
        if count <= 0:
            return
        self.add_indices(pid, tid, tuple(self.intern(f) for f in stack), count)

    def add_indices(self, pid: int, tid: int, frames: tuple[int, ...], count: int = 1) -> None:
        """Like :meth:`add_stack` with frames already interned (indices into ``self.frames``)."""
        if count <= 0:
            return
        key = (pid, tid, frames)
        if self._samples_indexed != len(self.samples):
            self._reindex()
        i = self._sample_index.get(key)
        if i is None:
            self._sample_index[key] = len(self.samples)
            self.samples.append(Sample(pid, tid, key[2], count))
            self._samples_indexed += 1
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
        self._frames_indexed, self._samples_indexed = len(self.frames), len(self.samples)

    # -- reading ----------------------------------------------------------------
    @property
    def total_samples(self) -> int:
        return sum(s.count for s in self.samples)

    def sample_period(self) -> float:
        """Seconds one sample of one thread stands for: 1 / the rate the recording achieved.

        Values in time units (pprof, speedscope) are count x this period, so they add up to
        the sampled time.  A thread is never sampled for longer than the recording: when
        its samples at the nominal rate would exceed the duration (overlapping segments
        counted twice, a rate that was not met), the period is shortened to fit.
        """
        m = self.metadata
        rate = next((float(r) for r in (m.effective_rate, m.requested_rate)
                     if r and r > 0 and math.isfinite(r)), 100.0)
        period = 1.0 / rate
        if m.duration_s and m.duration_s > 0 and math.isfinite(m.duration_s):
            per_thread: dict[tuple[int, int], int] = {}
            for s in self.samples:
                if s.count > 0:
                    per_thread[(s.pid, s.tid)] = per_thread.get((s.pid, s.tid), 0) + s.count
            most = max(per_thread.values(), default=0)
            if most and most * period > m.duration_s * 1.001:
                period = m.duration_s / most
        return period

    def stacks(self) -> Iterator[tuple[Sample, list[Frame]]]:
        for s in self.samples:
            yield s, [self.frames[i] for i in s.frames]

    def process(self, pid: int) -> ProcessMeta | None:
        return next((p for p in self.processes if p.pid == pid), None)

    def thread_name(self, pid: int, tid: int) -> str:
        t = next((t for t in self.threads if t.pid == pid and t.tid == tid), None)
        return t.name if t and t.name else f"thread {tid}"

    def function_ids(self) -> tuple[array[int], list[str], list[str]]:
        """Frames grouped by (name, file): the group id of every frame, and each group's name and file."""
        by_name: dict[str, int] = {}  # most names have one file: no (name, file) tuple for them
        pairs: dict[tuple[str, str], int] = {}
        names: list[str] = []
        files: list[str] = []
        frame_key = array("i")
        for f in self.frames:
            i = by_name.get(f.name)
            if i is None:
                i = by_name[f.name] = len(names)
                names.append(f.name)
                files.append(f.file)
            elif files[i] != f.file:
                k = (f.name, f.file)
                i = pairs.get(k)
                if i is None:
                    i = pairs[k] = len(names)
                    names.append(f.name)
                    files.append(f.file)
            frame_key.append(i)
        return frame_key, names, files

    def top_functions(self, limit: int | None = 20, *, pid: int | None = None) -> list[FunctionStat]:
        """Functions by self samples: (name, file) grouped, with the line seen most in self samples."""
        # Frames are mapped to (name, file) ids once; per sample only integer work remains.
        frame_key, names, files = self.function_ids()
        total = 0
        self_counts = [0] * len(names)
        total_counts = [0] * len(names)
        for s in self.samples:
            if pid is not None and s.pid != pid:
                continue
            c = s.count
            if c <= 0:
                continue
            total += c
            fr = s.frames
            if not fr:
                continue
            if len(fr) == 1:
                total_counts[frame_key[fr[0]]] += c
            else:
                for i in {frame_key[j] for j in fr}:
                    total_counts[i] += c
            self_counts[frame_key[fr[-1]]] += c
        if total == 0:
            return []

        def rank(i: int) -> tuple[int, int, str, str]:
            return (-self_counts[i], -total_counts[i], names[i], files[i])

        seen = (i for i in range(len(names)) if total_counts[i])
        chosen = heapq.nsmallest(limit, seen, key=rank) if limit else sorted(seen, key=rank)
        # The line of each chosen function: the one seen most in its self samples, else its first frame's.
        want = set(chosen)
        line_counts: dict[int, dict[int, int]] = {}
        first_line: dict[int, int] = {}
        for s in self.samples:
            if (pid is not None and s.pid != pid) or s.count <= 0 or not s.frames:
                continue
            leaf = s.frames[-1]
            k = frame_key[leaf]
            if k in want:
                lines = line_counts.setdefault(k, {})
                ln = self.frames[leaf].line
                lines[ln] = lines.get(ln, 0) + s.count
            if len(first_line) < len(want):
                for j in s.frames:
                    k = frame_key[j]
                    if k in want and k not in first_line:
                        first_line[k] = self.frames[j].line
        out = []
        for i in chosen:
            seen_lines = line_counts.get(i)
            line = max(seen_lines.items(), key=lambda kv: kv[1])[0] if seen_lines else first_line.get(i, 0)
            sc, tc = self_counts[i], total_counts[i]
            out.append(FunctionStat(names[i], files[i], line, sc, tc, sc / total, tc / total))
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
            meta = _metadata_from(data.get("metadata"))
            prof = cls(metadata=meta)
            prof.frames = [Frame(str(n), str(f), int(ln)) for n, f, ln in data.get("frames", [])]
            prof.processes = [ProcessMeta(**p) for p in data.get("processes", [])]
            prof.threads = [ThreadMeta(**t) for t in data.get("threads", [])]
            nframes = len(prof.frames)
            for pid, tid, frames, count in data.get("samples", []):
                idx = tuple(int(i) for i in frames)
                if any(i < 0 or i >= nframes for i in idx):
                    raise ValueError("frame index out of range")
                if int(count) < 0:
                    raise ValueError("negative sample count")
                prof.samples.append(Sample(int(pid), int(tid), idx, int(count)))
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
            raise InputError(f"malformed obskit profile: {e}", "the file may be truncated") from None
        return prof

    def save(self, path: str | Path) -> None:
        from obskit.safefile import write_bytes

        write_bytes(path, json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8"))


def _metadata_from(raw: Any) -> Metadata:
    """Metadata of a loaded file: a field of the wrong type keeps its default (it is only shown, never trusted)."""
    if raw is None:
        return Metadata()
    if not isinstance(raw, dict):
        raise ValueError("metadata is not an object")
    kept: dict[str, Any] = {}
    for name, f in Metadata.__dataclass_fields__.items():
        v = raw.get(name)
        kind = str(f.type)
        if v is None:
            ok = "None" in kind
        elif kind.startswith("list[dict"):
            ok = isinstance(v, list) and all(isinstance(x, dict) for x in v)
        elif kind.startswith("list[str"):
            ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
        elif kind.startswith("bool"):
            ok = isinstance(v, bool)
        elif kind.startswith("int"):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind.startswith("float"):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        else:
            ok = isinstance(v, str)
        if name in raw and ok:
            kept[name] = v
    return Metadata(**kept)


# -- folded stacks (py-spy raw, flamegraph.pl, inferno) ---------------------------

# Split at the first " (": Python names never contain it, file names may hold parentheses.
_FRAME_RE = re.compile(r"^(?P<name>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_THREAD_RE = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)(?::\s*(?P<name>.*))?$")
_PROCESS_RE = re.compile(r'^process (?P<pid>\d+):"?(?P<cmd>.*?)"?$')


def parse_frame(text: str) -> Frame:
    """``name (file:line)`` → Frame; anything else is a bare name."""
    name, sep, rest = text.partition(" (")
    if sep and len(rest) > 1 and rest[-1] == ")":
        inner = rest[:-1]
        file, colon, line = inner.rpartition(":")
        if colon and line.isascii() and line.isdigit() and len(line) < 10 and file:
            return Frame(name, file, int(line))
        if not colon or file:
            return Frame(name, inner, 0)
    return Frame(text)


_TEXT_CACHE = 100_000


def parse_collapsed(lines: Iterable[str], profile: Profile | None = None, *, default_pid: int = 0) -> Profile:
    """Read folded stacks: ``frame;frame;frame COUNT`` per line, root first.

    py-spy's raw output puts ``process PID:"cmd"`` and ``thread (TID): name`` roots
    first when recorded with ``--subprocesses``/``--threads``; they become the
    sample's process and thread instead of frames.  ``lines`` is consumed as a stream
    (an open file works): memory follows the distinct frames and stacks, not the file.
    """
    prof = profile if profile is not None else Profile()
    # Frame text -> index, for the texts seen first (stack prefixes repeat: they are parsed once);
    # bounded, because a profile of a million unique leaves would hold every text twice.
    interned: dict[str, int] = {}
    by_frame: dict[Frame, int] = {}  # the dedupe itself: one index per distinct frame
    files: dict[str, str] = {}  # one string object per file name, shared by its frames
    frames, samples = prof.frames, prof.samples
    seen_threads: set[tuple[int, int]] = set()
    seen_pids: set[int] = set()
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        stack_text, sep, count_text = line.rpartition(" ")
        if not sep:
            raise InputError(f"line {lineno} is not a folded stack (no sample count)", "expected `a;b;c 12`")
        try:
            if len(count_text) > 19:
                raise ValueError
            count = int(count_text)
        except ValueError:
            raise InputError(f"line {lineno} is not a folded stack (count {count_text[:20]!r})",
                             "expected `a;b;c 12`") from None
        parts = stack_text.split(";") if stack_text else []
        pid, tid = default_pid, 0
        # py-spy -s roots a child's stack with its ancestors' process frames: the last one is the sampled process.
        while parts:
            m = _PROCESS_RE.match(parts[0])
            if not m:
                break
            pid = int(m.group("pid"))
            prof.ensure_process(pid, cmdline=m.group("cmd"))
            seen_pids.add(pid)
            parts = parts[1:]
        if parts:
            m2 = _THREAD_RE.match(parts[0])
            if m2:
                t = m2.group("tid")
                tid = int(t, 16) if t.startswith("0x") else int(t)
                if (pid, tid) not in seen_threads:
                    seen_threads.add((pid, tid))
                    prof.ensure_thread(pid, tid, (m2.group("name") or "").strip())
                parts = parts[1:]
        if pid and pid not in seen_pids:
            seen_pids.add(pid)
            prof.ensure_process(pid)
        idx = []
        for part in parts:
            i = interned.get(part)
            if i is None:
                f = parse_frame(part)
                if f.file:
                    f = Frame(f.name, files.setdefault(f.file, f.file), f.line)
                i = by_frame.get(f)
                if i is None:
                    i = by_frame[f] = len(frames)
                    frames.append(f)
                if len(interned) < _TEXT_CACHE:
                    interned[part] = i
            idx.append(i)
        if count > 0:
            # Appended without the sample index: a repeated stack stays two entries, which every reader sums.
            samples.append(Sample(pid, tid, tuple(idx), count))
    return prof


def to_collapsed(profile: Profile, *, with_process: bool | None = None, with_thread: bool = True) -> str:
    """Folded stacks that flamegraph.pl and inferno read (process and thread as root frames)."""
    if with_process is None:
        with_process = len({s.pid for s in profile.samples}) > 1
    labels = [_clean(f.label()) for f in profile.frames]
    roots: dict[tuple[int, int], str] = {}
    out = []
    for s in profile.samples:
        root = roots.get((s.pid, s.tid))
        if root is None:
            parts: list[str] = []
            if with_process:
                meta = profile.process(s.pid)
                parts.append(f'process {s.pid}:"{_clean(meta.cmdline if meta else "")}"')
            if with_thread:
                parts.append(f"thread ({s.tid}): {_clean(profile.thread_name(s.pid, s.tid))}")
            root = roots[(s.pid, s.tid)] = "".join(p + ";" for p in parts)
        stack = ";".join([labels[i] for i in s.frames])
        out.append(f"{root}{stack} {s.count}" if stack or not root else f"{root[:-1]} {s.count}")
    return "\n".join(out) + ("\n" if out else "")


# Every character str.splitlines() breaks on: a reader using it must still see one stack per line.
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))


def _clean(text: str) -> str:
    # ';' separates frames and a newline separates stacks: neither may appear inside a frame.
    return text.replace(";", ":").translate(_LINE_BREAKS)
