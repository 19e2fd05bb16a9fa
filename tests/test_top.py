"""`obskit top`: windows of sampled functions with process stats and real cgroup CPU throttling."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from conftest import Result, Target, needs_ptrace, run_obskit

from obskit import cgroups
from obskit.proc import ProcFS
from obskit.profile.live import TopSession
from obskit.profile.model import Frame, Profile

HAVE_SAMPLER = importlib.util.find_spec("obskit.profile.sampler") is not None
needs_sampler = pytest.mark.skipif(not HAVE_SAMPLER, reason="obskit.profile.sampler.LiveSampler is not available")
CPU_V1 = Path("/sys/fs/cgroup/cpu")


class FakeSampler:
    """Stands in for LiveSampler: a fixed stack per collect, so the window arithmetic is checked exactly."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.accounting = {"rate": 100, "mode": "test"}
        self.calls = 0

    def _profile(self) -> Profile:
        p = Profile()
        hot = [Frame("main", "/app/a.py", 1), Frame("handle", "/app/a.py", 5), Frame("checksum", "/app/a.py", 9)]
        p.add_stack(self.pid, 1, hot, 30)
        p.add_stack(self.pid, 1, hot[:2], 10)
        return p

    def start(self) -> None:
        self.calls = 0

    def collect(self) -> Profile:
        self.calls += 1
        return self._profile()

    def stop(self) -> Profile:
        return self._profile()


BUSY = "import os\nprint('ready', os.getpid(), flush=True)\nx = 0\nwhile True:\n    x += 1\n"


@pytest.fixture
def throttled_cgroup() -> Iterator[Path]:
    if os.geteuid() != 0 or not (CPU_V1 / "cpu.cfs_quota_us").exists() or not os.access(CPU_V1, os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 cpu controller at /sys/fs/cgroup/cpu")
    d = CPU_V1 / f"obskit-test-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        (d / "cpu.cfs_period_us").write_text("100000")
        (d / "cpu.cfs_quota_us").write_text("20000")  # 0.2 CPU
        yield d
    finally:
        for pid in (d / "cgroup.procs").read_text().split():
            _move_to_root(pid)
        d.rmdir()


def _move_to_root(pid: str) -> None:
    try:
        (CPU_V1 / "cgroup.procs").write_text(pid)
    except OSError:
        pass  # it exited meanwhile


@pytest.mark.slow
def test_window_pairs_functions_with_stats_and_throttling(spawn_python: Callable[..., Target], throttled_cgroup: Path) -> None:
    target = spawn_python(BUSY)
    (throttled_cgroup / "cgroup.procs").write_text(str(target.pid))
    quota = cgroups.for_pid(ProcFS(), target.pid).cpu_quota()
    assert quota is not None and quota.limit == pytest.approx(0.2)
    session = TopSession(target.pid, sampler=FakeSampler(target.pid))
    session.start()
    # Wait for enforcement periods to pass (100 ms each): read the kernel's counter, not the clock.
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stat = dict(line.split() for line in (throttled_cgroup / "cpu.stat").read_text().splitlines())
        if int(stat["nr_throttled"]) >= 5:
            break
        time.sleep(0.1)
    w = session.window()
    assert w.throttle is not None
    assert w.throttle.quota_cpus == pytest.approx(0.2)
    assert w.throttle.throttled_periods >= 5 and w.throttle.throttled_s > 0
    assert w.throttle.throttled_ratio is not None and w.throttle.throttled_ratio > 0.3
    assert w.cpu_percent is not None and w.cpu_percent < 60  # capped near 20 % of a core (loaded machine: generous)
    assert w.samples == 40
    top = w.functions[0]
    assert (top.name, top.self_samples, top.total_share) == ("checksum", 30, 0.75)
    assert w.processes[0].threads == 1 and w.processes[0].fds is not None and w.rss_bytes
    w2 = session.window()
    assert [f.self_samples for f in session.cumulative_functions()][:2] == [60, 20]
    assert w2.throttle is not None and w2.throttle.periods >= 0


def test_no_quota_is_said(spawn_python: Callable[..., Target]) -> None:
    target = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    session = TopSession(target.pid, sampler=FakeSampler(target.pid))
    session.start()
    w = session.stop()
    assert w.throttle is None and ("quota" in w.quota_note or "cgroup" in w.quota_note)
    target.stop()
    assert session.poll_exit()
    w2 = session.window()
    assert w2.target_exited and w2.processes[0].exited


def test_usage_and_missing_target(cli: Callable[..., Result]) -> None:
    assert cli("top").exit_code == 2
    r = cli("top", "--pid", str(os.getpid()), "--json")
    assert r.exit_code == 2 and "--once" in r.stderr
    gone = cli("top", "--pid", "999999999", "--once")
    assert gone.exit_code == 4 and gone.stderr.count("\n") == 1


@needs_ptrace
@needs_sampler
@pytest.mark.slow
def test_once_json_on_demo(demo_target: Target) -> None:
    r = run_obskit("top", "--pid", str(demo_target.pid), "--once", "-d", "2", "--json")
    assert r.exit_code == 0, r.stderr
    w = json.loads(r.stdout)
    assert w["schema"] == "obskit.top/1" and w["pid"] == demo_target.pid
    assert w["samples"] > 0
    names = [f["name"] for f in w["functions"]]
    assert "compute_checksum" in names[:5]
    assert w["processes"][0]["threads"] >= 6 and w["cpu_percent"] > 10
    assert w["duration_s"] >= 1.5


@needs_ptrace
@needs_sampler
@pytest.mark.slow
def test_live_view_without_tty_runs_for_duration(demo_target: Target) -> None:
    r = run_obskit("top", "--pid", str(demo_target.pid), "-d", "2.5")
    assert r.exit_code == 0, r.stderr
    assert "obskit top" in r.stdout and "%Own" in r.stdout and "compute_checksum" in r.stdout


def test_help_is_plain() -> None:
    r = run_obskit("top", "--help")
    assert r.exit_code == 0 and "--once" in r.stdout


# -- bad input (QA) --------------------------------------------------------------------------
def test_nan_duration_is_a_usage_error(cli: Callable[..., Result]) -> None:
    r = cli("top", "--pid", str(os.getpid()), "--once", "-d", "nan", "--json")
    assert r.exit_code == 2 and r.stdout == "" and "--duration" in r.stderr


@needs_ptrace
@needs_sampler
@pytest.mark.slow
def test_live_view_with_stdin_closed(spawn_python: Callable[..., Target]) -> None:
    """fd 0 closed (`obskit top <&-`) leaves sys.stdin None; the view still runs, its header on one line."""
    import subprocess
    import sys

    target = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(120)\n")
    r = subprocess.run([sys.executable, "-m", "obskit", "top", "--pid", str(target.pid), "-d", "1.5"],
                       capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.close(0),
                       env={**os.environ, "OBSKIT_WIDTH": "300"})
    assert r.returncode == 0, r.stderr
    assert "import time print('ready', flush=True) time.sleep(120)" in r.stdout.splitlines()[0]


# -- quota on a PARENT cgroup: top and quota agree --------------------------------------------------
@pytest.fixture
def parent_quota_cgroup() -> Iterator[tuple[Path, Path]]:
    """A v1 cpu cgroup with a 0.2-CPU quota and a child group without one (as a pod and its container)."""
    if os.geteuid() != 0 or not (CPU_V1 / "cpu.cfs_quota_us").exists() or not os.access(CPU_V1, os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 cpu controller at /sys/fs/cgroup/cpu")
    parent = CPU_V1 / f"obskit-test-parent-{uuid.uuid4().hex[:8]}"
    child = parent / "child"
    parent.mkdir()
    try:
        (parent / "cpu.cfs_period_us").write_text("100000")
        (parent / "cpu.cfs_quota_us").write_text("20000")  # 0.2 CPU on the parent only
        child.mkdir()
        yield parent, child
    finally:
        for d in (child, parent):
            if d.exists():
                for pid in (d / "cgroup.procs").read_text().split():
                    _move_to_root(pid)
                d.rmdir()


def test_throttling_is_read_where_the_parent_quota_binds(spawn_python: Callable[..., Target],
                                                         parent_quota_cgroup: tuple[Path, Path]) -> None:
    parent, child = parent_quota_cgroup
    target = spawn_python(BUSY)
    (child / "cgroup.procs").write_text(str(target.pid))
    located = cgroups.for_pid(ProcFS(), target.pid)
    h = located.get("cpu")
    assert h is not None and h.leaf == str(child)
    quota = located.cpu_quota()
    assert quota is not None and quota.limit == pytest.approx(0.2) and quota.level == str(parent)
    assert located.throttle_level() == str(parent)
    session = TopSession(target.pid, sampler=FakeSampler(target.pid))
    session.start()
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = cgroups.read_throttling(parent)
        if t is not None and t.throttled >= 5:
            break
        time.sleep(0.1)
    w = session.window()
    assert w.throttle is not None and w.throttle.cgroup_dir == str(parent)
    assert w.throttle.throttled_periods >= 5 and w.throttle.throttled_ratio is not None


@needs_ptrace
@needs_sampler
@pytest.mark.slow
def test_top_and_quota_agree_on_a_parent_quota(spawn_python: Callable[..., Target],
                                                parent_quota_cgroup: tuple[Path, Path]) -> None:
    """`obskit top` and `obskit quota`, run over the same window, report the same throttled share."""
    import subprocess
    import sys

    parent, child = parent_quota_cgroup
    target = spawn_python(BUSY)
    (child / "cgroup.procs").write_text(str(target.pid))
    cmd = [sys.executable, "-m", "obskit"]
    env = {**os.environ, "OBSKIT_WIDTH": "120"}
    top = subprocess.Popen([*cmd, "top", "--pid", str(target.pid), "--once", "-d", "4", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    quota = subprocess.Popen([*cmd, "quota", "--pid", str(target.pid), "--window", "4", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    top_out, top_err = top.communicate(timeout=120)
    quota_out, quota_err = quota.communicate(timeout=120)
    assert top.returncode == 0, top_err
    assert quota.returncode == 0, quota_err
    w, q = json.loads(top_out), json.loads(quota_out)
    assert q["cpu"]["limit"] == pytest.approx(0.2) and q["cpu"]["limiting_level"] == str(parent)
    assert w["throttle"] is not None, w["quota_note"]
    assert w["throttle"]["cgroup_dir"] == str(parent) and w["throttle"]["quota_cpus"] == pytest.approx(0.2)
    top_share, quota_share = w["throttle"]["throttled_ratio"], q["evidence"]["throttle_ratio"]
    assert top_share is not None and quota_share is not None
    assert quota_share > 0.3  # a busy loop on 0.2 CPU is throttled in most periods
    assert abs(top_share - quota_share) <= 0.10, (top_share, quota_share)
