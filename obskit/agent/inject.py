"""Loading the agent into a running Python process that was started without it.

Python 3.9–3.13: Debian's ``gdb`` attaches, maps one anonymous page range with ``mmap`` (a plain
system call: no lock the stopped thread could hold), copies a short bootstrap there, schedules
it with ``Py_AddPendingCall(PyRun_SimpleString, page)`` and detaches at once.  Nothing waits on
the GIL inside the debugger: ``Py_AddPendingCall`` needs no GIL and returns at once; the
interpreter's main thread runs the bootstrap at its next safe point, between two bytecodes, as
it runs signal handlers.  ``PyRun_SimpleString(const char *)`` has the shape of a pending call
(``int f(void *)``: one pointer argument in the same register, an int back); the bootstrap
catches every exception itself, so it always returns 0 and never raises into the app.

Python 3.14+: ``sys.remote_exec`` (PEP 768) runs the same bootstrap.

The bootstrap carries a wall-clock deadline: when the main thread cannot reach it in time (a
long C call holding the GIL), obskit reports a timeout and the bootstrap, if it ever runs,
does nothing.  The agent's source is read from a file placed in the target's own ``/tmp``
(through ``/proc/PID/root``, so a target in another mount namespace or container sees it), or,
where that cannot be written (read-only root), copied into the target's memory as a string.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from obskit.agent import BOOT_MODULE, server
from obskit.errors import PermissionDenied, TargetNotFound, Unavailable, UnsupportedVersion
from obskit.proc import ProcFS

if TYPE_CHECKING:
    from obskit.agent.client import AgentClient

NEEDED_PYTHON = ("Py_AddPendingCall", "PyRun_SimpleString")
NEEDED_LIBC = ("mmap",)
MIN_GDB_PYTHON = (3, 9)
GDB_HINT = "install Debian's gdb (`apt-get install gdb`), or restart the target under `obskit run -- CMD`"

BOOTSTRAP = '''\
def _obskit_boot():
    import sys
    try:
        import time
        if time.time() > _DEADLINE_:
            return
        mod = sys.modules.get(_NAME_)
        if mod is None or getattr(mod, "AGENT_VERSION", None) != _VERSION_:
_LOAD_
            sys.modules[_NAME_] = mod
        mod.start(_DIR_)
    except KeyboardInterrupt:
        import os, signal
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        pass
try:
    _obskit_boot()
finally:
    del _obskit_boot
'''

LOAD_FILE = '''\
            import importlib.util
            spec = importlib.util.spec_from_file_location(_NAME_, _PATH_)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)'''

LOAD_STRING = '''\
            import types
            mod = types.ModuleType(_NAME_)
            mod.__file__ = "<obskit-agent>"
            exec(compile(_SRC_, "<obskit-agent>", "exec"), mod.__dict__)'''


@dataclass
class InjectResult:
    SCHEMA = "obskit.inject/1"

    pid: int
    method: str  # "gdb", "sys.remote_exec" or "existing"
    python: str | None
    paused_s: float | None  # how long the target was stopped (None: not stopped, or not measured)
    paused_at_most: bool  # paused_s is an upper bound (gdb without Python: its whole run)
    started_s: float  # from the end of the pause until the agent's socket answered
    source: str  # "file" (agent read from the target's /tmp) or "string" (copied into its memory)
    children_not_reached: list[int] = field(default_factory=list)

    def line(self) -> str:
        if self.method == "existing":
            return f"pid {self.pid} already runs the obskit agent"
        if self.paused_s is None:
            pause = "was not stopped"
        else:
            pause = f"was paused {'at most ' if self.paused_at_most else ''}{self.paused_s * 1e3:.0f} ms"
        return (f"loaded the obskit agent into pid {self.pid} (Python {self.python}) with {self.method}: "
                f"the process {pause}, the agent answered {_later(self.started_s)}; "
                f"remove it with `obskit gc --detach --pid {self.pid}`")

    def children_line(self) -> str | None:
        if not self.children_not_reached:
            return None
        pids = ", ".join(str(p) for p in self.children_not_reached[:8])
        more = "…" if len(self.children_not_reached) > 8 else ""
        return (f"note: {len(self.children_not_reached)} Python child process(es) of pid {self.pid} ({pids}{more}) "
                f"were forked before the attach and are not reached: attach each, or add -s")


# -- ELF: the dynamic symbol table (present even in stripped builds) --------------------------


def dynsym(data: bytes, names: tuple[str, ...]) -> tuple[dict[str, int], int]:
    """Values of ``names`` in the ELF's ``.dynsym`` and the vaddr its first PT_LOAD maps at offset 0."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF")
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 0x20)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 0x36)
    base = None
    for i in range(e_phnum):
        p_type, _, p_offset, p_vaddr = struct.unpack_from("<IIQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1 and p_offset == 0:
            base = p_vaddr
            break
    if base is None:
        raise ValueError("no PT_LOAD at offset 0")
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
    found: dict[str, int] = {}
    wanted = set(names)
    for sh in sections:
        if sh[1] != 11:  # SHT_DYNSYM
            continue
        off, size, link, entsize = sh[4], sh[5], sh[6], sh[9] or 24
        str_off, str_size = sections[link][4], sections[link][5]
        strtab = data[str_off:str_off + str_size]
        for j in range(size // entsize):
            st_name, st_info, _, st_shndx, st_value, _ = struct.unpack_from("<IBBHQQ", data, off + j * entsize)
            if st_shndx == 0 or st_value == 0 or (st_info & 0xF) != 2:  # defined functions only
                continue
            end = strtab.find(b"\0", st_name)
            name = strtab[st_name:end].decode("ascii", "replace")
            if name in wanted:
                found[name] = st_value
    return found, base


@dataclass
class Mapped:
    path: str
    start: int  # lowest address mapped at file offset 0


def _mapped_objects(pid: int, fs: ProcFS) -> list[Mapped]:
    try:
        text = fs.read_text(pid, "maps")
    except PermissionDenied:
        raise PermissionDenied(f"cannot read the memory map of process {pid}", "run as root or as the target's user",
                               pid=pid) from None
    out: dict[str, Mapped] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        lo = int(parts[0].split("-")[0], 16)
        if int(parts[2], 16) == 0 and parts[5] not in out:
            out[parts[5]] = Mapped(parts[5], lo)
    return list(out.values())


def _read_object(pid: int, fs: ProcFS, path: str) -> bytes:
    """A mapped file as the target sees it (its own mount namespace), bounded to 256 MiB."""
    with open(str(fs.path(pid, "root")) + path.removesuffix(" (deleted)"), "rb") as f:
        return f.read(256 * 1024 * 1024)


def resolve_symbols(pid: int, fs: ProcFS) -> dict[str, int]:
    """Absolute addresses of the C functions the injection calls, from ``.dynsym`` of the mapped objects."""
    found: dict[str, int] = {}
    objects = _mapped_objects(pid, fs)
    exe = fs.exe(pid) or ""

    def is_python(p: str) -> bool:
        name = os.path.basename(p)
        return name.startswith("libpython3") or p == exe or name.startswith("python3")

    def is_libc(p: str) -> bool:
        name = os.path.basename(p)
        return name.startswith(("libc.so", "libc-", "ld-musl"))

    for want, test in ((NEEDED_PYTHON, is_python), (NEEDED_LIBC, is_libc)):
        for m in sorted((m for m in objects if test(m.path)), key=lambda m: not os.path.basename(m.path).startswith("lib")):
            missing = tuple(n for n in want if n not in found)
            if not missing:
                break
            try:
                values, base = dynsym(_read_object(pid, fs, m.path), missing)
            except (OSError, ValueError, struct.error):
                continue
            bias = m.start - (base & ~0xFFF)
            for name, value in values.items():
                found[name] = bias + value
    missing_all = [n for n in NEEDED_PYTHON + NEEDED_LIBC if n not in found]
    if missing_all:
        raise Unavailable(
            f"process {pid} exports no {', '.join(missing_all)} in its dynamic symbol table: cannot schedule the agent",
            "restart it under `obskit run -- CMD`",
            pid=pid,
        )
    return found


# -- the bootstrap ----------------------------------------------------------------------------


def bootstrap_source(*, deadline: float, directory: str | None, agent_path: str | None) -> str:
    """The Python that runs in the target: load the agent (from ``agent_path`` or inline) and start it."""
    load = LOAD_FILE.replace("_PATH_", repr(agent_path)) if agent_path else LOAD_STRING.replace(
        "_SRC_", repr(Path(server.__file__).read_text()))
    return (BOOTSTRAP.replace("_LOAD_", load).replace("_DEADLINE_", repr(deadline))
            .replace("_NAME_", repr(BOOT_MODULE)).replace("_VERSION_", repr(server.AGENT_VERSION))
            .replace("_DIR_", repr(directory)))


def _place_agent_file(pid: int, fs: ProcFS) -> tuple[str, Path] | None:
    """Copy the agent's source into the target's /tmp (as it sees it); None when that cannot be written."""
    name = f"obskit-agent-{os.getpid()}-{time.monotonic_ns()}.py"
    local = fs.path(pid, "root", "tmp", name)
    try:
        # /tmp is shared with the target's other users: never follow or reuse a name (sticky bit keeps it ours).
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(Path(server.__file__).read_bytes())
        os.chmod(local, 0o644)  # readable by the target's user whatever our umask
    except OSError:
        _unlink(local)
        return None
    return f"/tmp/{name}", local


def _unlink(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def agent_directory(pid: int, fs: ProcFS) -> str | None:
    """The socket directory to give the agent (as the target sees it); None: the agent's own default."""
    try:
        env = fs.environ(pid)
    except (TargetNotFound, PermissionDenied):
        env = {}
    return env.get("OBSKIT_AGENT_DIR") or os.environ.get("OBSKIT_AGENT_DIR") or None


# -- gdb ----------------------------------------------------------------------------------------


def gdb_path() -> str | None:
    return shutil.which("gdb")


def _gdb_script(pid: int, syms: dict[str, int], payload: Path, size: int) -> list[str]:
    mmap_t = "(void*(*)(void*,unsigned long,int,int,int,long))"
    return [
        "python import time; _obskit_t0 = time.monotonic()",
        f"attach {pid}",
        f"set $obskit_buf = (char*)({mmap_t}{syms['mmap']:#x})(0, {size}, 3, 0x22, -1, 0)",
        "printf \"OBSKIT-BUF %lu\\n\", (unsigned long)$obskit_buf",
        # Nothing below runs if mmap failed (MAP_FAILED is -1): restore would error, and the call is guarded.
        f"restore {payload} binary $obskit_buf",
        "set $obskit_ok = ((unsigned long)$obskit_buf != (unsigned long)-1 && *(char*)$obskit_buf != 0)",
        f"set $obskit_r = $obskit_ok ? ((int(*)(void*,void*)){syms['Py_AddPendingCall']:#x})"
        f"((void*){syms['PyRun_SimpleString']:#x}, (void*)$obskit_buf) : -2",
        "printf \"OBSKIT-RES %d\\n\", $obskit_r",
        "detach",
        "python print('OBSKIT-STOP %.6f' % (time.monotonic() - _obskit_t0))",
    ]


def _run_gdb(gdb: str, pid: int, syms: dict[str, int], source: str, timeout: float) -> tuple[int, float | None, bool]:
    """Run gdb once; returns (Py_AddPendingCall's result, seconds stopped, whether that is an upper bound)."""
    data = source.encode("utf-8") + b"\0"
    size = (len(data) + 4095) // 4096 * 4096
    with tempfile.TemporaryDirectory(prefix="obskit-gdb-") as tmp:
        payload = Path(tmp) / "bootstrap"
        payload.write_bytes(data)
        args = [gdb, "-nx", "-batch", "-q",
                "-iex", "set debuginfod enabled off", "-iex", "set auto-solib-add off", "-iex", "set auto-load off",
                # No symbols are needed (addresses come from .dynsym): reading none keeps the stop short.
                "-iex", "set sysroot /nonexistent",
                "-iex", "set pagination off", "-iex", "set confirm off", "-iex", "set unwindonsignal on"]
        for cmd in _gdb_script(pid, syms, payload, size):
            args += ["-ex", cmd]
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGINT first: gdb unwinds a call in progress (unwindonsignal) and detaches as it quits.
            proc.send_signal(signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            _ensure_running(pid)
            raise Unavailable(f"gdb did not finish attaching to process {pid} within {timeout:.0f}s; it was stopped",
                              "retry; see `obskit doctor`", pid=pid) from None
        elapsed = time.monotonic() - t0
    _ensure_running(pid)
    res = re.search(r"^OBSKIT-RES (-?\d+)$", out, re.M)
    stop = re.search(r"^OBSKIT-STOP ([\d.]+)$", out, re.M)
    if res is None:
        last = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("warning")][-1:] or ["no output"]
        if "ptrace" in out and ("not permitted" in out or "Operation not permitted" in out):
            raise PermissionDenied(f"gdb may not attach to process {pid} (ptrace refused)",
                                   "run as root or with CAP_SYS_PTRACE; see `obskit doctor`", pid=pid)
        raise Unavailable(f"gdb could not schedule the agent in process {pid}: {last[0][:200]}",
                          "see `obskit doctor`; or restart it under `obskit run -- CMD`", pid=pid)
    code = int(res.group(1))
    if stop is not None:
        return code, float(stop.group(1)), False
    return code, elapsed, True


def _ensure_running(pid: int) -> None:
    """Never leave the target stopped: no tracer, and not in a stop the attach left behind."""
    fs = ProcFS()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            status = fs.status(pid)
        except (TargetNotFound, PermissionDenied):
            return
        if status.get("TracerPid", "0").strip() == "0":
            if status.get("State", "").startswith("T"):
                os.kill(pid, signal.SIGCONT)
            return
        time.sleep(0.02)


# -- the whole operation ------------------------------------------------------------------------


def version_tuple(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def default_timeout() -> float:
    """Seconds the bootstrap may take to run: 20 (an idle gunicorn sync worker sleeps up to 15 s in
    select between requests); ``OBSKIT_INJECT_TIMEOUT`` changes it."""
    try:
        value = float(os.environ.get("OBSKIT_INJECT_TIMEOUT", "20"))
    except ValueError:
        return 20.0
    return value if 0 < value < 3600 else 20.0


def inject(pid: int, *, proc_root: str = "/proc", timeout: float | None = None,
           force_string: bool = False) -> InjectResult:
    """Load the agent into ``pid`` and wait until its socket answers ``hello``; idempotent."""
    timeout = default_timeout() if timeout is None else timeout
    from obskit.agent.client import find_socket, try_connect

    fs = ProcFS(proc_root)
    if not fs.exists(pid):
        raise TargetNotFound(f"process {pid} not found", "check the PID with `obskit ps`", pid=pid)
    if fs.is_zombie(pid):
        raise fs.zombie_error(pid)
    version = fs.python_version(pid)
    if find_socket(pid, proc_root=proc_root) is not None and try_connect(pid, proc_root=proc_root) is not None:
        return InjectResult(pid, "existing", version, None, False, 0.0, "none")
    vt = version_tuple(version)
    if vt is None:
        raise Unavailable(f"cannot tell process {pid}'s Python version", "start it under `obskit run -- CMD` instead",
                          pid=pid)
    if vt < MIN_GDB_PYTHON:
        raise UnsupportedVersion(f"--inject needs Python 3.9+ in the target; process {pid} runs {version}",
                                 "restart it under `obskit run -- CMD`", pid=pid)
    gdb = None
    syms: dict[str, int] = {}
    if vt < (3, 14):
        gdb = gdb_path()
        if gdb is None:
            raise Unavailable(f"loading the agent into Python {version} needs gdb, which is not installed", GDB_HINT,
                              pid=pid)
        syms = resolve_symbols(pid, fs)
    _check_not_held(pid, fs)
    directory = agent_directory(pid, fs)
    deadline = time.time() + timeout
    placed = None if force_string else _place_agent_file(pid, fs)
    script: Path | None = None
    source = bootstrap_source(deadline=deadline, directory=directory, agent_path=placed[0] if placed else None)
    try:
        if gdb is not None:
            code, paused, at_most = _run_gdb(gdb, pid, syms, source, timeout)
            if code != 0:
                raise Unavailable(f"process {pid} refused the scheduled call (Py_AddPendingCall returned {code}: its "
                                  "queue is full or it is shutting down)", "retry in a moment", pid=pid)
            method = "gdb"
        else:
            paused, script = _remote_exec(pid, fs, source, timeout)
            at_most = True
            method = "sys.remote_exec"
        t_end = time.monotonic()
        _wait_for_agent(pid, proc_root, deadline, paused)
        started = time.monotonic() - t_end
        hello = try_connect(pid, proc_root=proc_root)
        if hello is not None:
            version = str(hello.request("hello").get("python", version))
    finally:
        _unlink(placed[1] if placed else None)
        _unlink(script)
    children = [c for c in fs.descendants(pid) if _is_python(fs, c)]
    return InjectResult(pid, method, version, None if method != "gdb" else paused, at_most, started,
                        "file" if placed else "string", children)


def _check_not_held(pid: int, fs: ProcFS) -> None:
    """A stopped process would never run the bootstrap, and one already traced cannot be attached."""
    try:
        status = fs.status(pid)
    except (TargetNotFound, PermissionDenied):
        return
    tracer = status.get("TracerPid", "0").strip()
    if tracer not in ("", "0"):
        raise Unavailable(f"process {pid} is already being traced by pid {tracer} (a debugger or profiler)",
                          "retry when it has detached", pid=pid)
    if status.get("State", "").startswith("T"):
        raise Unavailable(f"process {pid} is stopped (SIGSTOP or job control): it cannot run the agent",
                          f"continue it first (`kill -CONT {pid}`) if that is intended", pid=pid)


def _is_python(fs: ProcFS, pid: int) -> bool:
    try:
        return fs.python_version(pid) is not None
    except (TargetNotFound, PermissionDenied):
        return False


def _wait_for_agent(pid: int, proc_root: str, deadline: float, paused: float | None) -> None:
    from obskit.agent.client import find_socket, try_connect

    fs = ProcFS(proc_root)
    while time.time() < deadline + 0.5:
        if not fs.exists(pid) or fs.is_zombie(pid):
            from obskit.errors import TargetExited

            raise TargetExited(f"process {pid} exited while the agent was loading", "find it again with `obskit ps`",
                               pid=pid)
        if find_socket(pid, proc_root=proc_root) is not None and try_connect(pid, proc_root=proc_root) is not None:
            return
        time.sleep(0.05)
    pause = f" (it was paused {paused * 1e3:.0f} ms and runs on)" if paused is not None else ""
    raise Unavailable(
        f"the agent did not start in process {pid} before the deadline{pause}: its main thread did not return to "
        "Python (a long C call holding the GIL, or a blocking wait such as an idle worker in select), or the agent "
        "could not listen",
        "retry when it is less busy or busier (a request wakes an idle worker), set OBSKIT_INJECT_TIMEOUT to wait "
        "longer, or restart it under `obskit run -- CMD`; the scheduled load expires unused",
        pid=pid,
    )


REMOTE_EXEC_WRAPPER = "import sys; sys.remote_exec({pid}, {path!r})"


def _remote_exec(pid: int, fs: ProcFS, source: str, timeout: float) -> tuple[float, Path]:
    """Python 3.14+: the target's own interpreter binary sends the bootstrap (same version on both sides)."""
    name = f"obskit-boot-{os.getpid()}-{time.monotonic_ns()}.py"
    local = fs.path(pid, "root", "tmp", name)
    try:
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.chmod(local, 0o644)
    except FileNotFoundError:
        raise TargetNotFound(f"process {pid} not found", "check the PID with `obskit ps`", pid=pid) from None
    except OSError:
        raise PermissionDenied(f"cannot write into process {pid}'s /tmp", "run as root or as the target's user",
                               pid=pid) from None
    t0 = time.monotonic()
    try:
        r = subprocess.run([str(fs.path(pid, "exe")), "-I", "-c", REMOTE_EXEC_WRAPPER.format(pid=pid, path="/tmp/" + name)],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        _unlink(local)
        raise Unavailable(f"sys.remote_exec into process {pid} did not finish within {timeout:.0f}s", "retry",
                          pid=pid) from None
    if r.returncode != 0:
        _unlink(local)
        last = (r.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise Unavailable(f"sys.remote_exec into process {pid} failed: {last}",
                          "the target may set PYTHON_DISABLE_REMOTE_DEBUG or ptrace may be refused; see `obskit doctor`",
                          pid=pid)
    # The script is read when the target runs it: the caller removes it once the agent answers or the deadline passed.
    return time.monotonic() - t0, local


def detach(pid: int, *, proc_root: str = "/proc") -> dict[str, object]:
    """Remove the agent from ``pid``; returns what the agent reported, after its socket is gone."""
    from obskit.agent.client import connect, find_socket

    client = connect(pid, proc_root=proc_root)
    reply = client.request("detach")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and find_socket(pid, proc_root=proc_root) is not None:
        time.sleep(0.05)
    return reply


Confirm = Callable[[str], bool]


def agent_client(pid: int, *, inject_ok: bool, proc_root: str = "/proc", confirm: Confirm | None = None,
                 announce: Callable[[str], None] | None = None, timeout: float | None = None,
                 subprocesses: bool = False) -> AgentClient:
    """A client for ``pid``'s agent; loads it first with ``inject_ok`` (or when ``confirm`` says yes)."""
    from obskit.agent.client import NO_AGENT_HINT, connect, find_socket

    fs = ProcFS(proc_root)
    result: InjectResult | None = None
    if find_socket(pid, proc_root=proc_root) is not None:
        if inject_ok and announce is not None:
            announce(f"pid {pid} already runs the obskit agent (nothing loaded)")
    else:
        if not inject_ok:
            question = (f"process {pid} has no obskit agent; load it now (gdb or sys.remote_exec pauses the process "
                        "briefly and runs code inside it)?")
            if confirm is None or not confirm(question):
                raise Unavailable(f"process {pid} has no obskit agent", NO_AGENT_HINT.format(pid=pid), pid=pid)
        result = inject(pid, proc_root=proc_root, timeout=timeout)
        if announce is not None:
            announce(result.line())
    if subprocesses:
        children = result.children_not_reached if result is not None else [
            c for c in fs.descendants(pid) if _is_python(fs, c)]
        # All at once: each child runs its bootstrap when its own main thread gets to it.
        from concurrent.futures import ThreadPoolExecutor

        live = [c for c in children if fs.exists(c) and not fs.is_zombie(c)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(inject, c, proc_root=proc_root, timeout=timeout) for c in live]
            results = [f.result() for f in futures]
        if announce is not None:
            for r in results:
                announce(r.line())
    elif result is not None and announce is not None and result.children_line():
        announce(result.children_line() or "")
    return connect(pid, proc_root=proc_root)


def _later(seconds: float) -> str:
    return "at once" if seconds < 0.01 else f"{seconds:.2f}s later"
