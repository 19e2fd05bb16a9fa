"""Pre-flight for anything that attaches to a process: fail fast, with the real cause and the fix.

Checks run before any waiting: the PID exists, it runs Python, its version is one the
bundled py-spy reads, and this process may ptrace it.  The permission part is the
doctor's checks (uid, ptrace_scope, seccomp, /proc/N/root), so the error names the
check that failed and its fix; ``obskit doctor`` prints them all, one per line.
"""

from __future__ import annotations

from obskit.errors import ObskitError, TargetNotFound, TargetNotPython, UnsupportedVersion
from obskit.proc import ProcessFacts, ProcFS
from obskit.pyspy import SUPPORTED_MAX, version_supported


def preflight(pid: int, *, proc_root: str = "/proc", check_permissions: bool = True) -> ProcessFacts:
    """Facts about ``pid`` if obskit can sample it; otherwise the typed error that says why."""
    if pid <= 0:
        raise TargetNotFound(f"process {pid} is not a valid PID", "give a positive PID from `obskit ps`", pid=pid)
    fs = ProcFS(proc_root)
    if not fs.exists(pid):
        raise TargetNotFound(
            f"process {pid} not found",
            "check the PID with `obskit ps`; from another container the PID namespace must be shared "
            "(`kubectl debug --target=CONTAINER`)",
            pid=pid,
        )
    if fs.is_zombie(pid):
        raise fs.zombie_error(pid)
    facts = fs.facts(pid)
    if not facts.is_python:
        raise TargetNotPython(
            f"process {pid} ({_short(facts.command)}) is not running Python",
            "pick a Python process from `obskit ps`",
            pid=pid,
        )
    if facts.python_version and not version_supported(facts.python_version):
        hint = f"supported: 2.3 to {SUPPORTED_MAX[0]}.{SUPPORTED_MAX[1]}; upgrade py-spy (`pip install -U py-spy`)"
        if _at_least(facts.python_version, (3, 14)):
            v = facts.python_version
            hint += f"; Python {v} itself shows tasks and stacks: `python{v} -m asyncio pstree {pid}`, `python{v} -m pdb -p {pid}`"
        raise UnsupportedVersion(
            f"process {pid} runs Python {facts.python_version}, which the bundled py-spy does not read",
            hint,
            pid=pid,
        )
    if check_permissions:
        problem = permission_problem(pid, proc_root=proc_root)
        if problem is not None:
            raise problem
    return facts


def permission_problem(pid: int, *, proc_root: str = "/proc", sys_root: str = "/") -> ObskitError | None:
    """The doctor check that says why ptrace of ``pid`` would be refused, as an error; None if nothing does."""
    from obskit.doctor import PERMISSION_CHECKS, DoctorContext, first_failure

    result = first_failure(DoctorContext(pid=pid, proc_root=proc_root, sys_root=sys_root), PERMISSION_CHECKS)
    if result is None:
        return None
    err = result.to_error(pid)
    err.message = f"cannot attach to process {pid}: {result.message}"
    return err


def _at_least(version: str, want: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= want


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
