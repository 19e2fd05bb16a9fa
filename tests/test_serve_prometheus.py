"""Prometheus itself scrapes `obskit serve` and is asked, through its HTTP API, what it stored.

A gunicorn with 3 workers, a busy process, and a busy process in a real cgroup v1 with a
0.5-CPU quota (created and removed by the test).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool, terminate
from test_quota_live import Cgroup, _why_not_writable
from test_serve import free_port, serve, wait_until

pytestmark = pytest.mark.slow

BUSY = textwrap.dedent("""
    import sys
    print("ready", flush=True)
    while True:
        sum(i * i for i in range(10000))
""")
APP = textwrap.dedent("""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
""")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    binary = require_tool("prometheus")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> int:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(textwrap.dedent(f"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: obskit
                static_configs:
                  - targets: ["127.0.0.1:{target_port}"]
        """))
        p = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        return port

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def query(port: int, q: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
    except OSError:
        return []
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def scalar(port: int, q: str) -> float | None:
    res = query(port, q)
    return float(res[0]["value"][1]) if res else None


def test_prometheus_stores_the_right_series(prometheus: callable, tmp_path: Path) -> None:  # type: ignore[valid-type]
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "busy.py").write_text(BUSY)
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "3", "-b", "127.0.0.1:0", "--chdir",
                                 str(tmp_path), "app:app"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    busy = subprocess.Popen([sys.executable, str(tmp_path / "busy.py")], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline().startswith("ready")
        with serve("--interval", "1s", "--pid", str(gunicorn.pid), "--pid", str(busy.pid)) as (_proc, port):
            prom = prometheus(port)
            sel = '{job="obskit",service="app:app"}'
            # 1 master + 3 workers = 4 processes, in two series (role is a label, pid is not by default).
            assert wait_until(lambda: scalar(prom, f"sum(obskit_processes{sel})") == 4, timeout=120)
            assert scalar(prom, 'obskit_processes{service="app:app",role="gunicorn-worker"}') == 3
            assert scalar(prom, 'obskit_processes{service="app:app",role="gunicorn-master"}') == 1
            assert not query(prom, "obskit_processes{pid!=\"\"}")  # no pid label unless --by pid
            assert scalar(prom, 'obskit_service_workers{service="app:app"}') == 3
            assert scalar(prom, 'obskit_service_workers_recommended{service="app:app"}') is not None
            rss = scalar(prom, 'obskit_process_resident_memory_bytes{service="app:app",role="gunicorn-worker"}')
            assert rss is not None and rss > 3 * 5e6
            # The busy process's CPU counter rises.
            c0 = wait_until(lambda: scalar(prom, 'obskit_process_cpu_seconds_total{service="busy"}'), timeout=60)
            c1 = wait_until(lambda: (v := scalar(prom, 'obskit_process_cpu_seconds_total{service="busy"}')) and
                            v > float(c0) + 0.5 and v, timeout=60)  # type: ignore[arg-type]
            assert float(c1) > float(c0)  # type: ignore[arg-type]
            assert scalar(prom, 'obskit_serve_snapshot_age_seconds{job="obskit"}') is not None
    finally:
        terminate(busy)
        gunicorn.terminate()
        gunicorn.wait(30)


def test_prometheus_sees_a_half_cpu_quota_and_rising_throttling(prometheus: callable, tmp_path: Path) -> None:  # type: ignore[valid-type]
    reason = _why_not_writable()
    if reason:
        pytest.skip(reason)
    cg = Cgroup()
    cg.create()
    try:
        # 0.5 CPU in 10 ms periods: on a loaded machine the group reaches its quota within some short
        # periods even when its average stays below half a core.
        cg.write("cpu", "cpu.cfs_period_us", 10000)
        cg.write("cpu", "cpu.cfs_quota_us", 5000)
        cg.write("memory", "memory.limit_in_bytes", 256 << 20)
        (tmp_path / "throttled.py").write_text(BUSY)
        proc = subprocess.Popen([sys.executable, str(tmp_path / "throttled.py")], stdout=subprocess.PIPE, text=True,
                                preexec_fn=cg.enter)
        # Burners beside it in the same cgroup: on a shared, loaded machine one process alone may
        # never get half a CPU, so the group would never reach its quota.
        (tmp_path / "burner.py").write_text(BUSY)
        burners = [subprocess.Popen([sys.executable, str(tmp_path / "burner.py")], stdout=subprocess.DEVNULL,
                                    preexec_fn=cg.enter) for _ in range(5)]
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
            with serve("--interval", "1s", "--pid", str(proc.pid)) as (_p, port):
                prom = prometheus(port)
                sel = '{service="throttled"}'
                assert wait_until(lambda: scalar(prom, f"obskit_cgroup_cpu_quota_cores{sel}") == 0.5, timeout=120)
                assert scalar(prom, f"obskit_cgroup_memory_limit_bytes{sel}") == 256 << 20
                headroom = scalar(prom, f"obskit_cgroup_memory_headroom_bytes{sel}")
                assert headroom is not None and 0 < headroom < 256 << 20
                name = f"obskit_cgroup_cpu_throttled_periods_total{sel}"
                t0 = wait_until(lambda: (v := scalar(prom, name)) is not None and (v,), timeout=60)[0]  # type: ignore[index]
                wait_until(lambda: (v := scalar(prom, name)) is not None and v > t0, timeout=90)
                assert (scalar(prom, f"obskit_cgroup_cpu_throttled_seconds_total{sel}") or 0) > 0
                assert scalar(prom, f"obskit_cgroup_oom_kills_total{sel}") == 0
        finally:
            for b in burners:
                b.kill()
                b.wait()
            terminate(proc)
    finally:
        cg.destroy()
