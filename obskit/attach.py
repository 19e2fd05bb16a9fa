"""Pre-flight for anything that attaches to a process: fail fast, with the real cause and the fix.

Checks run before any waiting: the PID exists, it runs Python, its version is one the
bundled py-spy reads, and this process may ptrace it.  ``obskit doctor`` runs the
same checks in full and prints them one per line.
"""

from __future__ import annotations

import os

from obskit.errors import PermissionDenied, TargetNotFound, TargetNotPython, UnsupportedVersion
from obskit.proc import ProcessFacts, ProcFS
from obskit.pyspy import PERMISSION_HINT, SUPPORTED_MAX, version_supported

CAP_SYS_PTRACE = 19


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
    facts = fs.facts(pid)
    if not facts.is_python:
        raise TargetNotPython(
            f"process {pid} ({_short(facts.command)}) is not running Python",
            "pick a Python process from `obskit ps`",
            pid=pid,
        )
    if facts.python_version and not version_supported(facts.python_version):
        raise UnsupportedVersion(
            f"process {pid} runs Python {facts.python_version}, which the bundled py-spy does not read",
            f"supported: 2.3 to {SUPPORTED_MAX[0]}.{SUPPORTED_MAX[1]}; upgrade py-spy (`pip install -U py-spy`)",
            pid=pid,
        )
    if check_permissions:
        problem = ptrace_problem(pid, fs)
        if problem:
            raise PermissionDenied(f"cannot attach to process {pid}: {problem}", PERMISSION_HINT, pid=pid)
    return facts


def ptrace_problem(pid: int, fs: ProcFS, *, self_pid: str = "self") -> str | None:
    """Why ptrace of ``pid`` would be refused, or None when nothing stands in the way."""
    caps = _cap_eff(fs, self_pid)
    has_cap = caps is not None and bool(caps >> CAP_SYS_PTRACE & 1)
    yama = _yama_scope(fs)
    if yama == 3:
        return "kernel.yama.ptrace_scope is 3 (ptrace disabled until reboot)"
    target_uid = None
    try:
        uid_line = fs.status(pid).get("Uid", "")
        target_uid = int(uid_line.split()[1]) if uid_line else None
    except (TargetNotFound, PermissionDenied, ValueError, IndexError):
        pass
    euid = _self_euid(fs, self_pid)
    if not has_cap and target_uid is not None and euid is not None and euid != target_uid:
        return f"it belongs to uid {target_uid} and obskit runs as uid {euid} without CAP_SYS_PTRACE"
    if not has_cap and yama in (1, 2):
        return f"kernel.yama.ptrace_scope is {yama} and CAP_SYS_PTRACE is not in the effective set"
    return None


def _cap_eff(fs: ProcFS, who: str) -> int | None:
    try:
        text = (fs.root / who / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def _self_euid(fs: ProcFS, who: str) -> int | None:
    if who == "self" and str(fs.root) == "/proc":
        return os.geteuid()
    try:
        text = (fs.root / who / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])
    return None


def _yama_scope(fs: ProcFS) -> int | None:
    try:
        return int((fs.root / "sys/kernel/yama/ptrace_scope").read_text().strip())
    except (OSError, ValueError):
        return None


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
