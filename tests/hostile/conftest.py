"""Fixtures of the hostile suite, and the counts it prints at the end of the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostile.hostile_lib import COUNTS, EVIL, FAILURES, ROOT, env

ORDER = ("inputs tried", "one-line-and-code answers", "internal errors", "hangs", "faults injected", "faults survived",
         "data lost")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    tr = terminalreporter
    tr.section("hostile suite counts")
    for key in ORDER:
        tr.write_line(f"{key:>26}: {COUNTS.get(key, 0)}")
    for line in FAILURES[:30]:
        tr.write_line(f"  ! {line}")


@pytest.fixture(scope="session")
def root_only() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (to act as another user)")


@pytest.fixture
def sticky_dir(root_only: None) -> Iterator[Path]:
    """A world-writable sticky directory like /tmp, where uid 65534 may plant things."""
    d = Path(tempfile.mkdtemp(prefix="obskit-hostile-"))
    os.chmod(d, 0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class EvilTarget:
    def __init__(self, proc: subprocess.Popen[bytes], agent_dir: Path) -> None:
        self.proc = proc
        self.agent_dir = agent_dir

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def env(self) -> dict[str, str]:
        return {"OBSKIT_AGENT_DIR": str(self.agent_dir)}


def _start_evil(agent_dir: Path) -> subprocess.Popen[bytes]:
    # exec keeps the PID: the target is the app started through `obskit run` (agent loaded).
    launcher = (
        "import os, sys\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'obskit', 'run', '-q', '--', sys.executable, '-u', *sys.argv[1:]])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, str(Path(__file__).parent / "evil_target.py"), f"--name={EVIL}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=env(OBSKIT_AGENT_DIR=str(agent_dir)), cwd=str(ROOT),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(b"ready"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"evil target did not start: {line!r}")
    return proc


@pytest.fixture(scope="module")
def evil_target() -> Iterator[EvilTarget]:
    """A Python service (agent loaded) whose function, file, thread names and argv are hostile."""
    agent_dir = Path(tempfile.mkdtemp(prefix="obskit-hostile-agent-"))
    proc = _start_evil(agent_dir)
    try:
        yield EvilTarget(proc, agent_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(agent_dir, ignore_errors=True)
