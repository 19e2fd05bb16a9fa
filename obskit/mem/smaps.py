"""Where a process's memory is: /proc/N/smaps_rollup totals and a per-kind breakdown from smaps.

Kinds: ``heap`` (brk heap), ``anon`` (other private anonymous memory: malloc arenas,
pymalloc arenas, numpy buffers), ``stacks`` (the main stack and thread stacks: an
anonymous rw mapping right above a PROT_NONE guard page; arenas put their PROT_NONE
reserve *above* the used part, so they do not match), ``libs`` (shared objects and the
executable), ``files`` (other file mappings), ``shmem`` (/dev/shm, memfd, SysV) and
``other`` (vdso and friends).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from obskit.errors import PermissionDenied, TargetNotFound
from obskit.proc import ProcFS

_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+\S+\s+\S+\s+(\d+)\s*(.*)$")
MAX_GUARD = 1 << 20
KINDS = ("heap", "anon", "stacks", "libs", "files", "shmem", "other")
_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty", "Swap", "SwapPss", "Anonymous")


@dataclass
class Totals:
    """Bytes of one process (rollup) or one kind of mapping."""

    rss: int = 0
    pss: int = 0
    uss: int = 0  # Private_Clean + Private_Dirty: what killing the process would free
    shared: int = 0
    swap: int = 0
    anonymous: int = 0
    mappings: int = 0

    def add(self, values: dict[str, int]) -> None:
        self.rss += values.get("Rss", 0)
        self.pss += values.get("Pss", 0)
        self.uss += values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
        self.shared += values.get("Shared_Clean", 0) + values.get("Shared_Dirty", 0)
        self.swap += values.get("Swap", 0)
        self.anonymous += values.get("Anonymous", 0)
        self.mappings += 1


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    inode: int
    path: str
    values: dict[str, int] = field(default_factory=dict)


def parse_kb_fields(text: str) -> dict[str, int]:
    """``Key:   123 kB`` lines → bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep or " " in key:
            continue
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def parse_smaps(text: str) -> list[Mapping]:
    maps: list[Mapping] = []
    cur: Mapping | None = None
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            cur = Mapping(int(m.group(1), 16), int(m.group(2), 16), m.group(3), int(m.group(4)), m.group(5).strip())
            maps.append(cur)
            continue
        if cur is None:
            continue
        key, sep, rest = line.partition(":")
        if sep and key in _FIELDS:
            parts = rest.split()
            if parts and parts[0].isdigit():
                cur.values[key] = int(parts[0]) * 1024
    return maps


def classify(maps: list[Mapping]) -> list[str]:
    """The kind of each mapping (see the module docstring)."""
    kinds: list[str] = []
    for i, m in enumerate(maps):
        p = m.path
        if p == "[heap]":
            kind = "heap"
        elif p.startswith("[stack"):
            kind = "stacks"
        elif p.startswith("[") or p.startswith("//anon"):
            kind = "other"
        elif p.startswith(("/dev/shm", "/memfd:", "/SYSV", "/dev/zero")):
            kind = "shmem"
        elif p.startswith("/"):
            base = p.rsplit("/", 1)[-1]
            kind = "libs" if ".so" in base or "x" in m.perms or _is_exe_neighbour(maps, i) else "files"
        elif not p:
            prev = maps[i - 1] if i else None
            guard = (
                prev is not None
                and prev.end == m.start
                and prev.perms.startswith("---")
                and not prev.path
                and prev.end - prev.start <= MAX_GUARD
            )
            kind = "stacks" if guard and m.perms.startswith("rw") else "anon"
        else:
            kind = "other"
        kinds.append(kind)
    return kinds


def _is_exe_neighbour(maps: list[Mapping], i: int) -> bool:
    """Read-only and data segments of an ELF file whose code segment is mapped next to them."""
    p = maps[i].path
    for j in (i - 2, i - 1, i + 1, i + 2):
        if 0 <= j < len(maps) and maps[j].path == p and "x" in maps[j].perms:
            return True
    return False


def breakdown(maps: list[Mapping]) -> dict[str, Totals]:
    out = {k: Totals() for k in KINDS}
    for m, kind in zip(maps, classify(maps), strict=False):
        out[kind].add(m.values)
    return out


@dataclass
class ProcessMemory:
    SCHEMA = "obskit.mem.process/1"

    pid: int
    command: str
    role: str
    total: Totals
    kinds: dict[str, Totals] | None  # None when smaps was not readable
    threads: int


def read_rollup(fs: ProcFS, pid: int) -> Totals:
    """Totals from smaps_rollup (cheap: one read, no per-mapping text); falls back to smaps, then status."""
    try:
        values = parse_kb_fields(fs.read_text(pid, "smaps_rollup"))
        if "Rss" not in values and fs.stat(pid)[2] in ("Z", "X"):
            # A zombie has no memory left to read: for a watch, it has exited.
            raise TargetNotFound(f"process {pid} exited", "list processes with `obskit ps`", pid=pid)
        t = Totals()
        t.add(values)
        t.mappings = 0
        return t
    except PermissionDenied:
        raise
    except TargetNotFound:
        if not fs.exists(pid) or fs.stat(pid)[2] in ("Z", "X"):
            raise
        # Kernels before 4.14 have no smaps_rollup: add up smaps instead.
    except Exception:
        pass
    try:
        kinds = breakdown(parse_smaps(fs.read_text(pid, "smaps")))
        t = Totals()
        for k in kinds.values():
            for name in ("rss", "pss", "uss", "shared", "swap", "anonymous", "mappings"):
                setattr(t, name, getattr(t, name) + getattr(k, name))
        return t
    except PermissionDenied:
        raise
    except Exception:
        status = fs.status(pid)
        t = Totals()
        t.rss = _kb(status.get("VmRSS"))
        t.swap = _kb(status.get("VmSwap"))
        return t


def read_process(fs: ProcFS, pid: int, *, role: str = "plain", detail: bool = True) -> ProcessMemory:
    total = read_rollup(fs, pid)
    kinds = None
    if detail:
        try:
            kinds = breakdown(parse_smaps(fs.read_text(pid, "smaps")))
        except PermissionDenied:
            kinds = None
    try:
        threads = int(fs.status(pid).get("Threads", "1") or 1)
    except Exception:
        threads = 0
    cmd = fs.cmdline(pid)
    return ProcessMemory(pid, " ".join(cmd) if cmd else f"[{fs.stat(pid)[1]}]", role, total, kinds, threads)


def _kb(value: str | None) -> int:
    if not value:
        return 0
    try:
        return int(value.split()[0]) * 1024
    except (ValueError, IndexError):
        return 0
