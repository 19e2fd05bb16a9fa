"""Commands obskit starts never outlive it, and a recording ends on INT, TERM and HUP the same way."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_ptrace, needs_root, run_obskit

# The command obskit profiles: a Python loop with two grandchildren, one in its process group and
# one in a session of its own (which a process-group kill alone would miss).
FAMILY = """
import os, subprocess, sys, time
a = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
b = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.getpid()} {a.pid} {b.pid}")
x = 0
while True:
    x += 1
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@needs_ptrace
@pytest.mark.slow
def test_sigkilled_obskit_leaves_no_command_behind(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    script = tmp_path / "family.py"
    script.write_text(FAMILY)
    p = subprocess.Popen([sys.executable, "-m", "obskit", "profile", "record", "-o", str(tmp_path / "x.json"), "--",
                          sys.executable, str(script), str(pids_file)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    pids: list[int] = []
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not (pids_file.exists() and pids_file.read_text().count(" ") == 2):
            time.sleep(0.1)
        pids = [int(x) for x in pids_file.read_text().split()]
        time.sleep(1.5)  # recording
        assert all(_alive(x) for x in pids)
        p.kill()
        p.wait(10)
        left = _wait_gone(pids, 20)
        assert not left, f"still running after obskit was SIGKILLed: {left}"
    finally:
        for x in pids:
            with contextlib.suppress(OSError):
                os.kill(x, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
            p.wait()


def test_watchdog_released_kills_nothing_and_exits(tmp_path: Path) -> None:
    from obskit.child import _watchdogs, spawn_command, terminate

    child = spawn_command([sys.executable, "-c", "import time; time.sleep(600)"])
    dog = _watchdogs[child.pid]
    terminate(child)
    assert child.returncode is not None
    assert dog.proc.returncode is not None and child.pid not in _watchdogs


def test_watchdog_kills_the_group_when_its_pipe_closes() -> None:
    from obskit.child import Watchdog

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        dog = Watchdog(child.pid, child.pid, grace=1.0)
        time.sleep(0.5)  # the watchdog has read the child's start time
        assert dog.proc.stdin is not None
        dog.proc.stdin.close()  # what obskit dying does
        assert child.wait(15) is not None
        dog.proc.wait(15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _record_then(sig: int, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    own_tmp = tmp_path / "tmpdir"  # obskit's temporary directories go here, and must be gone at the end
    own_tmp.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "obskit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True, env={**os.environ, "TMPDIR": str(own_tmp)})
    try:
        assert p.stderr is not None
        seen = ""
        end = time.monotonic() + 60
        while time.monotonic() < end and "recording process" not in seen and "demo service running" not in seen:
            line = p.stderr.readline()
            if not line:
                break
            seen += line
        time.sleep(2.0)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not list(own_tmp.iterdir()), "temporary directory left behind"
    return p.returncode, out, seen + err


@needs_ptrace
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_term_and_hup_end_a_recording_like_ctrl_c(sig: int, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    script = tmp_path / "spin.py"
    script.write_text("x = 0\nwhile True:\n    x += 1\n")
    rc, stdout, stderr = _record_then(sig, tmp_path, "profile", "record", "--json", "-o", str(out), "--",
                                      sys.executable, str(script))
    assert rc == 0, stderr
    data = json.loads(stdout)
    assert data["metadata"]["end_reason"] == "interrupted" and data["total_samples"] > 0
    assert json.loads(out.read_text())["metadata"]["end_reason"] == "interrupted"


@needs_ptrace
@pytest.mark.slow
def test_sighup_ends_the_demo_with_its_flame_graph(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    rc, _, stderr = _record_then(signal.SIGHUP, tmp_path, "demo", "-d", "60", "-o", str(out))
    assert rc == 0, stderr
    assert json.loads(out.read_text())["metadata"]["end_reason"] == "interrupted"


@needs_root
@pytest.mark.parametrize("command", ["profile", "demo"])
def test_bad_outputs_fail_before_recording(command: str, tmp_path: Path) -> None:
    (tmp_path / "d.json").mkdir()
    cases = {
        str(tmp_path / "missing" / "p.json"): 2,  # a missing directory: usage
        str(tmp_path / "d.json"): 9,  # a directory given as the file
    }
    for path, code in cases.items():
        args = (["profile", "record", "-d", "30", "-o", path, "--", sys.executable, "-c", "while True: pass"]
                if command == "profile" else ["demo", "-d", "30", "-o", path])
        t0 = time.monotonic()
        r = run_obskit(*args, timeout=60)
        assert r.exit_code == code, (path, r.exit_code, r.stderr)
        assert time.monotonic() - t0 < 20, "recorded before failing"
        assert "recording process" not in r.stderr and "demo service running" not in r.stderr


def test_read_only_directory_fails_before_recording(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    # As root a mode-0555 directory is still writable: a read-only bind mount is what root cannot write.
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True)
    if r.returncode != 0:
        r = subprocess.run(["sh", "-c", f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro}"],
                           capture_output=True)
    if r.returncode != 0 and os.geteuid() == 0:
        pytest.skip(f"cannot make a read-only bind mount: {r.stderr.decode().strip()}")
    if os.geteuid() != 0:
        ro.chmod(0o555)
    try:
        t0 = time.monotonic()
        res = run_obskit("profile", "record", "-d", "30", "-o", str(ro / "p.json"), "--", sys.executable, "-c",
                         "while True: pass", timeout=60)
        assert res.exit_code == 9, res.stderr
        assert "recording process" not in res.stderr and time.monotonic() - t0 < 20
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], capture_output=True)
        else:
            ro.chmod(0o755)


@needs_ptrace
@pytest.mark.slow
def test_output_lost_at_the_end_is_kept_and_the_table_printed(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    state = tmp_path / "state"
    script = tmp_path / "spin.py"
    script.write_text("def hot_spin():\n    x = 0\n    while True:\n        x += 1\nhot_spin()\n")
    p = subprocess.Popen([sys.executable, "-m", "obskit", "profile", "record", "-d", "4", "-o", str(gone / "p.json"),
                          "--", sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True,
                         env={**os.environ, "XDG_STATE_HOME": str(state), "COLUMNS": "120"})
    try:
        assert p.stderr is not None
        end = time.monotonic() + 60
        while time.monotonic() < end and "recording process" not in p.stderr.readline():
            pass
        gone.rmdir()  # the directory disappears while recording
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 11, err
    assert "hot_spin" in out  # the table is printed whatever happened to the file
    kept = list((state / "obskit" / "kept").iterdir())
    assert len(kept) == 1 and str(kept[0]) in err
    assert json.loads(kept[0].read_text())["metadata"]["end_reason"] == "duration"


def test_watchdog_without_a_group_finds_descendants_through_their_parents(tmp_path: Path) -> None:
    from obskit.child import _watchdogs, spawn_command

    pids_file = tmp_path / "pids"
    code = ("import subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
            f"open({str(pids_file)!r}, 'w').write(str(g.pid))\n"
            "time.sleep(600)\n")
    child = spawn_command([sys.executable, "-c", code], own_group=False)
    grandchild = 0
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not (pids_file.exists() and pids_file.read_text()):
            time.sleep(0.05)
        grandchild = int(pids_file.read_text())
        assert os.getpgid(child.pid) == os.getpgid(0)  # still in the terminal's (here: pytest's) group
        dog = _watchdogs.pop(child.pid)
        assert dog.proc.stdin is not None
        dog.proc.stdin.close()  # obskit "dies"
        assert child.wait(15) is not None
        assert not _wait_gone([grandchild], 15)
        dog.proc.wait(15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if grandchild:
            with contextlib.suppress(OSError):
                os.kill(grandchild, signal.SIGKILL)


def test_segment_files_of_a_killed_recording_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL leaves no chance to clean up: the next recording removes directories whose obskit is gone."""
    import tempfile

    from obskit.profile.sampler import _remove_orphaned_segment_dirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"obskit-profile-{dead.pid}-abc"
    running = tmp_path / f"obskit-profile-{os.getpid()}-def"
    other = tmp_path / "obskit-profile-notapid"
    for d in (orphan, running, other):
        d.mkdir()
        (d / "segment-1.txt").write_text("x")
    _remove_orphaned_segment_dirs()
    assert not orphan.exists() and running.exists() and other.exists()
