"""`obskit profile record/show/diff` and `obskit demo` against real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Target, needs_ptrace, run_obskit, terminate

from obskit.profile.model import Frame, Profile

HOT = """
import threading, time
def hot_function(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def idle_thread():
    while True:
        time.sleep(0.5)
threading.Thread(target=idle_thread, daemon=True).start()
print("ready", flush=True)
while True:
    hot_function(10000)
"""

HOT_SCRIPT = """
import sys, time
def script_hot(n):
    s = 0
    for i in range(n):
        s += i % 7
    return s
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    script_hot(20000)
print("script done")
"""


def _obskit_popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "obskit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "COLUMNS": "120", "OBSKIT_WIDTH": "120"})


def _wait_stderr(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> list[str]:
    """Read obskit's stderr (in a thread, so nothing is lost) until ``needle``: its 'recording process' line."""
    assert proc.stderr is not None
    lines: list[str] = []
    seen = threading.Event()

    def reader() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if needle in line:
                seen.set()

    threading.Thread(target=reader, daemon=True).start()
    if not seen.wait(timeout):
        raise AssertionError(f"{needle!r} not seen; stderr so far: {''.join(lines)[-2000:]}")
    return lines


@needs_ptrace
@pytest.mark.slow
def test_hot_function_leads_and_every_output_is_written(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python(HOT)
    outs = [tmp_path / n for n in ("p.html", "p.json", "p.collapsed", "p.speedscope.json")]
    args = ["profile", "record", "--pid", str(t.pid), "-d", "3", "--json"]
    for o in outs:
        args += ["-o", str(o)]
    r = run_obskit(*args)
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "obskit.profile-report/1"
    assert data["top_functions"][0]["name"] == "hot_function"
    assert data["top_functions"][0]["self_share"] > 0.5
    assert [o["format"] for o in data["outputs"]] == ["html", "json", "collapsed", "speedscope"]
    for o in outs:
        assert o.stat().st_size > 0, o
    m = data["metadata"]
    assert m["target_pid"] == t.pid and m["end_reason"] == "duration"
    assert m["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert m["sampler"].startswith("py-spy ") and m["obskit_version"] and m["host"]
    assert m["samples_attempted"] == m["samples_valid"] + m["samples_failed"] > 0
    assert m["start_time"] and m["duration_s"] > 2
    from obskit.profile.formats import load_profile

    saved = load_profile(str(tmp_path / "p.json"))
    assert saved.top_functions(1)[0].name == "hot_function"
    assert "hot_function" in (tmp_path / "p.collapsed").read_text()
    # The human view: a table with the hot function, and the accounting line.
    r2 = run_obskit("profile", "record", "--pid", str(t.pid), "-d", "1.5", "-o", str(tmp_path / "q.json"))
    assert r2.exit_code == 0, r2.stderr
    assert "hot_function" in r2.stdout and "attempted" in r2.stdout and "valid" in r2.stdout


@needs_ptrace
@pytest.mark.slow
def test_command_mode_records_until_the_command_exits(tmp_path: Path) -> None:
    script = tmp_path / "work.py"
    script.write_text(HOT_SCRIPT)
    out = tmp_path / "cmd.json"
    r = run_obskit("profile", "record", "-o", str(out), "--json", "--", sys.executable, str(script), "3")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["top_functions"][0]["name"] == "script_hot"
    assert data["metadata"]["end_reason"] == "target-exited"
    assert "script done" in r.stderr  # the command's stdout is kept off obskit's JSON
    assert out.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WSGI_APP = """
def burn(n):
    s = 0
    for i in range(n):
        s += i * i
    return s

def app(environ, start_response):
    burn(200000)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@needs_ptrace
@pytest.mark.slow
def test_gunicorn_master_and_three_workers_are_labelled(tmp_path: Path) -> None:
    """-s on the master: master and workers labelled; a worker killed mid-recording keeps its samples."""
    pytest.importorskip("gunicorn")
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    port = _free_port()
    g = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "3", "-b", f"127.0.0.1:{port}",
                          "--chdir", str(tmp_path), "wsgi_app:app"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    p = None
    try:
        assert g.stderr is not None
        workers: list[int] = []
        deadline = time.monotonic() + 60
        while len(workers) < 3 and time.monotonic() < deadline:
            line = g.stderr.readline()
            if not line:
                pytest.fail("gunicorn exited before its workers booted")
            if "Booting worker with pid:" in line:
                workers.append(int(line.rsplit(":", 1)[1]))

        def load() -> None:
            while not stop.is_set():
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
                except OSError:  # noqa: PERF203 - a worker restarting; keep the load going
                    time.sleep(0.05)

        threading.Thread(target=load, daemon=True).start()
        p = _obskit_popen("profile", "record", "--pid", str(g.pid), "-s", "--idle", "-d", "6", "--json",
                          "-o", str(tmp_path / "g.json"))
        err = _wait_stderr(p, "recording process")
        time.sleep(2.0)  # let every worker be sampled before one of them dies
        os.kill(workers[0], signal.SIGKILL)  # gunicorn respawns it
        p.wait(90)
        assert p.stdout is not None
        stdout = p.stdout.read()
        assert p.returncode == 0, "".join(err)
        data = json.loads(stdout)
        procs = {pr["pid"]: pr for pr in data["processes"]}
        assert procs[g.pid]["role"] == "gunicorn-master"
        for w in workers:
            assert procs[w]["role"] == "gunicorn-worker", procs
            assert procs[w]["samples"] > 0
        assert procs[workers[0]]["exited"] is True
        assert all(pr["cpu_share"] is not None for pr in data["processes"]), data["processes"]
        assert not procs[workers[1]]["exited"]
        assert any(f["name"] == "burn" for f in data["top_functions"])
        assert data["metadata"]["subprocesses"] is True
    finally:
        stop.set()
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        terminate(g, timeout=15)


def _sigint(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGINT)


def _interrupt_midway(action: Callable[[subprocess.Popen[str]], None], *args: str,
                      needle: str = "recording process") -> tuple[int, str, str]:
    """Start obskit, wait for ``needle`` on its stderr and 1.5 s of samples, ``action``: (exit code, stdout, stderr)."""
    p = _obskit_popen(*args)
    try:
        err = _wait_stderr(p, needle)
        time.sleep(1.5)  # let samples accumulate past the calibration window
        action(p)
        p.wait(60)
        assert p.stdout is not None
        return p.returncode, p.stdout.read(), "".join(err)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@needs_ptrace
@pytest.mark.slow
def test_target_killed_mid_recording_still_writes_outputs(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python(HOT)
    out_json, out_html = tmp_path / "k.json", tmp_path / "k.html"

    def kill_target(p: subprocess.Popen[str]) -> None:
        t.proc.kill()
        t.proc.wait(60)  # a traced process is reaped once py-spy lets go of it: slow on a loaded machine

    rc, stdout, stderr = _interrupt_midway(kill_target, "profile", "record", "--pid", str(t.pid), "-d", "120",
                                           "--json", "-o", str(out_json), "-o", str(out_html))
    assert rc == 0, stderr
    data = json.loads(stdout)
    assert data["metadata"]["end_reason"] == "target-exited"
    assert data["total_samples"] > 0
    assert out_json.stat().st_size > 0 and out_html.stat().st_size > 0
    assert data["processes"] == [] or data["processes"][0]["exited"]


@needs_ptrace
@pytest.mark.slow
def test_sigint_mid_recording_still_writes_outputs(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python(HOT)
    out = tmp_path / "i.json"
    rc, stdout, stderr = _interrupt_midway(_sigint, "profile", "record", "--pid", str(t.pid), "--json", "-o", str(out))
    assert rc == 0, stderr
    data = json.loads(stdout)
    assert data["metadata"]["end_reason"] == "interrupted"
    assert data["top_functions"][0]["name"] == "hot_function"
    assert out.stat().st_size > 0
    assert t.proc.poll() is None  # the target is left running


def test_missing_pid_fails_fast_with_one_line() -> None:
    r = run_obskit("profile", "record", "--pid", "999999999", "-d", "5", "-o", "/tmp/never.json")
    assert r.exit_code == 4
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("obskit: error: process 999999999 not found")
    assert not Path("/tmp/never.json").exists()


def test_non_python_pid_exits_5() -> None:
    sleeper = subprocess.Popen(["sleep", "100"])
    try:
        r = run_obskit("profile", "record", "--pid", str(sleeper.pid), "-d", "5", "-o", "/tmp/never.json")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert r.exit_code == 5, r.stderr
    assert "not running Python" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_command_that_is_not_python_exits_5() -> None:
    r = run_obskit("profile", "record", "-d", "5", "-o", "/tmp/never.json", "--", "sleep", "30")
    assert r.exit_code == 5, r.stderr
    assert "is not running Python" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    r = run_obskit("profile", "record", "-d", "1")
    assert r.exit_code == 2 and "--pid N or -- CMD" in r.stderr
    r = run_obskit("profile", "record", "--pid", "1", "-o", str(tmp_path / "x.unknown"))
    assert r.exit_code == 2 and "format" in r.stderr



@pytest.mark.parametrize("args", [
    ("profile", "record", "--pid", "1", "-d", "nan"),  # NaN passes click's range check: it recorded forever
    ("profile", "record", "--pid", "1", "--max-overhead", "nan"),
    ("demo", "-d", "nan"),
    ("mem", "--pid", "1", "--watch", "2s", "--interval", "nan"),
    ("mem", "--pid", "1", "--watch", "inf"),
    ("mem", "top", "--pid", "1", "--wait", "inf"),
    ("mem", "diff", "--pid", "1", "--interval", "nan"),
    ("gc", "--pid", "1", "-d", "nan"),
    ("gc", "--pid", "1", "-d", "inf"),
])
def test_nan_and_infinite_durations_are_usage_errors(cli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    r = cli(*args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith("obskit: error: ") and r.stderr.count("\n") == 1 and "finite" in r.stderr


def test_diff_output_in_a_missing_directory_is_a_usage_error(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    prof = tmp_path / "p.collapsed"
    prof.write_text("a;b 3\n")
    r = cli("profile", "diff", str(prof), str(prof), "-o", str(tmp_path / "no" / "diff.html"))
    assert r.exit_code == 2 and "does not exist" in r.stderr


@needs_ptrace
@pytest.mark.slow
def test_demo_ctrl_c_still_writes_the_flame_graph(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    rc, _, stderr = _interrupt_midway(_sigint, "demo", "-d", "60", "-o", str(out), needle="demo service running")
    assert rc == 0, stderr
    assert json.loads(out.read_text())["metadata"]["end_reason"] == "interrupted"

DEEP_BUSY = """
import sys
sys.setrecursionlimit(5000)
def deep(n):
    if n:
        return deep(n - 1)
    s = 0
    for i in range(3000):
        s += i
    return s
print("ready", flush=True)
while True:
    deep(500)
"""


@needs_ptrace
@pytest.mark.slow
def test_duration_is_wall_clock_on_a_loaded_target(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python(DEEP_BUSY)
    start = time.monotonic()
    r = run_obskit("profile", "record", "--pid", str(t.pid), "-d", "3", "--json", "-o", str(tmp_path / "l.json"))
    wall = time.monotonic() - start
    assert r.exit_code == 0, r.stderr
    m = json.loads(r.stdout)["metadata"]
    assert m["end_reason"] == "duration"
    assert 2.9 <= m["duration_s"] < 8, m["duration_s"]
    assert wall < 30  # start-up and writing included; py-spy's own -d would have run far longer


def _profile(hot: str, other: str, n_hot: int, n_other: int) -> Profile:
    p = Profile()
    main = Frame("main", "app.py", 1)
    p.add_stack(1, 1, [main, Frame(hot, "app.py", 10)], n_hot)
    p.add_stack(1, 1, [main, Frame(other, "app.py", 20)], n_other)
    return p


def test_show_and_diff_end_to_end(tmp_path: Path) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    _profile("parse", "render", 80, 20).save(base)
    _profile("parse", "render", 30, 70).save(new)
    r = run_obskit("profile", "show", str(base), "--json", "-o", str(tmp_path / "base.collapsed"))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["top_functions"][0]["name"] == "parse" and data["total_samples"] == 100
    assert "main (app.py:1);parse (app.py:10) 80" in (tmp_path / "base.collapsed").read_text()
    r = run_obskit("profile", "show", str(tmp_path / "base.collapsed"))
    assert r.exit_code == 0 and "parse" in r.stdout and "80.0%" in r.stdout
    r = run_obskit("profile", "diff", str(base), str(new), "-o", str(tmp_path / "diff.html"), "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    first = d["diff"]["functions"][0]
    assert {first["name"], d["diff"]["functions"][1]["name"]} == {"parse", "render"}
    assert abs(first["delta"]) == pytest.approx(0.5)
    assert (tmp_path / "diff.html").stat().st_size > 0
    r = run_obskit("profile", "diff", str(base), str(new))
    assert r.exit_code == 0 and "render" in r.stdout and "+50.0" in r.stdout
    r = run_obskit("profile", "show", str(tmp_path / "missing.json"))
    assert r.exit_code == 9 and r.stderr.startswith("obskit: error: no such file")


@needs_ptrace
@pytest.mark.slow
def test_demo_profiles_the_bundled_service(tmp_path: Path) -> None:
    r = run_obskit("demo", "-d", "2", "-o", str(tmp_path / "demo.html"), "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["top_functions"][0]["name"] == "compute_checksum"
    assert (tmp_path / "demo.html").stat().st_size > 0


@needs_ptrace
@pytest.mark.slow
def test_live_sampler_collect_is_incremental_and_stop_has_everything(spawn_python: Callable[..., Target]) -> None:
    from obskit.profile.sampler import LiveSampler, SamplerConfig

    t = spawn_python(HOT)
    s = LiveSampler(t.pid, SamplerConfig(segment_seconds=30))
    s.start()
    try:
        time.sleep(1.5)  # past the calibration window: the first collect switches to the chosen rate
        first = s.collect()
        time.sleep(1.0)
        second = s.collect()
    finally:
        total = s.stop()
    assert first.total_samples > 0 and second.total_samples > 0
    assert total.total_samples >= first.total_samples + second.total_samples
    assert total.top_functions(1)[0].name == "hot_function"
    acc = s.accounting
    assert acc.samples_attempted == acc.samples_valid + acc.samples_failed >= total.total_samples
    assert len(acc.segments) >= 3 and acc.segments[0].rate == 5.0
    # Shallow stacks: after the blocking calibration, nonblocking (exact about idle threads, no pause).
    assert total.metadata.samples_valid == acc.samples_valid and total.metadata.mode == "nonblocking"


def test_per_process_rows_make_a_hot_worker_stand_out() -> None:
    from obskit.profile.console import process_rows
    from obskit.profile.model import ProcessMeta

    p = Profile()
    p.metadata.duration_s = 10.0
    p.processes = [ProcessMeta(1, "gunicorn: master", "gunicorn-master", cpu_seconds=0.1)]
    for pid, cpu in ((2, 9.5), (3, 1.0), (4, 0.8)):
        p.processes.append(ProcessMeta(pid, "gunicorn: worker", "gunicorn-worker", cpu_seconds=cpu))
        p.add_stack(pid, pid, [Frame("handle", "app.py", 3)], int(cpu * 10) + 1)
    rows = process_rows(p)
    assert [r.pid for r in rows] == [2, 3, 4, 1]
    assert [r.hot for r in rows] == [True, False, False, False]
    assert rows[0].cpu_share == pytest.approx(0.95)


def test_mistyped_option_is_a_usage_error_not_a_command(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("profile", "record", "--no-such-option", "-o", "x.html")
    assert r.exit_code == 2
    assert "no such option: --no-such-option" in r.stderr


@needs_ptrace
@pytest.mark.slow
def test_demo_shows_the_lock_waiters_beside_the_gil_profile(tmp_path: Path) -> None:
    r = run_obskit("demo", "-d", "3", "-o", str(tmp_path / "demo.json"), "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "obskit.demo/1"
    # The waiters come from a stacks dump, not from the profile: the profile shows CPU only.
    waiters = [t for t in data["off_cpu"] if t["thread"].startswith("inventory-")]
    # Four workers take turns on one lock; at the dump's instant one may be between two turns (running).
    assert len(waiters) >= 3, data["off_cpu"]
    assert sum(t["state"] == "waiting_lock" for t in waiters) >= 2
    shares = {f["name"]: f["total_share"] for f in data["top_functions"]}
    assert shares.get("inventory_worker", 0.0) <= 0.05
    r = run_obskit("demo", "-d", "2", "-o", str(tmp_path / "demo.html"), env={**os.environ, "COLUMNS": "120"})
    assert r.exit_code == 0, r.stderr
    assert "Threads off CPU" in r.stdout and "waiting on a lock" in r.stdout
