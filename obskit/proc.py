"""Facts about processes read straight from ``/proc``, without attaching.

Every function takes the proc root as a parameter (``ProcFS("/proc")`` by default) so
tests can point it at captured trees, as psutil does.  Reads that race with a
process exiting raise :class:`~obskit.errors.TargetNotFound`; refused reads raise
:class:`~obskit.errors.PermissionDenied`.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from obskit.errors import PermissionDenied, TargetExited, TargetNotFound

_PY_VERSION_PATTERNS = [
    re.compile(r"libpython(\d)\.(\d+)"),
    re.compile(r"/python(\d)\.(\d+)(?:[^/\d]|$)"),
    re.compile(r"cpython-(\d)(\d+)-"),
    re.compile(r"/lib/python(\d)\.(\d+)/"),
]
_CONTAINER_ID = re.compile(r"(?:^|[/-])(?:docker-|crio-|cri-containerd-|libpod-)?([0-9a-f]{64})(?:\.scope)?$")
# Indexes into ProcFS.stat() (proc(5) field numbers minus one; the comm field is kept whole).
STAT_STATE, STAT_PPID, STAT_UTIME, STAT_STIME, STAT_NUM_THREADS, STAT_STARTTIME = 2, 3, 13, 14, 19, 21
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


@dataclass
class ProcessFacts:
    """What /proc says about one process (no ptrace needed)."""

    SCHEMA = "obskit.process/1"

    pid: int
    ppid: int
    name: str
    cmdline: list[str]
    exe: str | None
    uid: int | None
    state: str
    threads: int
    rss_bytes: int | None
    cpu_seconds: float
    start_time: float | None  # seconds since the epoch
    python_version: str | None
    is_python: bool
    role: str = "plain"
    container_id: str | None = None
    pod_uid: str | None = None
    cgroup: str | None = None
    children: list[int] = field(default_factory=list)

    @property
    def command(self) -> str:
        return " ".join(self.cmdline) if self.cmdline else f"[{self.name}]"


def parse_status(text: str) -> dict[str, str]:
    """The ``Key: value`` lines of /proc/N/status."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


class ProcFS:
    """A /proc tree (the live one, or a captured copy for tests)."""

    def __init__(self, root: str | os.PathLike[str] = "/proc") -> None:
        self.root = Path(root)
        self.clock_ticks = CLOCK_TICKS

    def __repr__(self) -> str:
        return f"ProcFS({str(self.root)!r})"

    @property
    def is_live(self) -> bool:
        """True for the running system's /proc (not a captured tree)."""
        return self.root == Path("/proc")

    # -- raw reads ---------------------------------------------------------
    def path(self, pid: int | str, *parts: str) -> Path:
        return self.root.joinpath(str(pid), *parts)

    def read_bytes(self, pid: int | str, name: str) -> bytes:
        p = self.path(pid, name)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise TargetNotFound(f"process {pid} not found", "list processes with `obskit ps`", pid=_int(pid)) from None
        except ProcessLookupError:
            raise TargetNotFound(f"process {pid} exited", "list processes with `obskit ps`", pid=_int(pid)) from None
        except PermissionError:
            raise PermissionDenied(
                f"cannot read {p}", "run as the target's user or as root; see `obskit doctor`", pid=_int(pid)
            ) from None
        except OSError as e:
            if e.errno in (errno.ESRCH, errno.ENOENT):
                raise TargetNotFound(f"process {pid} exited", "list processes with `obskit ps`", pid=_int(pid)) from None
            n = _int(pid)
            if n is not None and self.is_zombie(n):  # a zombie's mountinfo, environ... give EINVAL
                raise self.zombie_error(n) from None
            raise

    def is_zombie(self, pid: int) -> bool:
        """True for a process that has exited and waits for its parent to reap it (state Z or X)."""
        try:
            raw = self.path(pid, "stat").read_text(errors="replace")
        except OSError:
            return False
        rest = raw[raw.rfind(")") + 2 :]
        return rest[:1] in ("Z", "X")

    def zombie_error(self, pid: int) -> TargetExited:
        parent = ""
        try:
            raw = self.path(pid, "stat").read_text(errors="replace")
            parent = f" by its parent {raw[raw.rfind(')') + 2 :].split()[1]}"
        except (OSError, IndexError):
            pass
        return TargetExited(
            f"process {pid} has exited (a zombie not yet reaped{parent})",
            "pick a running process from `obskit ps`",
            pid=pid,
        )

    def read_text(self, pid: int | str, name: str) -> str:
        return self.read_bytes(pid, name).decode("utf-8", "replace")

    def exists(self, pid: int) -> bool:
        return self.path(pid, "stat").exists()

    def pids(self) -> list[int]:
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    # -- parsed reads ------------------------------------------------------
    def cmdline(self, pid: int) -> list[str]:
        raw = self.read_bytes(pid, "cmdline")
        parts = raw.split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        if len(parts) == 1 and b" " in parts[0]:
            # setproctitle-style titles rewrite argv into one string.
            return parts[0].decode("utf-8", "replace").split()
        return [p.decode("utf-8", "replace") for p in parts]

    def status(self, pid: int) -> dict[str, str]:
        return parse_status(self.read_text(pid, "status"))

    def stat(self, pid: int) -> list[str]:
        """Fields of /proc/N/stat, with the comm field (which may hold spaces) kept whole."""
        raw = self.read_text(pid, "stat")
        lpar, rpar = raw.find("("), raw.rfind(")")
        return [raw[:lpar].strip(), raw[lpar + 1 : rpar], *raw[rpar + 2 :].split()]

    def exe(self, pid: int) -> str | None:
        try:
            return os.readlink(self.path(pid, "exe"))
        except OSError:
            return None

    def maps_paths(self, pid: int) -> list[str]:
        """Distinct file paths mapped into the process, in first-seen order."""
        try:
            text = self.read_text(pid, "maps")
        except PermissionDenied:
            return []
        seen: dict[str, None] = {}
        for line in text.splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                seen.setdefault(parts[5].strip(), None)
        return list(seen)

    def environ(self, pid: int) -> dict[str, str]:
        raw = self.read_bytes(pid, "environ")
        env: dict[str, str] = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep and key:
                env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        return env

    def cgroup_lines(self, pid: int | str) -> list[str]:
        return [ln for ln in self.read_text(pid, "cgroup").splitlines() if ln.strip()]

    def boot_time(self) -> float | None:
        try:
            for line in (self.root / "stat").read_text().splitlines():
                if line.startswith("btime "):
                    return float(line.split()[1])
        except OSError:
            return None
        return None

    def children_map(self, pids: list[int] | None = None) -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {}
        for pid in pids if pids is not None else self.pids():
            try:
                ppid = int(self.stat(pid)[STAT_PPID])
            except (TargetNotFound, PermissionDenied, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(pid)
        return kids

    def descendants(self, pid: int) -> list[int]:
        kids = self.children_map()
        out: list[int] = []
        todo = list(kids.get(pid, []))
        while todo:
            p = todo.pop(0)
            out.append(p)
            todo.extend(kids.get(p, []))
        return out

    def tasks(self, pid: int) -> list[int]:
        """Thread IDs of ``pid`` (its /proc/PID/task entries)."""
        try:
            return sorted(int(t) for t in os.listdir(self.path(pid, "task")) if t.isdigit())
        except FileNotFoundError:
            raise TargetNotFound(f"process {pid} not found", "list processes with `obskit ps`", pid=pid) from None
        except PermissionError:
            return []

    threads = tasks

    def cpu_seconds(self, pid: int, tid: int | None = None) -> float:
        """User + system CPU seconds of a process (or one of its threads), from stat's utime and stime."""
        st = self.stat(pid) if tid is None else self._task_stat(pid, tid)
        try:
            return (int(st[STAT_UTIME]) + int(st[STAT_STIME])) / self.clock_ticks
        except (IndexError, ValueError):
            raise TargetNotFound(f"process {pid}: unreadable stat", "list processes with `obskit ps`",
                                 pid=pid) from None

    def cpu_seconds_of(self, pids: list[int]) -> dict[int, float]:
        """CPU seconds of each of ``pids`` that is still there (exited and unreadable ones are left out)."""
        out: dict[int, float] = {}
        for pid in pids:
            try:
                out[pid] = self.cpu_seconds(pid)
            except (TargetNotFound, PermissionDenied, TargetExited):  # noqa: PERF203 - it exited meanwhile
                continue
        return out

    def start_time(self, pid: int) -> float | None:
        """When ``pid`` started, in seconds since the epoch (None without the boot time)."""
        boot = self.boot_time()
        try:
            ticks = int(self.stat(pid)[STAT_STARTTIME])
        except (IndexError, ValueError):
            return None
        return boot + ticks / self.clock_ticks if boot is not None else None

    def _task_stat(self, pid: int, tid: int) -> list[str]:
        raw = self.read_text(pid, f"task/{tid}/stat")
        lpar, rpar = raw.find("("), raw.rfind(")")
        return [raw[:lpar].strip(), raw[lpar + 1 : rpar], *raw[rpar + 2 :].split()]

    def syscall(self, pid: int, tid: int) -> list[str] | None:
        """Fields of /proc/PID/task/TID/syscall: ``["running"]``, ``["-1", sp, pc]`` or the number and
        arguments of the call the thread is blocked in; None when unreadable (exited, no ptrace)."""
        try:
            return self.path(pid, "task", str(tid), "syscall").read_text().split() or None
        except OSError:
            return None

    def schedstat(self, pid: int, tid: int | None = None) -> tuple[int, int, int] | None:
        """(ns on CPU, ns waiting on a run queue, time slices) of a process's main thread or one thread."""
        path = self.path(pid, "schedstat") if tid is None else self.path(pid, "task", str(tid), "schedstat")
        try:
            fields = path.read_text().split()
            return int(fields[0]), int(fields[1]), int(fields[2])
        except (OSError, ValueError, IndexError):
            return None

    def fd_count(self, pid: int) -> int | None:
        """Open file descriptors of ``pid`` (None when /proc/PID/fd is not readable)."""
        try:
            return sum(1 for _ in os.scandir(self.path(pid, "fd")))
        except OSError:
            return None

    def task_status(self, pid: int, tid: int) -> dict[str, str] | None:
        try:
            return parse_status(self.path(pid, "task", str(tid), "status").read_text(errors="replace"))
        except OSError:
            return None

    # -- derived facts -----------------------------------------------------
    def python_version(self, pid: int) -> str | None:
        """The target's Python version (``"3.11"``) from its exe and mappings, or None."""
        candidates: list[str] = []
        exe = self.exe(pid)
        if exe:
            candidates.append(exe)
        candidates.extend(self.maps_paths(pid))
        return python_version_from_paths(candidates)

    def facts(self, pid: int, *, clock_ticks: int | None = None) -> ProcessFacts:
        st = self.stat(pid)
        status = self.status(pid)
        cmd = self.cmdline(pid)
        exe = self.exe(pid)
        ticks = clock_ticks or self.clock_ticks
        cpu = (int(st[STAT_UTIME]) + int(st[STAT_STIME])) / ticks
        boot = self.boot_time()
        start = boot + int(st[STAT_STARTTIME]) / ticks if boot is not None else None
        rss = status.get("VmRSS")
        uid = status.get("Uid")
        version = self.python_version(pid)
        cg = None
        container = pod = None
        try:
            lines = self.cgroup_lines(pid)
            cg = _pick_cgroup_path(lines)
            container, pod = container_ids(lines)
        except (TargetNotFound, PermissionDenied):
            pass
        facts = ProcessFacts(
            pid=pid,
            ppid=int(st[STAT_PPID]),
            name=st[1],
            cmdline=cmd,
            exe=exe,
            uid=int(uid.split()[1]) if uid else None,
            state=st[2],
            threads=int(status.get("Threads", "1") or 1),
            rss_bytes=_kb(rss),
            cpu_seconds=cpu,
            start_time=start,
            python_version=version,
            is_python=version is not None or _looks_like_python(exe, cmd),
            container_id=container,
            pod_uid=pod,
            cgroup=cg,
        )
        return facts


def left_by_a_dead_obskit(names: list[str], kind: str) -> list[str]:
    """The names ``obskit-KIND-PID-…`` (temporary directories, run cgroups) whose obskit is gone:
    SIGKILLed before it could remove them.  A PID that is alive, or was reused, keeps its names."""
    gone: list[str] = []
    for name in names:
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != "obskit" or parts[1] != kind or not parts[2].isdigit():
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            gone.append(name)
        except (OSError, OverflowError):
            pass  # alive as another user (EPERM), or not a PID at all
    return gone


def python_version_from_paths(paths: list[str]) -> str | None:
    for pattern in _PY_VERSION_PATTERNS:
        for p in paths:
            m = pattern.search(p)
            if m and m.group(1) in ("2", "3"):
                return f"{m.group(1)}.{m.group(2)}"
    return None


def container_ids(cgroup_lines: list[str]) -> tuple[str | None, str | None]:
    """(container id, pod uid) from the lines of /proc/N/cgroup, where present."""
    container = pod = None
    for line in cgroup_lines:
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            m = _CONTAINER_ID.search(part)
            if m and container is None:
                container = m.group(1)
        m2 = _POD_UID.search(path)
        if m2 and pod is None:
            pod = m2.group(1).replace("_", "-")
    return container, pod


def classify_roles(facts: dict[int, ProcessFacts]) -> None:
    """Set ``role`` on each process: gunicorn/uvicorn/celery masters and workers, mp children."""
    for f in facts.values():
        parent = facts.get(f.ppid)
        text = " ".join(f.cmdline[:4]).lower()
        # Only a Python parent makes a worker: `tini -- gunicorn ...` names gunicorn but is not its master.
        ptext = " ".join(parent.cmdline[:4]).lower() if parent and parent.is_python else ""
        if "gunicorn" in text:
            if parent is not None and "gunicorn" in ptext:
                f.role = "gunicorn-worker"
            else:
                f.role = "gunicorn-master"
        elif "uvicorn" in ptext and _is_mp_child(f.cmdline):
            f.role = "uvicorn-worker"
        elif "uvicorn" in text:
            f.role = "uvicorn-worker" if parent is not None and "uvicorn" in ptext else "uvicorn-master"
        elif "celery" in text:
            if parent is not None and "celery" in ptext and f.cmdline == parent.cmdline:
                f.role = "celery-worker"
            else:
                f.role = "celery-main"
        elif _is_mp_child(f.cmdline):
            f.role = "mp-child"
        elif parent is not None and parent.is_python and f.is_python and f.cmdline == parent.cmdline:
            f.role = "fork-child"
        else:
            f.role = "plain"
        if parent is not None:
            parent.children.append(f.pid)


def _is_mp_child(cmd: list[str]) -> bool:
    text = " ".join(cmd)
    return "multiprocessing.spawn" in text or "multiprocessing.forkserver" in text or "multiprocessing.resource_tracker" in text


def _pick_cgroup_path(lines: list[str]) -> str | None:
    for line in lines:
        if line.startswith("0::"):
            return line[3:]
    for line in lines:
        _, ctrl, path = [*line.split(":", 2), "", ""][:3]
        if "memory" in ctrl.split(",") or "cpu" in ctrl.split(","):
            return path
    return lines[0].split(":", 2)[-1] if lines else None


def _looks_like_python(exe: str | None, cmd: list[str]) -> bool:
    names = [os.path.basename(exe or "")]
    if cmd:
        names.append(os.path.basename(cmd[0]))
    return any(re.match(r"^(python|pypy)[\d.]*$", n) for n in names if n)


def _kb(value: str | None) -> int | None:
    if not value:
        return None
    parts = value.split()
    try:
        return int(parts[0]) * 1024
    except (ValueError, IndexError):
        return None


def _int(pid: int | str) -> int | None:
    try:
        return int(pid)
    except (TypeError, ValueError):
        return None


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


CLOCK_TICKS = _clock_ticks()  # USER_HZ: the unit of utime, stime and starttime in /proc/N/stat
