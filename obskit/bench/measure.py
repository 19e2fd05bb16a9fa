"""One run of a command: wall time, CPU time and peak memory of its whole process tree.

Two methods, the one used is recorded in the result document:

- ``cgroup-v1`` (root, v1 ``cpuacct`` and ``memory`` hierarchies mounted): the command starts
  inside a fresh pair of cgroups made for this run; ``cpuacct.usage`` is the CPU of every
  process that ever ran in it (grandchildren too, waited or not) and
  ``memory.max_usage_in_bytes`` its peak memory charge.  Processes left behind are killed
  and the cgroups removed when the run ends.
- ``rusage``: ``wait4()`` of the command: its own CPU and that of the descendants it waited
  for, and the largest single-process peak RSS among them (a grandchild nobody waited for is
  missed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

CGROUP_ROOT = "/sys/fs/cgroup"
STDOUT_LIMIT = 1 << 20  # bytes of a command's stdout kept for --metric
STDERR_TAIL = 4096


@dataclass
class Measurement:
    wall: float
    cpu: float | None
    rss: int | None
    exit_code: int  # negative: killed by that signal (as subprocess reports it)
    stdout: str = ""
    stderr_tail: str = ""
    timed_out: bool = False
    extra: dict[str, float] = field(default_factory=dict)


def _controller_dir(root: str, controller: str) -> str | None:
    """The directory of ``controller``'s v1 hierarchy (``cpuacct`` may be mounted as ``cpu,cpuacct``)."""
    for name in (controller, f"cpu,{controller}", f"{controller},cpu"):
        d = os.path.join(root, name)
        if os.path.isfile(os.path.join(d, "cgroup.procs")) and not os.path.isfile(os.path.join(d, "cgroup.controllers")):
            return d
    return None


def cgroup_dirs(root: str = CGROUP_ROOT) -> tuple[str, str] | None:
    """(cpuacct dir, memory dir) of the v1 hierarchies when this process can make cgroups there."""
    if os.geteuid() != 0:
        return None
    cpu, mem = _controller_dir(root, "cpuacct"), _controller_dir(root, "memory")
    if not cpu or not mem:
        return None
    if not os.path.isfile(os.path.join(cpu, "cpuacct.usage")) or not os.path.isfile(
            os.path.join(mem, "memory.max_usage_in_bytes")):
        return None
    if not (os.access(cpu, os.W_OK) and os.access(mem, os.W_OK)):
        return None
    return cpu, mem


def sweep_stale(dirs: tuple[str, str]) -> None:
    """Remove the empty run cgroups of an obskit that was killed (SIGKILL) before it could."""
    from obskit.proc import left_by_a_dead_obskit

    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in left_by_a_dead_obskit(names, "bench"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(d, name))  # fails, harmlessly, if processes are still inside


def choose_method(requested: str = "auto", root: str = CGROUP_ROOT) -> str:
    if requested == "rusage":
        return "rusage"
    dirs = cgroup_dirs(root)
    if dirs is not None:
        sweep_stale(dirs)
        return "cgroup-v1"
    if requested == "cgroup":
        from obskit.errors import Unavailable

        raise Unavailable("no writable cgroup v1 cpuacct and memory hierarchies here",
                          "run as root on a host with cgroup v1, or use --method rusage")
    return "rusage"


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


class _RunCgroups:
    """A fresh cpuacct + memory cgroup pair for one run; removed (after killing leftovers) on exit."""

    _seq = 0

    def __init__(self, root: str) -> None:
        dirs = cgroup_dirs(root)
        if dirs is None:
            from obskit.errors import Unavailable

            raise Unavailable("cgroup v1 hierarchies are no longer writable", "use --method rusage")
        _RunCgroups._seq += 1
        name = f"obskit-bench-{os.getpid()}-{_RunCgroups._seq}"
        self.dirs = [os.path.join(d, name) for d in dirs]
        for d in self.dirs:
            os.mkdir(d)

    def enter_self(self) -> None:
        """In the child, before exec: move itself into both cgroups (async-signal-safe enough: plain writes)."""
        pid = str(os.getpid()).encode()
        for d in self.dirs:
            fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def read(self) -> tuple[float | None, int | None]:
        ns = _read_int(os.path.join(self.dirs[0], "cpuacct.usage"))
        peak = _read_int(os.path.join(self.dirs[1], "memory.max_usage_in_bytes"))
        return (ns / 1e9 if ns is not None else None), peak

    def _pids(self) -> list[int]:
        out: list[int] = []
        for d in self.dirs:
            with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
                out.extend(int(x) for x in f.read(1 << 20).split() if x.isdigit())
        return sorted(set(out))

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self._pids()
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(OSError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.02)

    def close(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _tail(f: object, limit: int) -> str:
    import io

    assert isinstance(f, io.BufferedRandom)
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - limit))
    return f.read(limit).decode("utf-8", "replace")


def _wait_exit(pid: int, timeout: float | None) -> bool:
    """Block until ``pid`` exits (True) or ``timeout`` passes (False), without reaping it."""
    if timeout is None:
        return True  # wait4 blocks
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        deadline = time.monotonic() + timeout  # no pidfd: poll /proc (kernels before 5.3)
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    if f.read(512).rsplit(b")", 1)[-1].split()[:1] == [b"Z"]:
                        return True
            except OSError:
                return True
            time.sleep(0.005)
        return False
    try:
        import select

        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def run_once(argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
             method: str = "rusage", timeout: float | None = None, cgroup_root: str = CGROUP_ROOT,
             keep_stdout: bool = False) -> Measurement:
    """Run ``argv`` once (no shell) and measure it; stdout is kept (1 MiB tail) when ``keep_stdout``."""
    cg = _RunCgroups(cgroup_root) if method == "cgroup-v1" else None
    with tempfile.TemporaryFile(prefix="obskit-bench-") as out, tempfile.TemporaryFile(prefix="obskit-bench-") as err:
        try:
            t0 = time.perf_counter()
            try:
                proc = subprocess.Popen(argv, cwd=cwd or None, env=env, stdin=subprocess.DEVNULL,
                                        stdout=out if keep_stdout else subprocess.DEVNULL, stderr=err,
                                        preexec_fn=cg.enter_self if cg else None)
            except FileNotFoundError:
                return Measurement(0.0, None, None, 127, stderr_tail=f"{argv[0]}: command not found")
            except PermissionError:
                return Measurement(0.0, None, None, 126, stderr_tail=f"{argv[0]}: permission denied")
            try:
                timed_out = not _wait_exit(proc.pid, timeout)
                if timed_out:
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGKILL)
                _, status, ru = os.wait4(proc.pid, 0)
            except BaseException:  # Ctrl-C, SIGTERM: the command does not outlive the comparison
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.wait4(proc.pid, 0)
                raise
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            if cg is not None:
                cg.kill_all()  # what the command left behind: its CPU and memory are counted already
                cpu, rss = cg.read()
            else:
                cpu, rss = ru.ru_utime + ru.ru_stime, int(ru.ru_maxrss) * 1024
            stdout = _tail(out, STDOUT_LIMIT) if keep_stdout else ""
            return Measurement(wall, cpu, rss, proc.returncode, stdout, _tail(err, STDERR_TAIL), timed_out,
                               {"rusage_cpu": ru.ru_utime + ru.ru_stime, "rusage_maxrss": float(ru.ru_maxrss) * 1024})
        finally:
            if cg is not None:
                cg.close()
