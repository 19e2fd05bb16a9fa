"""Attaching to a process: the one place that says whether it can work, and why not.

Before any waiting, :func:`preflight` runs the doctor's attach checks
(:data:`obskit.doctor.ATTACH_CHECKS`: the PID is visible and not a zombie, it runs a Python
the bundled py-spy reads, uid / ptrace_scope / seccomp / ``/proc/N/root`` allow ptrace) and
raises the first failure as a typed error with its fix; ``obskit doctor`` shows the same
first failure.  When py-spy itself fails later, :func:`explain_failure` turns its raw
:class:`~obskit.pyspy.PySpyFailure` into the real cause (the same checks again, then
py-spy's words), and :func:`is_permanent` is the one rule for "will retrying help?".
"""

from __future__ import annotations

import time
from typing import Any

from obskit import pyspy
from obskit.doctor import ATTACH_CHECKS, KUBECTL_RECIPE, DoctorContext, first_failure, seccomp_suspect
from obskit.errors import (
    ObskitError,
    PermissionDenied,
    TargetExited,
    TargetNotFound,
    TargetNotPython,
    Unavailable,
    UnsupportedVersion,
)
from obskit.proc import ProcessFacts, ProcFS

PERMISSION_HINT = (
    "run obskit as root or as the target's user with CAP_SYS_PTRACE; in Kubernetes use "
    f"`{KUBECTL_RECIPE}`; `obskit doctor --pid PID` shows which check fails"
)

# What py-spy says when attaching cannot work however often it is tried (a refusal, no Python, a
# process that is gone); anything else ("Failed to suspend process", "Failed to copy PyCodeObject",
# a timeout) is what a busy target answers now and then, and is worth another try.
_PERMANENT = (
    "permission denied", "operation not permitted", "eperm",
    "failed to find python version", "failed to find a python interpreter",
    "unsupported version", "unknown python version",
    "no such file", "no such process",
)


def is_permanent(stderr: str) -> bool:
    """True when py-spy's error output says attaching will not work on a retry."""
    low = stderr.lower()
    return any(word in low for word in _PERMANENT)


def attach_failure(pid: int, *, proc_root: str = "/proc", sys_root: str = "/") -> ObskitError | None:
    """The first failing attach check for ``pid`` as the error a command raises, or None."""
    return _first_error(DoctorContext(pid=pid, proc_root=proc_root, sys_root=sys_root))


def preflight(pid: int, *, proc_root: str = "/proc", sys_root: str = "/") -> ProcessFacts:
    """Facts about ``pid`` if obskit can sample it; otherwise the typed error of the first failing check."""
    ctx = DoctorContext(pid=pid, proc_root=proc_root, sys_root=sys_root)
    err = _first_error(ctx)
    if err is not None:
        raise err
    return ctx.facts()


def _first_error(ctx: DoctorContext) -> ObskitError | None:
    assert ctx.pid is not None
    pid, result = ctx.pid, first_failure(ctx, ATTACH_CHECKS)
    if result is None:
        return None
    err = result.to_error(pid)
    if isinstance(err, PermissionDenied):
        err.message = f"cannot attach to process {pid}: {result.message}"
    elif isinstance(err, TargetNotFound) and result.name == "pid_namespace" and pid > 0:
        err.message = f"process {pid} not found"  # the fix says where to look (PID namespace, kubectl debug)
    return err


def explain_failure(pid: int | None, stderr: str, *, proc_root: str = "/proc") -> ObskitError:
    """Turn py-spy's error output into the real cause: the attach checks first, then py-spy's words."""
    text = pyspy.error_line(stderr)
    low = stderr.lower()
    if pid is not None:
        if not ProcFS(proc_root).exists(pid):
            return TargetExited(f"process {pid} exited before it could be sampled", "check that the service is running",
                                pid=pid)
        err = attach_failure(pid, proc_root=proc_root)
        if err is not None:
            return err
    if "permission denied" in low or "operation not permitted" in low or "eperm" in low:
        # No check explains the refusal; a seccomp filter is the usual one that /proc does not show.
        suspect = seccomp_suspect(proc_root)
        if suspect is not None:
            return PermissionDenied(f"not allowed to read the memory of process {pid}: {suspect.message}", suspect.fix,
                                    pid=pid)
        return PermissionDenied(f"not allowed to read the memory of process {pid}", PERMISSION_HINT, pid=pid)
    if "failed to find python version" in low or "failed to find a python interpreter" in low:
        return TargetNotPython(f"py-spy found no Python interpreter in process {pid}: {text}",
                               "check the PID with `obskit ps`", pid=pid)
    if "unsupported version" in low or "unknown python version" in low:
        return UnsupportedVersion(f"the Python version of process {pid} is not supported: {text}",
                                  f"the bundled py-spy reads {pyspy.supported_range()}", pid=pid)
    if ("no such file" in low or "no such process" in low) and pid is not None:
        return TargetNotFound(f"process {pid} not found", "check the PID with `obskit ps`", pid=pid)
    return Unavailable(f"sampling process {pid} failed: {text}",
                       "re-run with --verbose; `obskit doctor --pid PID` checks attach", pid=pid)


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
    """``py-spy dump --json`` of every thread of ``pid``, retried while the failure is not permanent
    (dumps of deep stacks on a busy target fail now and then); a typed error with the cause otherwise."""
    last = ""
    for attempt in range(max(1, retries)):
        try:
            return pyspy.dump(pid, locals_=locals_, native=native, subprocesses=subprocesses,
                              nonblocking=nonblocking, timeout=timeout)
        except pyspy.PySpyFailure as e:  # noqa: PERF203 - retried by design
            last = e.stderr
            if is_permanent(last):
                break
            time.sleep(0.05 * (attempt + 1))
    raise explain_failure(pid, last, proc_root=proc_root)
