"""`obskit quota` end to end on real cgroups (v1 here): real gunicorn, real throttling, a real OOM kill.

Each test creates its own cgroups (obskit-test-<random>) under the cpu, cpuacct and memory
hierarchies, starts its processes inside them (written to cgroup.procs before exec) and removes
everything afterwards.  Skips, with the reason, where cgroupfs is not writable.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Result, Target, run_obskit, terminate, wait_for_lines

from obskit.quota.collect import collect

CG = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "cpuacct", "memory")


class Cgroup:
    def __init__(self) -> None:
        self.name = f"obskit-test-{secrets.token_hex(4)}"
        self.dirs = [CG / c / self.name for c in CONTROLLERS]

    def create(self) -> None:
        for d in self.dirs:
            d.mkdir()

    def write(self, controller: str, name: str, value: int) -> None:
        (CG / controller / self.name / name).write_text(str(value))

    def enter(self) -> None:
        """preexec_fn: move the child into the cgroups before it execs."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                out |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
        return out

    def destroy(self) -> None:
        # Everything in these fresh cgroups was started by this test.
        deadline = time.monotonic() + 30
        while self.pids() and time.monotonic() < deadline:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _why_not_writable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    if not all((CG / c).is_dir() for c in CONTROLLERS):
        return "needs cgroup v1 cpu, cpuacct and memory hierarchies at /sys/fs/cgroup"
    probe = CG / "cpu" / f"obskit-probe-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        return f"cgroupfs is not writable here: {e}"
    return None


@pytest.fixture
def cgroup() -> Iterator[Cgroup]:
    reason = _why_not_writable()
    if reason:
        pytest.skip(reason)
    cg = Cgroup()
    cg.create()
    try:
        yield cg
    finally:
        cg.destroy()


@pytest.mark.slow
@pytest.mark.root
def test_gunicorn_with_too_many_workers_in_half_a_cpu(cgroup: Cgroup, tmp_path: Path) -> None:
    cgroup.write("cpu", "cpu.cfs_quota_us", 50_000)
    cgroup.write("memory", "memory.limit_in_bytes", 512 << 20)
    (tmp_path / "app.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "9", "-b", "127.0.0.1:0", "--chdir", str(tmp_path), "app:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=cgroup.enter,
        env={k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")})
    try:
        assert proc.stderr is not None
        wait_for_lines(proc.stderr, "Booting worker with pid", 9)
        res = run_obskit("quota", "--pid", str(proc.pid), "--window", "1", "--json", "--fail-on", "warn")
        assert res.exit_code == 3, res.stderr
        doc = json.loads(res.stdout)
        assert doc["schema"] == "obskit.quota/1"
        assert doc["cpu"]["limit"] == 0.5 and doc["memory"]["limit"] == 512 << 20
        g = next(s for s in doc["services"] if s["kind"] == "gunicorn")
        assert g["master_pid"] == proc.pid
        assert g["workers"] == {"value": 9, "source": "cmdline", "explanation": "--workers 9"}
        assert g["running_workers"] == 9 and g["worker_class"] == "sync" and g["preload"] is False
        assert g["recommended_by_cpu"] == 3 and g["recommended_workers"] == 3
        assert g["memory"]["worker_uss_median"] > 0 and g["memory"]["projected"] > g["memory"]["worker_uss_median"]
        ids = {f["id"]: f for f in doc["findings"]}
        assert ids[f"workers-gunicorn-{proc.pid}"]["severity"] == "warn"
        assert "2×ceil(0.5)+1 = 3" in ids[f"workers-gunicorn-{proc.pid}"]["formula"]
        assert ids["cpu-oversubscribed"]["title"] == "9 runnable workers×threads on 0.5 CPUs"
        assert any(r["setting"].startswith("--workers 3") for r in doc["recommendations"])
        assert doc["oom"]["visible_as_oomkilled"] is False  # v1, workers respawned by the master
        assert f"workers-gunicorn-{proc.pid}" in res.stderr
    finally:
        terminate(proc, 20)


@pytest.mark.slow
@pytest.mark.root
def test_busy_loop_in_a_fifth_of_a_cpu_is_throttled_more_and_more(cgroup: Cgroup) -> None:
    # 0.2 CPU as 2 ms per 10 ms period: even on a loaded machine the loop gets 2 ms in most periods.
    cgroup.write("cpu", "cpu.cfs_period_us", 10_000)
    cgroup.write("cpu", "cpu.cfs_quota_us", 2_000)
    proc = subprocess.Popen([sys.executable, "-u", "-c", "print('ready', flush=True)\nwhile True: pass"],
                            stdout=subprocess.PIPE, text=True, preexec_fn=cgroup.enter)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        first = collect(proc.pid, 1.0)
        second = collect(proc.pid, 1.0)
        for r in (first, second):
            assert r.cpu.limit == 0.2
            assert r.evidence.window is not None and r.evidence.window.throttled > 0
            assert r.evidence.throttle_ratio is not None and r.evidence.throttle_ratio > 0.3
            assert r.evidence.cpu_usage_cores is not None and r.evidence.cpu_usage_cores < 0.35  # the quota holds
            assert any(f.id == "cpu-throttled" for f in r.findings)
        assert first.evidence.lifetime is not None and second.evidence.lifetime is not None
        assert second.evidence.lifetime.throttled > first.evidence.lifetime.throttled
        assert second.evidence.lifetime.throttled_s > first.evidence.lifetime.throttled_s
        busy = next(p for p in second.processes if p.pid == proc.pid)
        assert busy.cpu_cores is not None and busy.cpu_cores > 0.05
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
@pytest.mark.root
def test_process_over_the_memory_limit_shows_as_an_oom_kill(cgroup: Cgroup) -> None:
    limit = 96 << 20
    cgroup.write("memory", "memory.limit_in_bytes", limit)
    memsw = CG / "memory" / cgroup.name / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        memsw.write_text(str(limit))
    sleeper = subprocess.Popen([sys.executable, "-u", "-c", "import time\nprint('ready', flush=True)\ntime.sleep(120)"],
                               stdout=subprocess.PIPE, text=True, preexec_fn=cgroup.enter)
    codes: list[int] = []

    def hog_during_window(_: float) -> None:
        hog = subprocess.Popen([sys.executable, "-c", "b = b'x' * (400 << 20)\nimport time\ntime.sleep(60)"],
                               preexec_fn=cgroup.enter)
        codes.append(hog.wait(60))

    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline().startswith("ready")
        r = collect(sleeper.pid, 1.0, sleep=hog_during_window)
        assert codes == [-signal.SIGKILL]
        assert r.memory.limit == limit
        assert r.evidence.memory_events_delta.get("oom_kill", 0) >= 1
        assert r.evidence.memory_events["oom_kill"] >= 1
        kills = next(f for f in r.findings if f.id == "oom-kills")
        assert kills.severity == "error" and "during the window" in kills.title
        assert sleeper.poll() is None  # the kernel picked the hog, not the small process
    finally:
        sleeper.kill()
        sleeper.wait(10)


# -- bad input (QA) --------------------------------------------------------------------------
def test_zombie_pid_is_target_exited_not_a_crash(
    zombie_pid: str, cli: Callable[..., Result]
) -> None:
    for as_json in ([], ["--json"]):
        r = cli("quota", "--pid", zombie_pid, "--window", "0", *as_json)
        assert r.exit_code == 8, r.stderr
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"obskit: error: process {zombie_pid} has exited")


def test_nan_window_is_a_usage_error(cli: Callable[..., Result]) -> None:
    r = cli("quota", "--window", "nan")
    assert r.exit_code == 2 and r.stderr.startswith("obskit: error: --window must be between 0 and 3600")


def test_multiline_command_stays_on_one_line(spawn_python: Callable[..., Target], cli: Callable[..., Result]) -> None:
    """`python -c` code has newlines; the report prints each command on one line."""
    target = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(120)\n")
    r = cli("quota", "--window", "0")
    assert r.exit_code == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if f"pid {target.pid}:" in ln)
    following = r.stdout.splitlines()[r.stdout.splitlines().index(line) + 1]
    assert "import time print('ready', flush=True) time.sleep(120)" in following
    assert not any(ln.startswith(("print(", "time.sleep")) for ln in r.stdout.splitlines())


# -- from a debug container: another cgroup namespace and mount namespace, the same PID namespace --------
DEBUG_MOUNTS = ("mount -t tmpfs tmpfs /sys/fs/cgroup && mkdir /sys/fs/cgroup/cpu /sys/fs/cgroup/memory"
                " && mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu"
                " && mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory && exec \"$@\"")


@pytest.mark.slow
@pytest.mark.root
def test_quota_from_a_debug_container_reports_the_targets_limits(cgroup: Cgroup) -> None:
    """As `kubectl debug --target`: obskit runs in its own cgroup namespace (rooted at a sibling
    cgroup with limits of its own) and mounts its own cgroup filesystem, so the target's cgroup reads
    ``/../…`` and is not under this /sys/fs/cgroup; the target's limits are still the ones reported."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) (util-linux)")
    target, debug = Cgroup(), Cgroup()
    target.name, debug.name = f"{cgroup.name}/target", f"{cgroup.name}/debug"
    target.dirs = [CG / c / target.name for c in CONTROLLERS]
    debug.dirs = [CG / c / debug.name for c in CONTROLLERS]
    target.create()
    debug.create()
    try:
        target.write("cpu", "cpu.cfs_quota_us", 30_000)
        target.write("memory", "memory.limit_in_bytes", 300 << 20)
        debug.write("cpu", "cpu.cfs_quota_us", 10_000)
        debug.write("memory", "memory.limit_in_bytes", 256 << 20)
        proc = subprocess.Popen([sys.executable, "-u", "-c", "import time\nprint('ready', flush=True)\ntime.sleep(120)"],
                                stdout=subprocess.PIPE, text=True, preexec_fn=target.enter)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        r = subprocess.run(
            ["unshare", "--cgroup", "--mount", "--propagation", "private", "sh", "-c", DEBUG_MOUNTS, "sh",
             sys.executable, "-m", "obskit", "quota", "--pid", str(proc.pid), "--window", "0", "--json"],
            capture_output=True, text=True, timeout=120, preexec_fn=debug.enter)
        proc.kill()
        proc.wait(10)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["cpu"]["limit"] == pytest.approx(0.3) and doc["memory"]["limit"] == 300 << 20
        assert doc["cpu"]["limiting_level"].startswith(f"/proc/{proc.pid}/root/sys/fs/cgroup/cpu/")
        assert doc["cpu"]["limiting_level"].endswith("/target")
    finally:
        target.destroy()
        debug.destroy()


@pytest.mark.slow
@pytest.mark.root
def test_explicit_workers_flag_is_reported_as_such(cgroup: Cgroup, tmp_path: Path) -> None:
    """`gunicorn -w 6` on a 2-CPU host: 6 = min(32, 2+4) by coincidence; the flag is what set it."""
    cgroup.write("cpu", "cpu.cfs_quota_us", 50_000)
    (tmp_path / "app.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "6", "-b", "127.0.0.1:0", "--chdir", str(tmp_path), "app:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=cgroup.enter,
        env={k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")})
    try:
        assert proc.stderr is not None
        wait_for_lines(proc.stderr, "Booting worker with pid", 6)
        res = run_obskit("quota", "--pid", str(proc.pid), "--window", "0", "--json")
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        g = next(s for s in doc["services"] if s["kind"] == "gunicorn")
        assert g["workers"] == {"value": 6, "source": "cmdline", "explanation": "--workers 6"}
        finding = next(f for f in doc["findings"] if f["id"] == f"workers-gunicorn-{proc.pid}")
        assert finding["detail"] == "--workers 6 on the command line"
        rec = next(r for r in doc["recommendations"] if r["id"] == f"workers-{proc.pid}")
        assert rec["reason"] == "now --workers 6 on the command line"
        assert "ThreadPoolExecutor" not in res.stdout and "min(32" not in res.stdout
        human = run_obskit("quota", "--pid", str(proc.pid), "--window", "0")
        assert human.exit_code == 0, human.stderr
        assert "workers: --workers 6 on the command line" in human.stdout
        assert "ThreadPoolExecutor" not in human.stdout
    finally:
        terminate(proc, 20)


def test_window_zero_shows_no_rate(spawn_python: Callable[..., Target], cli: Callable[..., Result]) -> None:
    """`--window 0` skips the window: no CPU rate (it would be CPU seconds over microseconds)."""
    target = spawn_python("print('ready', flush=True)\nx = 0\nwhile True:\n    x += 1\n")
    time.sleep(0.5)  # some CPU seconds to divide
    r = cli("quota", "--pid", str(target.pid), "--window", "0", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    ev = doc["evidence"]
    assert ev["window_s"] == 0 and ev["cpu_usage_cores"] is None and ev["window"] is None
    assert ev["throttle_ratio"] is None and ev["memory_events_delta"] == {}
    assert all(p["cpu_cores"] is None for p in doc["processes"])
    human = cli("quota", "--pid", str(target.pid), "--window", "0")
    assert human.exit_code == 0, human.stderr
    assert "window skipped" in human.stdout
    used = next(ln for ln in human.stdout.splitlines() if ln.strip().startswith("CPU used"))
    assert used.split()[2:] == ["-"], used
    timed = cli("quota", "--pid", str(target.pid), "--window", "0.3", "--json")
    busy = next(p for p in json.loads(timed.stdout)["processes"] if p["pid"] == target.pid)
    assert busy["cpu_cores"] is not None and 0 < busy["cpu_cores"] < 1.5  # one thread: at most a core, generously
