"""The py-spy driver: the bundled binary, its version and environment, the Python versions it
reads, and running it.

This module only drives py-spy.  A run that fails raises :class:`PySpyFailure` carrying
py-spy's own stderr; what that failure means for the user (the cause, the fix, whether
retrying can help) is decided in one place, :mod:`obskit.attach`, from the doctor's checks.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from obskit.errors import Unavailable

# Python versions the bundled py-spy reads (py-spy 0.4.x: 2.3-2.7 and 3.3-3.13).
SUPPORTED_MIN = (2, 3)
SUPPORTED_MAX = (3, 13)


class PySpyFailure(Exception):
    """py-spy ran and failed; ``stderr`` is what it said (raw, for :func:`obskit.attach.explain_failure`)."""

    def __init__(self, pid: int | None, stderr: str, returncode: int | None = None) -> None:
        super().__init__(error_line(stderr))
        self.pid = pid
        self.stderr = stderr
        self.returncode = returncode


@functools.lru_cache(maxsize=1)
def binary() -> str:
    """Path of the py-spy executable (the one installed beside this Python first)."""
    cand = os.path.join(os.path.dirname(sys.executable), "py-spy")
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


def supported_range() -> str:
    """The Python versions the bundled py-spy reads, as people write them (``2.3 to 3.13``)."""
    return f"{SUPPORTED_MIN[0]}.{SUPPORTED_MIN[1]} to {SUPPORTED_MAX[0]}.{SUPPORTED_MAX[1]}"


def version_tuple(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return None
    return major, minor


def version_supported(version: str | None) -> bool:
    """False only for a version known to be outside :func:`supported_range` (unknown ones are tried)."""
    v = version_tuple(version)
    return v is None or SUPPORTED_MIN <= v <= SUPPORTED_MAX


def error_line(stderr: str) -> str:
    """The first ``Error: ...`` line py-spy printed, or its last non-empty line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Error:"):
            return ln[len("Error:") :].strip()
    useful = [ln for ln in lines if not ln.startswith("py-spy>")]
    return useful[-1] if useful else (lines[-1] if lines else "no output")


def dump(
    pid: int,
    *,
    locals_: bool = False,
    native: bool = False,
    subprocesses: bool = False,
    nonblocking: bool = False,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """One ``py-spy dump --json`` of every thread of ``pid``; :class:`PySpyFailure` if py-spy fails."""
    cmd = [binary(), "dump", "--json", "--pid", str(pid)]
    if locals_:
        cmd.append("--locals")
    if native:
        cmd.append("--native")
    if subprocesses:
        cmd.append("--subprocesses")
    if nonblocking:
        cmd.append("--nonblocking")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())
    except subprocess.TimeoutExpired:
        raise PySpyFailure(pid, f"Error: py-spy dump did not answer within {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise PySpyFailure(pid, proc.stderr, proc.returncode)
    try:
        data = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise PySpyFailure(pid, "Error: py-spy printed output that is not JSON", proc.returncode) from None
    return data if isinstance(data, list) else [data]
