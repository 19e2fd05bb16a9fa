"""The cgroups of a process (v1, v2, hybrid): where they are, and its effective CPU quota, memory
limit and CPU throttling, for every command.

:func:`for_pid` answers "what limits this PID": each controller's directory is found through
mountinfo, every visible ancestor is read, and the limit is the minimum over them (a pod's limit
sits on a parent directory).  Throttling is the ``cpu.stat`` of the level whose quota binds,
reported with that level's path.

A PID's cgroup is looked up in this process's own cgroup mounts first; when they do not contain
it (a ``kubectl debug`` container, another cgroup namespace), in the target's own mounts through
``/proc/PID/root`` and ``/proc/PID/mountinfo``.

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

from obskit.errors import ObskitError
from obskit.proc import ProcFS

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
    """``path`` relative to the mount root, or None when the mount does not expose it.

    Paths above the reader's cgroup namespace root read ``/../x``; the target's own mount of its
    cgroup then has the same ``/../x`` root (the kernel shows both relative to the reader), so
    such a path is visible exactly there.
    """
    path = path or "/"
    if path.startswith("/.."):
        if root.startswith("/..") and (path == root or path.startswith(root.rstrip("/") + "/")):
            return path[len(root):].lstrip("/")
        return None  # above this reader's cgroup namespace root
    path = os.path.normpath(path)
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
        if line is None:
            continue
        # A later mount on the same point shadows an earlier one (a debug container's own mounts).
        for mount in reversed([m for m in v1 if ctrl in m.superopts]):
            h = _hierarchy(ctrl, 1, line[2], mount, roots)
            if h is not None:
                found[ctrl] = h
                break
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


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def _hierarchy(ctrl: str, version: int, path: str, mount: Mount, roots: Roots) -> Hierarchy | None:
    rel = _relative(path, mount.root)
    if rel is None:
        return None
    base = roots.under_fs(mount.mountpoint)
    leaf = base / rel if rel else base
    levels: list[str] = []
    cur = leaf
    while True:
        if _is_dir(cur):  # a directory we may not look into (another namespace's root) is not a level
            levels.append(str(cur))
        if cur == base or base not in cur.parents:
            break
        cur = cur.parent
    return Hierarchy(ctrl, version, path, mount.mountpoint, mount.root, str(leaf), str(base), levels)


# -- file readers -----------------------------------------------------------


MAX_READ = 4 << 20  # cgroup and /proc files are small; a bound all the same


def read_text(path: str | Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(MAX_READ)
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


# -- limits and throttling of one PID ----------------------------------------


@dataclass
class CpuLevel:
    path: str
    quota_us: int | None
    period_us: int | None
    limit: float | None  # cores; None = no quota at this level


@dataclass
class MemLevel:
    path: str
    limit: int | None
    high: int | None = None


@dataclass
class Throttling:
    """CFS bandwidth counters of one cgroup level (lifetime, or the difference over a window)."""

    periods: int
    throttled: int
    throttled_s: float

    @property
    def ratio(self) -> float | None:
        return self.throttled / self.periods if self.periods else None

    def since(self, before: Throttling) -> Throttling:
        return Throttling(max(0, self.periods - before.periods), max(0, self.throttled - before.throttled),
                          round(max(0.0, self.throttled_s - before.throttled_s), 6))


@dataclass
class CpuQuota:
    """The CPU quota that binds a PID: the smallest over every visible level."""

    limit: float  # cores
    quota_us: int
    period_us: int
    level: str  # directory whose quota binds (its cpu.stat counts the throttling)
    version: int
    levels: list[CpuLevel]


@dataclass
class MemoryLimit:
    limit: int
    level: str
    version: int
    levels: list[MemLevel]


def cpu_levels(h: Hierarchy | None) -> list[CpuLevel]:
    """The CPU quota of every visible level of ``h``, leaf first (levels without quota files are left out)."""
    if h is None:
        return []
    out: list[CpuLevel] = []
    for d in h.levels:
        if h.version == 2:
            parsed = parse_cpu_max(read_text(Path(d) / "cpu.max"))
            if parsed is None:
                continue
            quota, period = parsed
        else:
            q = read_int(Path(d) / "cpu.cfs_quota_us")
            p = read_int(Path(d) / "cpu.cfs_period_us")
            if p is None or p <= 0:
                continue
            quota, period = (q if q is not None and q > 0 else None), p
        out.append(CpuLevel(d, quota, period, quota / period if quota else None))
    return out


def binding_cpu_level(levels: list[CpuLevel]) -> CpuLevel | None:
    limited = [lv for lv in levels if lv.limit is not None]
    return min(limited, key=lambda lv: lv.limit or 0.0) if limited else None


def memory_levels(h: Hierarchy | None) -> list[MemLevel]:
    """The memory limit (and v2 ``memory.high``) of every visible level of ``h``, leaf first."""
    if h is None:
        return []
    levels: list[MemLevel] = []
    for d in h.levels:
        p = Path(d)
        if h.version == 2:
            if not (p / "memory.max").exists():
                continue
            levels.append(MemLevel(d, memory_bytes(read_int(p / "memory.max")),
                                   memory_bytes(read_int(p / "memory.high"))))
        else:
            raw = read_int(p / "memory.limit_in_bytes")
            if raw is None:
                continue
            levels.append(MemLevel(d, memory_bytes(raw)))
    return levels


def binding_memory_level(levels: list[MemLevel]) -> MemLevel | None:
    limited = [lv for lv in levels if lv.limit is not None]
    return min(limited, key=lambda lv: lv.limit or 0) if limited else None


def read_throttling(directory: str | Path) -> Throttling | None:
    """``cpu.stat`` of one level: v1 counts ``throttled_time`` in ns, v2 ``throttled_usec``."""
    stat = read_keyed(Path(directory) / "cpu.stat")
    if "nr_periods" not in stat:
        return None
    t_s = stat["throttled_usec"] / 1e6 if "throttled_usec" in stat else stat.get("throttled_time", 0) / 1e9
    return Throttling(stat["nr_periods"], stat.get("nr_throttled", 0), t_s)


CONTROLLERS = ("cpu", "cpuacct", "memory", "cpuset", "pids")


@dataclass
class PidCgroups:
    """Where one PID's cgroups are, and the limits that bind it."""

    pid: int | None  # None: this process
    cgroup_text: str  # /proc/PID/cgroup as read
    hierarchies: dict[str, Hierarchy]
    fs: str  # the filesystem root the chosen mounts were resolved under ("/" or /proc/PID/root)
    view: str  # "own" (this process's cgroup mounts) or "target" (the target's, through /proc/PID/root)

    def get(self, controller: str) -> Hierarchy | None:
        return self.hierarchies.get(controller)

    def cpu_quota(self) -> CpuQuota | None:
        h = self.get("cpu")
        levels = cpu_levels(h)
        best = binding_cpu_level(levels)
        if h is None or best is None or best.limit is None or best.quota_us is None or best.period_us is None:
            return None
        return CpuQuota(best.limit, best.quota_us, best.period_us, best.path, h.version, levels)

    def memory_limit(self) -> MemoryLimit | None:
        h = self.get("memory")
        levels = memory_levels(h)
        best = binding_memory_level(levels)
        if h is None or best is None or best.limit is None:
            return None
        return MemoryLimit(best.limit, best.path, h.version, levels)

    def throttle_level(self) -> str | None:
        """The directory whose ``cpu.stat`` counts this PID's throttling: where the quota binds, else the leaf."""
        q = self.cpu_quota()
        if q is not None:
            return q.level
        h = self.get("cpu")
        return h.leaf if h is not None and h.visible else None

    def throttling(self) -> Throttling | None:
        level = self.throttle_level()
        return read_throttling(level) if level is not None else None


def for_pid(procfs: ProcFS, pid: int | None = None, *, roots: Roots | None = None,
            controllers: tuple[str, ...] = CONTROLLERS, own_fs: str | None = None) -> PidCgroups:
    """Locate the cgroups of ``pid`` (None: this process) as ``procfs`` sees them.

    With ``roots`` the mounts are those of ``pid`` resolved under ``roots.fs`` (captured trees).
    Otherwise this process's own cgroup mounts (under ``own_fs``, ``/`` on the live /proc) are
    tried first, as they show every ancestor; then the target's own mounts through
    ``/proc/PID/root`` and ``/proc/PID/mountinfo`` (a debug container, another cgroup
    namespace); per controller the view showing more levels wins.  When no path resolves, the
    target's mounts are searched (bounded) for the directory whose ``cgroup.procs`` lists it.
    Raises TargetNotFound / PermissionDenied when /proc/PID/cgroup cannot be read.
    """
    who: int | str = pid if pid is not None else "self"
    cg_text = procfs.read_text(who, "cgroup")
    if roots is not None:
        mi = procfs.read_text(who, "mountinfo")
        return PidCgroups(pid, cg_text, locate(cg_text, mi, roots, controllers), roots.fs, "target")
    views: list[tuple[str, str, str]] = []  # (view, whose mountinfo, filesystem root)
    if pid is None or procfs.is_live or own_fs is not None:
        views.append(("own", "self", own_fs or "/"))
    if pid is not None:
        views.append(("target", str(pid), str(procfs.path(pid, "root"))))
    best: dict[str, Hierarchy] = {}
    chosen: dict[str, tuple[str, str]] = {}
    target_mounts = ""
    for view, whose, fs in views:
        try:
            mi = procfs.read_text(whose, "mountinfo")
        except ObskitError:
            continue
        if view == "target":
            target_mounts = mi
        found = locate(cg_text, mi, Roots(proc=str(procfs.root), fs=fs), controllers)
        for ctrl, h in found.items():
            if not _is_dir(Path(h.leaf)):
                continue  # these mounts do not hold the target's cgroup (another cgroup namespace)
            if ctrl not in best or len(h.levels) > len(best[ctrl].levels):
                best[ctrl] = h
                chosen[ctrl] = (view, fs)
    if pid is not None and target_mounts and not ({"cpu", "memory"} & set(best)):
        for ctrl, h in _search(pid, cg_text, target_mounts, str(procfs.path(pid, "root")), controllers).items():
            best.setdefault(ctrl, h)
            chosen.setdefault(ctrl, ("target", str(procfs.path(pid, "root"))))
    main = chosen.get("cpu") or chosen.get("memory") or chosen.get("unified") or (views[0][0], views[0][2])
    return PidCgroups(pid, cg_text, best, main[1], main[0])


SEARCH_DIRS = 4000  # directories visited at most per mount when a cgroup path does not resolve


def _search(pid: int, cg_text: str, mountinfo_text: str, fs: str,
            controllers: tuple[str, ...]) -> dict[str, Hierarchy]:
    """The target's cgroup found by content: the directory under its own cgroup mounts whose
    ``cgroup.procs`` lists ``pid`` (paths that cannot be mapped through mountinfo strings, such as
    ``/../x`` read from a sibling cgroup namespace)."""
    entries = parse_cgroup_file(cg_text)
    out: dict[str, Hierarchy] = {}
    want = str(pid)
    for m in parse_mountinfo(mountinfo_text):
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        version = 2 if m.fstype == "cgroup2" else 1
        names = ["unified"] if version == 2 else [c for c in controllers if c in m.superopts]
        if not names or all(n in out for n in names):
            continue
        base = Path(fs) / m.mountpoint.lstrip("/")
        leaf = _find_dir_listing(base, want)
        if leaf is None:
            continue
        levels = [str(leaf)] + [str(p) for p in leaf.parents if p == base or base in p.parents]
        if version == 1:
            line = next((e for e in entries if names[0] in e[1]), None)
        else:
            line = next((e for e in entries if e[0] == "0" and not e[1]), None)
        path = line[2] if line else ""
        for name in names:
            out[name] = Hierarchy(name, version, path, m.mountpoint, m.root, str(leaf), str(base), levels)
        if version == 2:
            available = _read_words(base / "cgroup.controllers") or _read_words(leaf / "cgroup.controllers")
            for ctrl in controllers:
                if ctrl not in out and (ctrl in available or (ctrl == "cpuacct" and "cpu" in available)):
                    out[ctrl] = Hierarchy(ctrl, 2, path, m.mountpoint, m.root, str(leaf), str(base), list(levels))
    return out


def _find_dir_listing(base: Path, pid: str) -> Path | None:
    todo = [base]
    seen = 0
    while todo and seen < SEARCH_DIRS:
        d = todo.pop(0)
        seen += 1
        text = read_text(d / "cgroup.procs")
        if text is not None and pid in text.split():
            return d
        try:
            todo.extend(sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink()))
        except OSError:
            continue
    return None
