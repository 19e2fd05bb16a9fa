"""`obskit ps`: real processes (a gunicorn master with 3 workers, the demo, `sleep`) listed with roles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from conftest import Result, Target, obskit_process, terminate, wait_for_lines

APP = "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"


@pytest.fixture
def gunicorn_master(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    pytest.importorskip("gunicorn")
    (tmp_path / "app.py").write_text(APP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "3", "--bind", "127.0.0.1:0", "--chdir", str(tmp_path), "app:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        # Handshake: gunicorn logs one "Booting worker" line per worker.
        assert proc.stderr is not None
        wait_for_lines(proc.stderr, "Booting worker", 3, timeout=60)
        yield proc
    finally:
        terminate(proc, 15)


@pytest.mark.slow
def test_gunicorn_master_and_workers(gunicorn_master: subprocess.Popen[str], cli: Callable[..., Result]) -> None:
    master = gunicorn_master.pid
    r = cli("ps", "--json", "--pid", str(master), "--interval", "0.2")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "obskit.ps/1"
    by_pid = {p["pid"]: p for p in data["processes"]}
    assert by_pid[master]["role"] == "gunicorn-master" and by_pid[master]["depth"] == 0
    workers = [p for p in data["processes"] if p["ppid"] == master]
    assert len(workers) == 3
    assert {w["role"] for w in workers} == {"gunicorn-worker"}
    assert all(w["depth"] == 1 and w["python_version"] == f"{sys.version_info[0]}.{sys.version_info[1]}" for w in workers)
    assert sorted(by_pid[master]["children"]) == sorted(w["pid"] for w in workers)
    # the tree: master first, each worker right after it
    assert data["processes"][0]["pid"] == master
    human = cli("ps", "--pid", str(master), "--interval", "0")
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    assert lines[0].split()[:3] == ["PID", "ROLE", "PY"]
    assert any(ln.startswith(f"{master} ") and "gunicorn-master" in ln for ln in lines)
    assert sum("└─" in ln and "gunicorn-worker" in ln for ln in lines) == 3


def test_demo_listed_with_version_cpu_and_uptime(demo_target: Target, cli: Callable[..., Result]) -> None:
    r = cli("ps", "--json", "--interval", "0.3")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    entry = next(p for p in data["processes"] if p["pid"] == demo_target.pid)
    assert entry["python_version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert entry["threads"] >= 6  # main, request loop, 4 lock workers, leak
    assert entry["cpu_percent"] is not None and entry["cpu_percent"] > 5  # the hot request loop
    assert entry["rss_bytes"] > 1_000_000 and entry["uptime_s"] >= 0
    assert "obskit.demo" in entry["command"]
    assert os.getpid() not in {p["pid"] for p in data["processes"]}  # obskit does not list itself


def test_all_includes_non_python(cli: Callable[..., Result]) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        plain = json.loads(cli("ps", "--json", "--interval", "0").stdout)
        assert sleeper.pid not in {p["pid"] for p in plain["processes"]}
        everything = json.loads(cli("ps", "--json", "--all", "--interval", "0").stdout)
        entry = next(p for p in everything["processes"] if p["pid"] == sleeper.pid)
        assert entry["is_python"] is False and entry["cpu_percent"] is None
        r = cli("ps", "--pid", str(sleeper.pid))
        assert r.exit_code == 5 and "--all" in r.stderr
    finally:
        sleeper.kill()
        sleeper.wait()


def test_missing_pid_exit_4(cli: Callable[..., Result]) -> None:
    r = cli("ps", "--pid", "999999999")
    assert r.exit_code == 4
    assert r.stderr.count("\n") == 1


def test_captured_tree_without_psutil(tmp_path: Path, spawn_python: Callable[..., Target]) -> None:
    """A copied /proc tree: roles and versions without touching the live processes."""
    from obskit.ps import collect

    parent = spawn_python(
        "import multiprocessing as mp, sys, time\n"
        "def f():\n    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('spawn')\n"
        "    sys.modules['__mp_main__'] = sys.modules['__main__']\n"
        "    p = mp.Process(target=time.sleep, args=(60,)); p.start()\n"
        "    print('ready', flush=True); time.sleep(60)\n"
    )
    from obskit.proc import ProcFS

    fs = ProcFS()
    kids = fs.children_map().get(parent.pid, [])
    proc = tmp_path / "proc"
    for pid in [parent.pid, *kids]:
        d = proc / str(pid)
        d.mkdir(parents=True)
        for name in ("stat", "status", "cmdline", "maps", "cgroup"):
            (d / name).write_bytes((Path("/proc") / str(pid) / name).read_bytes())
    report = collect(interval=0.5, procfs=ProcFS(str(proc)))
    for k in kids:  # the spawn child would outlive the parent's SIGTERM by its sleep
        os.kill(k, 9)
    roles = {e.pid: e.role for e in report.processes}
    assert roles[parent.pid] == "plain"
    assert any(roles.get(k) == "mp-child" for k in kids)
    assert all(e.cpu_percent is None for e in report.processes)  # no live CPU readings on a captured tree


# -- bad input (QA) --------------------------------------------------------------------------
def test_zombie_pid_is_target_exited(zombie_pid: str, cli: Callable[..., Result]) -> None:
    r = cli("ps", "--pid", zombie_pid, "--json")
    assert r.exit_code == 8 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and f"process {zombie_pid} has exited (a zombie" in r.stderr


def test_nan_interval_is_a_usage_error(cli: Callable[..., Result]) -> None:
    r = cli("ps", "--interval", "nan")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--interval" in r.stderr


def test_ctrl_c_while_measuring_cpu_says_so() -> None:
    """Typer turns Ctrl-C into a silent exit 130; ps names what was interrupted."""
    import signal

    with obskit_process("ps", "--interval", "60", "--json") as proc:
        # Readiness: the only sleep of `ps` is the CPU interval.
        deadline = time.monotonic() + 60
        while "nanosleep" not in Path(f"/proc/{proc.pid}/wchan").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out == ""
    assert err == "obskit: error: interrupted while measuring CPU % (--interval 0 lists at once, without CPU %)\n"
