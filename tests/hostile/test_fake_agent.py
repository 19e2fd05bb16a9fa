"""Item 4: whatever listens at a target's agent path is not trusted.

A process of another user (uid 65534) answering in the agent's place is refused before a
byte is read (SO_PEERCRED, exit 6).  A listener of the target's own user that sends what no
agent sends (400 MiB, malformed or nested JSON, wrong types, NaN, escapes, a slow drip) gets
one line and exit 10, within the memory and time bounds, and no escape reaches the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostile.conftest import EvilTarget
from hostile.hostile_lib import NOBODY, fault, raw_controls, run

FAKE = str(Path(__file__).parent / "fake_agent.py")
MEMORY = 512 * 1024 * 1024

# Every command that talks to the agent, with the flags that keep it short.
AGENT_COMMANDS = {
    "gc": ["gc", "--pid", "{pid}"],
    "gc -d": ["gc", "--pid", "{pid}", "-d", "0.5"],
    "gc --trace": ["gc", "--pid", "{pid}", "--trace", "-d", "1"],
    "mem top": ["mem", "top", "--pid", "{pid}", "--wait", "0"],
    "mem diff": ["mem", "diff", "--pid", "{pid}", "--interval", "0.2"],
}
BAD_REPLIES = ["big", "notjson", "array", "nested", "hugeint", "nan", "wrongtypes", "missing", "error_escape", "longstr",
               "slow"]


class Planted:
    def __init__(self, target: subprocess.Popen[bytes], agent_dir: Path) -> None:
        self.target = target
        self.agent_dir = agent_dir
        self.fake: subprocess.Popen[bytes] | None = None

    def plant(self, mode: str, user: int | None) -> None:
        self.stop_fake()
        sock = self.agent_dir / f"{self.target.pid}.sock"
        if sock.exists():
            sock.unlink()
        cmd = [sys.executable, FAKE, str(sock), mode]
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        self.fake = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.fake.stdout is not None and self.fake.stdout.readline().startswith(b"ready")

    def stop_fake(self) -> None:
        if self.fake is not None:
            self.fake.kill()
            self.fake.wait()
            self.fake = None


@pytest.fixture
def planted(root_only: None) -> Iterator[Planted]:
    """A plain Python target (no agent) whose agent directory is world-writable, like a shared /tmp."""
    agent_dir = Path(tempfile.mkdtemp(prefix="obskit-hostile-fake-"))
    os.chmod(agent_dir, 0o1777)
    target = subprocess.Popen([sys.executable, "-c", "import time\nprint('ready', flush=True)\ntime.sleep(600)"],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              env={**os.environ, "OBSKIT_AGENT_DIR": str(agent_dir)})
    assert target.stdout is not None and target.stdout.readline().startswith(b"ready")
    p = Planted(target, agent_dir)
    try:
        yield p
    finally:
        p.stop_fake()
        target.kill()
        target.wait()
        shutil.rmtree(agent_dir, ignore_errors=True)


def _args(name: str, pid: int) -> list[str]:
    return [a.format(pid=pid) for a in AGENT_COMMANDS[name]]


@pytest.mark.parametrize("name", list(AGENT_COMMANDS))
def test_agent_of_another_user_is_refused(name: str, planted: Planted) -> None:
    planted.plant("big", user=NOBODY)
    started = time.monotonic()
    a = run(*_args(name, planted.target.pid), extra_env={"OBSKIT_AGENT_DIR": str(planted.agent_dir)}, memory=MEMORY,
            timeout=60)
    fault(a.exit_code == 6, f"{name}: fake agent of uid {NOBODY}")
    assert a.exit_code == 6, a.describe()
    assert len(a.error_lines) == 1 and f"uid {NOBODY}" in a.error_lines[0], a.describe()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("mode", BAD_REPLIES)
@pytest.mark.parametrize("name", ["gc", "gc --trace", "mem top"])
def test_bad_replies_are_one_line(name: str, mode: str, planted: Planted) -> None:
    planted.plant(mode, user=None)  # the target's own user: passes the peer check
    a = run(*_args(name, planted.target.pid), extra_env={"OBSKIT_AGENT_DIR": str(planted.agent_dir)}, memory=MEMORY,
            timeout=60)
    ok = a.exit_code == 10 and len(a.error_lines) == 1 and not raw_controls(a.stdout + a.stderr)
    fault(ok, f"{name}: agent reply {mode}")
    assert a.exit_code == 10, a.describe()
    assert len(a.error_lines) == 1, a.describe()
    assert not raw_controls(a.stdout + a.stderr), a.describe()


@pytest.mark.parametrize("name", list(AGENT_COMMANDS))
def test_escapes_in_well_formed_replies_are_inert(name: str, planted: Planted) -> None:
    planted.plant("escapes", user=None)
    a = run(*_args(name, planted.target.pid), extra_env={"OBSKIT_AGENT_DIR": str(planted.agent_dir)}, timeout=60)
    fault(not raw_controls(a.stdout + a.stderr), f"{name}: escapes in agent replies")
    assert a.exit_code == 0, a.describe()
    assert not raw_controls(a.stdout + a.stderr), a.describe()


@pytest.mark.parametrize("name", ["gc", "mem top"])
def test_agent_socket_obskit_may_not_open_is_exit_6(name: str, evil_target: EvilTarget) -> None:
    """obskit as uid 65534 against root's target: its agent socket is in a 0700 root directory."""
    a = run(*_args(name, evil_target.pid), extra_env=evil_target.env, user=NOBODY, timeout=60)
    fault(a.exit_code == 6, f"{name}: agent socket not ours")
    assert a.exit_code == 6, a.describe()
    assert len(a.error_lines) == 1, a.describe()
