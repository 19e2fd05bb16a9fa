"""Locate a process's cgroups (v1, v2, hybrid) through mountinfo and read budgets and counters.

Every path is resolved under ``Roots``: ``proc`` (``/proc`` or a captured copy), ``fs`` (the
filesystem root the target sees: ``/``, ``/proc/N/root`` or a captured tree) and ``cgroupfs``
(used only when mountinfo lists no cgroup mount).  Nothing here raises on a missing or
unreadable cgroup file: a level that cannot be read is simply absent from the result.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# v1 memory "unlimited" is PAGE_COUNTER_MAX rounded to pages (9223372036854771712 on 4 KiB pages).
UNLIMITED_BYTES = 1 << 62
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass
class Roots:
    proc: str = "/proc"
    fs: str = "/"
    cgroupfs: str = "/sys/fs/cgroup"

    def under_fs(self, path: str) -> Path:
        return Path(self.fs) / path.lstrip("/")


@dataclass
class Mount:
    root: str
    mountpoint: str
    fstype: str
    superopts: list[str]


@dataclass
class Hierarchy:
    """One controller's place: hierarchy version, the leaf directory and the visible ancestors."""

    controller: str
    version: int  # 1 or 2
    cgroup_path: str  # as in /proc/N/cgroup
    mountpoint: str
    mount_root: str
    leaf: str  # directory on disk (under Roots.fs)
    mount_dir: str  # the mount point on disk (under Roots.fs)
    levels: list[str] = field(default_factory=list)  # leaf first, up to the mount point

    @property
    def visible(self) -> bool:
        return bool(self.levels)


def unescape(path: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts: list[Mount] = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        f = head.split()
        t = tail.split(" ", 2)
        if len(f) < 5 or len(t) < 3:
            continue
        mounts.append(Mount(unescape(f[3]), unescape(f[4]), t[0], t[2].strip().split(",")))
    return mounts


def parse_cgroup_file(text: str) -> list[tuple[str, list[str], str]]:
    """Lines ``id:ctrl1,ctrl2:path`` → (id, controllers, path); colons in paths are kept."""
    out: list[tuple[str, list[str], str]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            ctrls = [c for c in parts[1].split(",") if c]
            out.append((parts[0], ctrls, parts[2]))
    return out


def _relative(path: str, root: str) -> str | None:
    """``path`` relative to the mount root, or None when the mount does not expose it."""
    if path.startswith("/.."):
        return None  # above this reader's cgroup namespace root
    path = os.path.normpath(path) if path else "/"
    root = os.path.normpath(root)
    if root == "/":
        return path.lstrip("/")
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return None


def locate(cgroup_text: str, mountinfo_text: str, roots: Roots,
           controllers: tuple[str, ...] = ("cpu", "cpuacct", "memory", "cpuset", "pids")) -> dict[str, Hierarchy]:
    """Map each controller (and ``unified``: the v2 hierarchy) to its directory and ancestors.

    A v1 mount of a controller wins over v2 for that controller (hybrid hosts), as Go does.
    """
    entries = parse_cgroup_file(cgroup_text)
    mounts = parse_mountinfo(mountinfo_text)
    v1 = [m for m in mounts if m.fstype == "cgroup"]
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    v2_path = next((p for hid, ctrls, p in entries if hid == "0" and not ctrls), None)
    found: dict[str, Hierarchy] = {}
    for ctrl in controllers:
        line = next((e for e in entries if ctrl in e[1]), None)
        mount = next((m for m in v1 if ctrl in m.superopts), None)
        if line is not None and mount is not None:
            h = _hierarchy(ctrl, 1, line[2], mount, roots)
            if h is not None:
                found[ctrl] = h
                continue
    if v2_path is not None:
        for mount in v2:
            h = _hierarchy("unified", 2, v2_path, mount, roots)
            if h is not None:
                found["unified"] = h
                break
        else:
            if not v2 and not v1 and not mounts:
                # No mountinfo: assume the conventional mount point.
                found["unified"] = _fixed("unified", v2_path, roots.cgroupfs, roots)
        if "unified" in found:
            u = found["unified"]
            available = _read_words(Path(u.leaf) / "cgroup.controllers") or _read_words(
                Path(u.mount_dir) / "cgroup.controllers")
            for ctrl in controllers:
                if ctrl not in found and (ctrl in available or (ctrl == "cpuacct" and "cpu" in available)):
                    h2 = found["unified"]
                    found[ctrl] = Hierarchy(ctrl, 2, h2.cgroup_path, h2.mountpoint, h2.mount_root, h2.leaf,
                                            h2.mount_dir, list(h2.levels))
    return found


def _fixed(ctrl: str, path: str, mountpoint: str, roots: Roots) -> Hierarchy:
    mount = Mount("/", mountpoint, "cgroup2", [])
    h = _hierarchy(ctrl, 2, path, mount, roots)
    assert h is not None
    return h


def _hierarchy(ctrl: str, version: int, path: str, mount: Mount, roots: Roots) -> Hierarchy | None:
    rel = _relative(path, mount.root)
    if rel is None:
        return None
    base = roots.under_fs(mount.mountpoint)
    leaf = base / rel if rel else base
    levels: list[str] = []
    cur = leaf
    while True:
        if cur.is_dir():
            levels.append(str(cur))
        if cur == base or base not in cur.parents:
            break
        cur = cur.parent
    return Hierarchy(ctrl, version, path, mount.mountpoint, mount.root, str(leaf), str(base), levels)


# -- file readers -----------------------------------------------------------


def read_text(path: str | Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_int(path: str | Path) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_words(path: str | Path) -> list[str]:
    text = read_text(path)
    return text.split() if text else []


def read_keyed(path: str | Path) -> dict[str, int]:
    """Flat keyed files (cpu.stat, memory.stat, memory.events, oom_control)."""
    out: dict[str, int] = {}
    text = read_text(path)
    if not text:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def read_pressure(path: str | Path) -> dict[str, dict[str, float]] | None:
    """PSI: ``some avg10=.. avg60=.. avg300=.. total=..`` (+ ``full``) → {"some": {...}, "full": {...}}."""
    text = read_text(path)
    if not text:
        return None
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        vals: dict[str, float] = {}
        for item in rest.split():
            k, _, v = item.partition("=")
            try:
                vals[k] = float(v)
            except ValueError:
                continue
        if kind in ("some", "full"):
            out[kind] = vals
    return out or None


def parse_cpu_max(text: str | None) -> tuple[int | None, int] | None:
    """``cpu.max`` → (quota µs or None for max, period µs); None when unreadable or malformed."""
    if text is None:
        return None
    parts = text.split()
    if not parts or len(parts) > 2:
        return None
    period = 100000
    if len(parts) == 2:
        try:
            period = int(parts[1])
        except ValueError:
            return None
    if period <= 0:
        return None
    if parts[0] == "max":
        return None, period
    try:
        quota = int(parts[0])
    except ValueError:
        return None
    return (quota if quota > 0 else None), period


def parse_cpu_list(text: str | None) -> list[int]:
    """``0-3,8,10-11`` → [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    if not text:
        return cpus
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if hi else a
        except ValueError:
            continue
        cpus.extend(range(a, b + 1))
    return cpus


def memory_bytes(value: int | None) -> int | None:
    """A memory limit, with "max" and the v1 huge sentinel both meaning unlimited (None)."""
    if value is None or value >= UNLIMITED_BYTES or value < 0:
        return None
    return value
