"""Log sources and their reader threads.

Sources are files (plain paths, globs, directories), stdin, or the files a process has open
(``/proc/PID/fd``).  One reader thread per source splits the bytes into lines (capping
over-long ones), and puts batches on a bounded queue: ``block`` waits for room, ``drop``
drops the batch and counts its lines.  Following survives rotation by rename (the old
file is drained to its end, then the new one is read from its start) and truncation
(read again from the start, with a counted gap marker: lines written between the last
read and the truncation may be missing).
"""

from __future__ import annotations

import glob
import os
import queue
import stat
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from obskit.errors import InputError, TargetNotFound, UsageError
from obskit.logs.model import Marker

BLOCK = 1 << 19
POLL = 0.1
FINGERPRINT = 64
LOG_SUFFIXES = (".log", ".json", ".jsonl", ".ndjson", ".txt", ".out", ".err")
NOT_LOGS = (".db", ".sqlite", ".sqlite3", ".pyc", ".so", ".lock", ".pid", ".sock", "-journal", "-wal", "-shm", ".tmp",
            ".swp", ".zip", ".gz", ".whl", ".tar")


@dataclass
class SourceSpec:
    label: str
    path: str | None  # None: stdin
    note: str = ""
    wait: bool = False  # followed, not there yet: wait for it to appear


@dataclass
class Batch:
    source: str
    lines: list[bytes]
    capped: list[int] = field(default_factory=list)
    data: bytes = b""  # or: whole lines as one chunk, each ending in a newline (``lines`` empty)
    count: int = 0  # the lines in ``data``


@dataclass
class Eof:
    source: str


class LineSplitter:
    """Bytes in, complete lines out; lines longer than ``cap`` bytes are cut (and reported)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = b""
        self.skipping = False

    def feed(self, data: bytes) -> tuple[list[bytes], list[int]]:
        cap = self.cap
        if self.skipping:
            i = data.find(b"\n")
            if i < 0:
                return [], []
            data = data[i + 1:]
            self.skipping = False
        if self.buf:
            data = self.buf + data
        lines = data.split(b"\n")
        self.buf = lines.pop()
        capped: list[int] = []
        if lines and max(map(len, lines)) > cap:
            for i, line in enumerate(lines):
                if len(line) > cap:
                    lines[i] = line[:cap]
                    capped.append(i)
        if len(self.buf) > cap:
            lines.append(self.buf[:cap])
            capped.append(len(lines) - 1)
            self.buf = b""
            self.skipping = True
        return lines, capped

    def feed_chunk(self, data: bytes) -> tuple[bytes, list[bytes], list[int]]:
        """Like :meth:`feed`, but the complete lines come back as one chunk (split later, and only
        where needed); only a line still open and already longer than ``cap`` is cut here."""
        if self.skipping:
            i = data.find(b"\n")
            if i < 0:
                return b"", [], []
            data = data[i + 1:]
            self.skipping = False
        if self.buf:
            data = self.buf + data
        i = data.rfind(b"\n")
        chunk, self.buf = (data[: i + 1], data[i + 1:]) if i >= 0 else (b"", data)
        if len(self.buf) > self.cap:
            cut, self.buf = self.buf[: self.cap], b""
            self.skipping = True
            return chunk, [cut], [0]
        return chunk, [], []

    def flush(self) -> list[bytes]:
        rest, self.buf, self.skipping = self.buf, b"", False
        return [rest] if rest else []


class Reader(threading.Thread):
    """Reads one source into the queue."""

    def __init__(self, spec: SourceSpec, q: queue.Queue[object], *, follow: bool, block: bool, cap: int,
                 tail: int | None, stop: threading.Event) -> None:
        super().__init__(name=f"obskit-logs-{spec.label}", daemon=True)
        self.spec = spec
        self.q = q
        self.follow = follow
        self.block = block
        self.tail = tail
        self.stop = stop
        self.splitter = LineSplitter(cap)
        self.lines_read = 0
        self.bytes_read = 0
        self.dropped = 0
        self.capped = 0
        self.rotations = 0
        self.gaps = 0
        self.error: str | None = None
        self.sink: Callable[[object], None] | None = None  # read_range: items go here, not to the queue
        self.head = b""  # fingerprints of what was read (see _remember)
        self.before = b""

    def read_range(self, start: int, end: int | None, sink: Callable[[object], None]) -> None:
        """Bytes ``start``..``end`` (None: to the end) of the file, both on line starts, read in
        this thread, each item handed to ``sink``; no Eof."""
        self.sink = sink
        assert self.spec.path is not None
        try:
            with open(self.spec.path, "rb", buffering=0) as f:
                f.seek(start)
                left = (1 << 62) if end is None else end - start
                while left > 0:
                    data = f.read(min(BLOCK, left))
                    if not data:
                        break
                    left -= len(data)
                    self.bytes_read += len(data)
                    self._feed(data)
        except BrokenPipeError:
            raise  # our reader went away (the sink writes): not a reading error
        except OSError as e:
            self.error = f"{self.spec.label}: {e.strerror or e}"
            self._marker("error", f"reading stopped: {e.strerror or e}")
        self._emit(self.splitter.flush(), [])

    # -- queue ----------------------------------------------------------------------
    def _put(self, item: object, lines: int = 0) -> None:
        if self.sink is not None:
            self.sink(item)
            return
        if self.block or not lines:
            while not self.stop.is_set() and not self._put_wait(item):
                pass
            return
        try:
            self.q.put_nowait(item)
        except queue.Full:
            self.dropped += lines

    def _put_wait(self, item: object) -> bool:
        try:
            self.q.put(item, timeout=0.2)
        except queue.Full:
            return False
        return True

    def _emit(self, lines: list[bytes], capped: list[int]) -> None:
        if not lines:
            return
        self.lines_read += len(lines)
        self.capped += len(capped)
        self._put(Batch(self.spec.label, lines, capped), len(lines))

    def _feed(self, data: bytes) -> None:
        chunk, lines, capped = self.splitter.feed_chunk(data)
        if chunk:
            n = chunk.count(b"\n")
            self.lines_read += n
            self._put(Batch(self.spec.label, [], [], chunk, n), n)
        self._emit(lines, capped)

    def _marker(self, kind: str, text: str, gap: bool = False) -> None:
        self._put(Marker(self.spec.label, kind, text, gap=gap))

    # -- reading --------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self.spec.path is None:
                self._read_fd(sys.stdin.buffer.fileno())
            else:
                self._read_file(self.spec.path)
        except OSError as e:
            self.error = f"{self.spec.label}: {e.strerror or e}"
            self._marker("error", f"reading stopped: {e.strerror or e}")
        finally:
            self._emit(self.splitter.flush(), [])
            self._put(Eof(self.spec.label))

    def _read_fd(self, fd: int) -> None:
        while not self.stop.is_set():
            data = os.read(fd, BLOCK)
            if not data:
                return
            self.bytes_read += len(data)
            self._feed(data)

    def _read_file(self, path: str) -> None:
        if self.follow and self.spec.wait and not os.path.exists(path):
            # `tail -F`: a file that does not exist yet is waited for, then read from its start
            while not os.path.exists(path):
                if self.stop.wait(POLL):
                    return
            self._marker("appeared", f"{self.spec.label} appeared; reading it from its start")
            self.tail = None
        f: BinaryIO = open(path, "rb", buffering=0)
        try:
            if self.tail is not None:
                f.seek(_tail_offset(f, self.tail))
            while True:
                self._drain(f)
                self._remember(f)
                if not self.follow or self.stop.is_set():
                    return
                if self.stop.wait(POLL):
                    return
                f = self._follow_step(path, f)
        finally:
            f.close()

    def _drain(self, f: BinaryIO) -> None:
        while not self.stop.is_set():
            data = f.read(BLOCK)
            if not data:
                return
            self.bytes_read += len(data)
            self._feed(data)

    def _remember(self, f: BinaryIO) -> None:
        """Fingerprint what was read: the file's first bytes and the bytes just before the read
        offset.  If either changes while the file is no shorter than the offset, the file was
        truncated and written again past the offset between two polls (copytruncate)."""
        fd = f.fileno()
        pos = f.tell()
        if len(self.head) < FINGERPRINT:
            self.head = os.pread(fd, FINGERPRINT, 0)
        k = min(FINGERPRINT, pos)
        self.before = os.pread(fd, k, pos - k) if k else b""

    def _rewritten(self, f: BinaryIO, pos: int) -> bool:
        fd = f.fileno()
        if self.head and os.pread(fd, len(self.head), 0) != self.head:
            return True
        k = len(self.before)
        return bool(k) and os.pread(fd, k, pos - k) != self.before

    def _follow_step(self, path: str, f: BinaryIO) -> BinaryIO:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return f  # rotated away and not yet recreated: keep the old one
        fst = os.fstat(f.fileno())
        if (st.st_ino, st.st_dev) != (fst.st_ino, fst.st_dev):
            self._drain(f)  # the last lines written to the old file before the rename
            self._emit(self.splitter.flush(), [])
            f.close()
            f = open(path, "rb", buffering=0)
            self.rotations += 1
            self.head = self.before = b""
            self._marker("rotated", f"{self.spec.label} was rotated; reading the new file from its start")
            return f
        pos = f.tell()
        if fst.st_size < pos:
            self._restart(f, f"{self.spec.label} was truncated ({pos} -> {fst.st_size} bytes); lines written "
                          "between the last read and the truncation may be missing (count unknown)")
        elif self._rewritten(f, pos):
            self._restart(f, f"{self.spec.label} was truncated and written again past the read offset ({pos} bytes) "
                          "between two reads (copytruncate?): lines written between the last read and the "
                          "truncation are missing (count unknown); reading the new contents from the start")
        return f

    def _restart(self, f: BinaryIO, text: str) -> None:
        self.gaps += 1
        f.seek(0)
        self.splitter.flush()
        self.head = self.before = b""
        self._marker("truncated", text, gap=True)


def line_start_after(path: str, offset: int, is_continuation: Callable[[str], object], limit: int = 1 << 20) -> int:
    """The first line start at or after ``offset`` whose line does not continue the one before
    it (a traceback line stays with its record); the file's size when there is none near."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if offset <= 0:
            return 0
        f.seek(offset - 1)
        data = f.read(limit)
    pos = data.find(b"\n")
    while 0 <= pos < len(data) - 1:
        start = pos + 1
        if not is_continuation(data[start:start + 200].decode("utf-8", "replace")):
            return offset - 1 + start
        pos = data.find(b"\n", start)
    return size


def _tail_offset(f: BinaryIO, n: int) -> int:
    """Offset of the start of the last ``n`` lines of a seekable file."""
    end = f.seek(0, os.SEEK_END)
    if n <= 0:
        return end
    pos, newlines = end, 0
    # a trailing newline ends the last line; it does not start a new one
    f.seek(max(0, end - 1))
    if f.read(1) == b"\n":
        pos = end - 1
    chunk = 65536
    while pos > 0:
        start = max(0, pos - chunk)
        f.seek(start)
        data = f.read(pos - start)
        idx = len(data)
        while True:
            idx = data.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            newlines += 1
            if newlines == n:
                return start + idx + 1
        pos = start
    return 0


# ---------------------------------------------------------------------------------------
# resolving what to read


def is_glob(arg: str) -> bool:
    return any(c in arg for c in "*?[")


def resolve_paths(args: list[str], follow: bool = False) -> list[SourceSpec]:
    """Sources for the paths given.  Followed (``follow``), a glob may match nothing yet and a
    file may not exist yet, as long as their directory does (they are waited for)."""
    specs: list[SourceSpec] = []
    for arg in args:
        if arg == "-":
            specs.append(SourceSpec("stdin", None))
            continue
        if is_glob(arg):
            matches = sorted(p for p in glob.glob(arg) if os.path.isfile(p))
            if not matches and not (follow and glob.glob(os.path.dirname(arg) or ".")):
                raise InputError(f"no files match {arg!r}", "check the pattern (quote it so the shell does not expand it)")
            specs.extend(SourceSpec("", p) for p in matches)
            continue
        if os.path.isdir(arg):
            found = sorted(os.path.join(arg, n) for n in os.listdir(arg)
                           if n.endswith(LOG_SUFFIXES) and os.path.isfile(os.path.join(arg, n)))
            if not found:
                raise InputError(f"no log files in directory {arg}", f"files ending in {', '.join(LOG_SUFFIXES)} are read")
            specs.extend(SourceSpec("", p) for p in found)
            continue
        if not os.path.exists(arg):
            if follow and os.path.isdir(os.path.dirname(arg) or "."):
                specs.append(SourceSpec("", arg, wait=True))
                continue
            raise InputError(f"no such file: {arg}", "check the path; use '-' to read stdin")
        if not os.access(arg, os.R_OK):
            raise InputError(f"cannot read {arg}: permission denied", "run as the file's owner or as root")
        specs.append(SourceSpec("", arg))
    return label_sources(specs)


def new_glob_matches(patterns: list[str], have: list[SourceSpec]) -> list[SourceSpec]:
    """Files matching ``patterns`` now that are not among ``have`` (for ``-f GLOB``)."""
    known = {os.path.realpath(s.path) for s in have if s.path is not None}
    out: list[SourceSpec] = []
    for pattern in patterns:
        for p in sorted(glob.glob(pattern)):
            real = os.path.realpath(p)
            if real not in known and os.path.isfile(p):
                known.add(real)
                out.append(SourceSpec(os.path.basename(p), p))
    taken = {s.label for s in have}
    for s in out:
        if s.label in taken:
            s.label = f"{s.label}#{len(taken)}"
        taken.add(s.label)
    return out


def label_sources(specs: list[SourceSpec]) -> list[SourceSpec]:
    """Short unique labels: the file name, or as many trailing path parts as needed."""
    seen: set[str] = set()
    files = [s for s in specs if s.path is not None and not s.label]
    parts = [os.path.normpath(s.path or "").split(os.sep) for s in files]
    depth = [1] * len(files)
    for _ in range(8):
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        if all(n == 1 for n in counts.values()):
            break
        depth = [d + 1 if counts[label] > 1 else d for d, label in zip(depth, labels)]
    for s, p, d in zip(files, parts, depth):
        s.label = "/".join(p[-d:])
    out: list[SourceSpec] = []
    for s in specs:
        if s.path is not None and any(o.path == s.path for o in out):
            continue
        if s.label in seen:
            s.label = f"{s.label}#{len(out)}"
        seen.add(s.label)
        out.append(s)
    return out


@dataclass
class PidSources:
    specs: list[SourceSpec]
    notes: list[str]


def pid_sources(pid: int, proc_root: str = "/proc") -> PidSources:
    """The log files process ``pid`` has open for writing, its stdout/stderr when they are files,
    and its container's CRI log file when the node's /var/log/containers is visible."""
    fd_dir = os.path.join(proc_root, str(pid), "fd")
    if not os.path.isdir(os.path.join(proc_root, str(pid))):
        raise TargetNotFound(f"process {pid} not found", "list processes with `obskit ps`", pid=pid)
    from obskit.proc import ProcFS

    fs = ProcFS(proc_root)
    if fs.is_zombie(pid):
        raise fs.zombie_error(pid)
    try:
        fds = sorted(os.listdir(fd_dir), key=lambda n: int(n) if n.isdigit() else 1 << 30)
    except PermissionError:
        from obskit.errors import PermissionDenied

        raise PermissionDenied(f"cannot list {fd_dir}", "run as the process's user or as root", pid=pid) from None
    except FileNotFoundError:
        raise TargetNotFound(f"process {pid} exited", "list processes with `obskit ps`", pid=pid) from None
    specs: list[SourceSpec] = []
    notes: list[str] = []
    for name in fds:
        link = os.path.join(fd_dir, name)
        try:
            target = os.readlink(link)
            st = os.stat(link)
        except OSError:
            continue
        std = name in ("1", "2")
        stream = {"1": "stdout", "2": "stderr"}.get(name, f"fd {name}")
        if not stat.S_ISREG(st.st_mode):
            if std and (target.startswith(("pipe:", "socket:")) or target.startswith("/dev/pts")):
                notes.append(f"{stream} of {pid} is {target}: read it where it ends up (e.g. `kubectl logs`, "
                             "`docker logs`, journalctl) and pipe it in: ... | obskit logs -")
            continue
        deleted = target.endswith(" (deleted)")
        clean = target[: -len(" (deleted)")] if deleted else target
        if not std:
            if clean.endswith(NOT_LOGS) or clean.startswith(("/dev/", "/proc/", "/sys/")):
                continue
            if not _opened_for_write(proc_root, pid, name) and not clean.endswith(LOG_SUFFIXES):
                continue
        path = link if deleted or not os.path.exists(clean) else clean
        if any(s.path == path or s.note == clean for s in specs):
            continue
        specs.append(SourceSpec("", path, note=clean))
        if deleted:
            notes.append(f"{clean} was deleted but {pid} still writes to it; reading it through {link}")
    specs.extend(_cri_files(proc_root, pid, specs))
    for s in specs:
        s.label = os.path.basename(s.note or s.path or "")
    return PidSources(label_sources(specs), notes)


def _opened_for_write(proc_root: str, pid: int, fd: str) -> bool:
    try:
        with open(os.path.join(proc_root, str(pid), "fdinfo", fd)) as f:
            for line in f:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & 0o3 in (1, 2)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _cri_files(proc_root: str, pid: int, have: list[SourceSpec]) -> list[SourceSpec]:
    from obskit.proc import ProcFS, container_ids

    try:
        cid, _ = container_ids(ProcFS(proc_root).cgroup_lines(pid))
    except Exception:
        return []
    if not cid or not os.path.isdir("/var/log/containers"):
        return []
    out = []
    for name in sorted(os.listdir("/var/log/containers")):
        if cid[:12] in name:
            p = os.path.join("/var/log/containers", name)
            if not any(s.path == p for s in have):
                out.append(SourceSpec("", p, note=p))
    return out


def check_stdin_usable(specs: list[SourceSpec]) -> None:
    if not any(s.path is None for s in specs):
        return
    if sys.stdin is None:
        raise InputError("'-' reads stdin, but stdin is closed", "pipe logs in: kubectl logs -f deploy/api | obskit logs -f")
    if sys.stdin.isatty():
        raise UsageError("'-' reads stdin, but stdin is a terminal", "pipe logs in: kubectl logs -f deploy/api | obskit logs -f")


class RecentDrops:
    """Tracks drop counts per reader to turn increases into markers."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.history: deque[tuple[str, int]] = deque(maxlen=100)

    def new_drops(self, readers: list[Reader]) -> list[tuple[str, int]]:
        out = []
        for r in readers:
            before = self.seen.get(r.spec.label, 0)
            if r.dropped > before:
                out.append((r.spec.label, r.dropped - before))
                self.seen[r.spec.label] = r.dropped
        self.history.extend(out)
        return out
