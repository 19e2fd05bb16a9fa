"""Driving the bundled py-spy binary: finding it, its environment, and reading its failures.

obskit never shows py-spy's raw error text alone: :func:`explain_failure` turns it,
together with what /proc says about the target, into a typed error with a fix.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

# doctor imports only stdlib and errors at module level (and this module lazily): no cycle.
from obskit.doctor import KUBECTL_RECIPE
from obskit.errors import (
    ObskitError,
    PermissionDenied,
    TargetExited,
    TargetNotFound,
    TargetNotPython,
    Unavailable,
    UnsupportedVersion,
)

# Python versions the bundled py-spy reads (py-spy 0.4.x: 2.3-2.7 and 3.3-3.13).
SUPPORTED_MIN = (2, 3)
SUPPORTED_MAX = (3, 13)

PERMISSION_HINT = (
    "run obskit as root or as the target's user with CAP_SYS_PTRACE; in Kubernetes use "
    f"`{KUBECTL_RECIPE}`; "
    "`obskit doctor --pid PID` shows which check fails"
)


@functools.lru_cache(maxsize=1)
def binary() -> str:
    """Path of the py-spy executable (the one installed beside this Python first)."""
    names = ["py-spy"]
    here = os.path.dirname(sys.executable)
    for name in names:
        cand = os.path.join(here, name)
        if os.access(cand, os.X_OK):
            return cand
    found = shutil.which("py-spy")
    if found:
        return found
    raise Unavailable("the py-spy sampler binary was not found", "install it with `pip install py-spy`")


@functools.lru_cache(maxsize=1)
def version() -> str:
    try:
        out = subprocess.run([binary(), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().split()[-1] if out.strip() else "unknown"


def env() -> dict[str, str]:
    """Environment for py-spy: no Rust backtraces in its error output."""
    e = dict(os.environ)
    e["RUST_BACKTRACE"] = "0"
    e.pop("RUST_LOG", None)
    return e


def version_supported(version: str | None) -> bool:
    if not version:
        return True
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return True
    return SUPPORTED_MIN <= (major, minor) <= SUPPORTED_MAX


def error_line(stderr: str) -> str:
    """The first ``Error: ...`` line py-spy printed, or its last non-empty line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Error:"):
            return ln[len("Error:") :].strip()
    useful = [ln for ln in lines if not ln.startswith("py-spy>")]
    return useful[-1] if useful else (lines[-1] if lines else "no output")


def explain_failure(pid: int | None, stderr: str, *, proc_root: str = "/proc") -> ObskitError:
    """Turn a py-spy failure into the real cause, checked against /proc."""
    from obskit.proc import ProcFS

    text = error_line(stderr)
    low = stderr.lower()
    if pid is not None and not ProcFS(proc_root).exists(pid):
        return TargetExited(f"process {pid} exited before it could be sampled", "check that the service is running", pid=pid)
    if "permission denied" in low or "operation not permitted" in low or "eperm" in low:
        return _permission_cause(pid, proc_root)
    if "failed to find python version" in low or "failed to find a python interpreter" in low:
        if pid is not None:
            from obskit.attach import preflight

            try:
                preflight(pid, proc_root=proc_root, check_permissions=False)
            except ObskitError as e:
                return e
        return TargetNotPython(f"py-spy found no Python interpreter in process {pid}: {text}", "check the PID with `obskit ps`", pid=pid)
    if "unsupported version" in low or "unknown python version" in low:
        return UnsupportedVersion(f"the Python version of process {pid} is not supported: {text}", "", pid=pid)
    if "no such file" in low and pid is not None:
        return TargetNotFound(f"process {pid} not found", "check the PID with `obskit ps`", pid=pid)
    return Unavailable(f"sampling process {pid} failed: {text}", "re-run with --verbose; `obskit doctor --pid PID` checks attach", pid=pid)


def _permission_cause(pid: int | None, proc_root: str) -> ObskitError:
    """The doctor check behind a refused attach, instead of the sampler's bare EPERM."""
    from obskit.doctor import seccomp_suspect

    if pid is not None:
        from obskit.attach import permission_problem

        problem = permission_problem(pid, proc_root=proc_root)
        if problem is not None:
            return problem
    suspect = seccomp_suspect(proc_root)
    if suspect is not None:
        return PermissionDenied(f"not allowed to read the memory of process {pid}: {suspect.message}", suspect.fix, pid=pid)
    return PermissionDenied(f"not allowed to read the memory of process {pid}", PERMISSION_HINT, pid=pid)


def dump(
    pid: int,
    *,
    locals_: bool = False,
    native: bool = False,
    subprocesses: bool = False,
    nonblocking: bool = False,
    retries: int = 3,
    timeout: float = 30.0,
    proc_root: str = "/proc",
) -> list[dict[str, Any]]:
    """One ``py-spy dump --json`` of every thread of ``pid``; retried, as dumps of deep stacks fail intermittently."""
    cmd = [binary(), "dump", "--json", "--pid", str(pid)]
    if locals_:
        cmd.append("--locals")
    if native:
        cmd.append("--native")
    if subprocesses:
        cmd.append("--subprocesses")
    if nonblocking:
        cmd.append("--nonblocking")
    last_err = ""
    for attempt in range(max(1, retries)):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())
        except subprocess.TimeoutExpired:
            last_err = f"Error: py-spy dump did not answer within {timeout:.0f}s"
            continue
        if proc.returncode == 0:
            try:
                data = json.loads(proc.stdout or "[]")
            except json.JSONDecodeError:
                last_err = "Error: py-spy printed output that is not JSON"
                continue
            return data if isinstance(data, list) else [data]
        last_err = proc.stderr
        low = last_err.lower()
        if "permission denied" in low or "operation not permitted" in low or "failed to find python version" in low:
            break
        time.sleep(0.05 * (attempt + 1))
    raise explain_failure(pid, last_err, proc_root=proc_root)
