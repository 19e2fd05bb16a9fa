"""`obskit quota` service discovery on real processes: pools, thread pools, BLAS, gunicorn configs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Target, run_obskit, terminate, wait_for_lines

from obskit.quota.collect import collect

POOL = """
import concurrent.futures as cf, multiprocessing as mp, time
import numpy
ex = cf.ThreadPoolExecutor(max_workers=5)
for _ in range(5):
    ex.submit(time.sleep, 120)
pool = mp.get_context("spawn").Pool(2)
pool.map(abs, [1, 2])
print("ready", flush=True)
time.sleep(120)
"""


def test_spawn_pool_threads_and_openblas(spawn_python: Callable[..., Target], monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    t = spawn_python(POOL)
    r = collect(t.pid, 0.2)
    s = next(s for s in r.services if s.master_pid == t.pid)
    host = os.cpu_count() or 1
    assert s.kind == "pool" and s.running_workers == 2 and s.workers.value == 2
    if host == 2:
        assert s.workers.explanation.startswith("2 = os.cpu_count() where 2 is the host CPU count")
    assert s.native_threads is not None and s.native_threads.source == "default"
    assert "openblas" in s.native_threads.explanation
    master = next(p for p in r.processes if p.pid == t.pid)
    assert master.threads >= 6  # main + 5 pool threads (+ OpenBLAS)
    assert master.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    roles = {p.pid: p.role for p in r.processes if p.pid in s.worker_pids}
    assert set(roles.values()) == {"pool-worker"}
    assert master.uss and master.pss and master.oom_score is not None


def test_env_blas_setting_is_the_source(spawn_python: Callable[..., Target]) -> None:
    t = spawn_python("import numpy, time\nprint('ready', flush=True)\ntime.sleep(60)", env={"OMP_NUM_THREADS": "1"})
    r = collect(t.pid, 0)
    s = next(s for s in r.services if s.master_pid == t.pid)
    assert s.kind == "python"
    assert s.native_threads is not None and s.native_threads.source == "env"
    assert s.native_threads.explanation.startswith("OMP_NUM_THREADS=1")
    assert not any(f.id == f"blas-threads-{t.pid}" for f in r.findings)


def test_target_exiting_mid_window_still_reports(spawn_python: Callable[..., Target]) -> None:
    t = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)")

    def kill_target(_: float) -> None:
        t.proc.kill()
        t.proc.wait(10)

    r = collect(t.pid, 1.0, sleep=kill_target)
    assert any("exited during the window" in w for w in r.warnings)
    assert r.cpu.host_cpus >= 1


def test_ctrl_c_during_the_window_keeps_what_was_read(spawn_python: Callable[..., Target]) -> None:
    t = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)")

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    r = collect(t.pid, 5.0, sleep=interrupt)
    assert r.interrupted and r.evidence.window_s < 5
    assert any(p.pid == t.pid for p in r.processes)


@pytest.mark.slow
def test_gunicorn_config_two_cpu_plus_one_and_env_args(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def app(e, s):\n    s('200 OK', [])\n    return [b'ok']\n")
    (tmp_path / "gunicorn.conf.py").write_text(
        "import multiprocessing\nworkers = multiprocessing.cpu_count() * 2 + 1\nbind = '127.0.0.1:0'\n")
    env = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}
    env["GUNICORN_CMD_ARGS"] = "--threads 2 --max-requests 100"
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "app:app"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    host = os.cpu_count() or 1
    n = 2 * host + 1
    try:
        assert proc.stderr is not None
        wait_for_lines(proc.stderr, "Booting worker with pid", n)
        res = run_obskit("quota", "--pid", str(proc.pid), "--window", "0.5", "--json")
        assert res.exit_code == 0, res.stderr
        import json

        g = next(s for s in json.loads(res.stdout)["services"] if s["kind"] == "gunicorn")
        assert g["workers"]["value"] == n and g["workers"]["source"] == "config"
        assert f"{n} = 2×{host}+1 where {host} is the host CPU count" in g["workers"]["explanation"]
        assert "multiprocessing.cpu_count() * 2 + 1" in g["workers"]["explanation"]
        assert g["threads_per_worker"]["value"] == 2 and g["threads_per_worker"]["source"] == "env"
        assert g["worker_class"] == "gthread" and g["max_requests"] == 100
        assert g["running_workers"] == n
    finally:
        terminate(proc, 20)
