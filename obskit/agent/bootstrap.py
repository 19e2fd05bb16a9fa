"""Loading the agent into a Python process without changing the app.

* :func:`run_env` prepares the environment for ``obskit run``: a private directory
  (0700) holding a ``sitecustomize.py`` is put first on ``PYTHONPATH``; it starts the
  agent when ``OBSKIT_AGENT=1`` and then runs the ``sitecustomize`` it shadows, so an
  existing one keeps working.
* :func:`inject` loads it into a running Python 3.14+ process through ``sys.remote_exec``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from obskit.agent import BOOT_MODULE, server
from obskit.errors import PermissionDenied, TargetNotFound, Unavailable, UnsupportedVersion

SITECUSTOMIZE = '''\
# Written by `obskit run`: starts the obskit agent, then chains the sitecustomize it shadows.
def _obskit_boot():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if os.environ.get("OBSKIT_AGENT", "") == "1" and "_MOD_" not in sys.modules:
        try:
            import importlib.util

            spec = importlib.util.spec_from_file_location("_MOD_", os.environ["OBSKIT_AGENT_SERVER"])
            mod = importlib.util.module_from_spec(spec)
            sys.modules["_MOD_"] = mod
            spec.loader.exec_module(mod)
            mod.start()
        except Exception:
            sys.modules.pop("_MOD_", None)
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
    if spec is not None and spec.origin and os.path.dirname(os.path.abspath(spec.origin)) != here:
        chained = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = chained
        spec.loader.exec_module(chained)


_obskit_boot()
del _obskit_boot
'''.replace("_MOD_", BOOT_MODULE)


def boot_dir() -> Path:
    """Create (or check) the private directory holding the bootstrap ``sitecustomize.py``."""
    base = server.socket_dir()
    problem = server._secure_dir(base)
    if problem:
        raise PermissionDenied(f"agent directory unsafe: {problem}", "remove it or set OBSKIT_AGENT_DIR to a private directory")
    d = Path(base) / "boot"
    problem = server._secure_dir(str(d))
    if problem:
        raise PermissionDenied(f"agent directory unsafe: {problem}", "remove it or set OBSKIT_AGENT_DIR to a private directory")
    target = d / "sitecustomize.py"
    try:
        current = target.read_text()
    except OSError:
        current = None
    if current != SITECUSTOMIZE:
        tmp = d / f".sitecustomize.{os.getpid()}.tmp"
        tmp.write_text(SITECUSTOMIZE)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    return d


def run_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment under which a Python command starts with the agent loaded."""
    env = dict(os.environ if base is None else base)
    d = str(boot_dir())
    old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != d]
    env["PYTHONPATH"] = os.pathsep.join([d, *old])
    env["OBSKIT_AGENT"] = "1"
    env["OBSKIT_AGENT_SERVER"] = str(Path(server.__file__).resolve())
    return env


INJECT_SCRIPT = '''\
import sys, types
if "{mod}" not in sys.modules:
    _m = types.ModuleType("{mod}")
    _m.__file__ = "<obskit-agent>"
    sys.modules["{mod}"] = _m
    exec(compile({src!r}, "<obskit-agent>", "exec"), _m.__dict__)
    _m.start()
'''


def inject_script() -> str:
    """What ``sys.remote_exec`` runs in the target: the agent's whole source, then start()."""
    return INJECT_SCRIPT.format(mod=BOOT_MODULE, src=Path(server.__file__).read_text())


def inject(pid: int, python_version: str | None, *, proc_root: str = "/proc", timeout: float = 10.0) -> None:
    """Load the agent into a running 3.14+ process with ``sys.remote_exec`` (explicit opt-in only).

    The target's own interpreter binary makes the call (remote_exec needs the same
    version on both sides); the script lands in the target's /tmp through /proc/N/root.
    """
    if python_version is None:
        raise Unavailable(f"cannot tell process {pid}'s Python version", "start it under `obskit run -- CMD` instead", pid=pid)
    major, minor = (int(x) for x in python_version.split(".")[:2])
    if (major, minor) < (3, 14):
        raise UnsupportedVersion(
            f"--inject needs Python 3.14+ in the target; process {pid} runs {python_version}",
            "restart it under `obskit run -- CMD` or with OBSKIT_AGENT=1",
            pid=pid,
        )
    root = Path(proc_root) / str(pid)
    name = f"obskit-inject-{os.getpid()}-{time.monotonic_ns()}.py"
    local = root / "root" / "tmp" / name
    script = inject_script().encode()
    try:
        # /tmp is shared with whoever runs in the target's container: never follow or reuse a name.
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(script)
    except FileNotFoundError:
        raise TargetNotFound(f"process {pid} not found", "check the PID with `obskit ps`", pid=pid) from None
    except (PermissionError, FileExistsError):
        raise PermissionDenied(f"cannot write into process {pid}'s /tmp", "run as root or as the target's user", pid=pid) from None
    try:
        r = subprocess.run(
            [str(root / "exe"), "-I", "-c", f"import sys; sys.remote_exec({pid}, {'/tmp/' + name!r})"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise Unavailable(
                f"sys.remote_exec into process {pid} failed: {last}",
                "the target may set PYTHON_DISABLE_REMOTE_DEBUG or ptrace may be refused; see `obskit doctor`",
                pid=pid,
            )
        # The script runs at the target's next safe point; it deletes nothing, so wait for the socket.
        from obskit.agent.client import find_socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if find_socket(pid, proc_root=proc_root) is not None:
                return
            time.sleep(0.1)
        raise Unavailable(
            f"the agent did not come up in process {pid} within {timeout:.0f}s",
            "the main thread may be blocked in C code; retry, or use `obskit run`",
            pid=pid,
        )
    finally:
        try:
            local.unlink()
        except OSError:
            pass
