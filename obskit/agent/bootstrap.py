"""Loading the agent into a Python process without changing the app.

* :func:`run_env` prepares the environment for ``obskit run``: a private directory
  (0700) holding a ``sitecustomize.py`` is put first on ``PYTHONPATH``; it starts the
  agent when ``OBSKIT_AGENT=1`` and then runs the ``sitecustomize`` it shadows, so an
  existing one keeps working.
* :mod:`obskit.agent.inject` loads it into a running process (gdb, or ``sys.remote_exec``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from obskit.agent import BOOT_MODULE, server
from obskit.errors import PermissionDenied

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


def inject_script() -> str:
    """What ``sys.remote_exec`` (or gdb's scheduled call) runs in the target: load the agent inline, start it."""
    from obskit.agent.inject import bootstrap_source

    return bootstrap_source(deadline=time.time() + 3600, directory=None, agent_path=None)
