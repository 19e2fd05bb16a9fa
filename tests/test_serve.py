"""`obskit serve`: the scrape never blocks, labels and counters, listen errors, clean shutdown.

Prometheus itself scraping it: tests/test_serve_prometheus.py; profiles to a Pyroscope ingest
receiver: tests/test_serve_pyroscope.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Target, run_obskit, wait_for_lines

from obskit.proc import ProcFS
from obskit.serve.collect import Collector, ProcSample, Snapshot, service_from_cmdline
from obskit.serve.exposition import Renderer, parse_by
from obskit.serve.server import Loop, bind

pytest.importorskip("prometheus_client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, timeout: float = 5.0) -> tuple[str, float]:
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        body = r.read().decode()
    return body, time.monotonic() - t0


def try_scrape(port: int) -> str:
    """The body, or "" while the server is not listening yet."""
    try:
        return scrape(port)[0]
    except OSError:
        return ""


def value(body: str, name: str, **labels: str) -> float | None:
    """The value of the first series ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


@contextlib.contextmanager
def serve(*args: str, port: int | None = None) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`obskit serve` on a free loopback port; SIGTERM at the end (it must exit 0 by itself)."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "obskit", "serve", "--listen", f"127.0.0.1:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        wait_for_lines(proc.stderr, "serving metrics", 1, timeout=60)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(check: object, timeout: float = 60.0, step: float = 0.3) -> object:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()  # type: ignore[operator]
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"condition not met in {timeout:.0f}s (last: {last!r})")


# -- units on real pieces -------------------------------------------------------------------------


def test_service_names_from_command_lines() -> None:
    assert service_from_cmdline(["/usr/bin/python3", "-m", "gunicorn", "-w", "3", "-b", "127.0.0.1:8000", "app:app"]) == "app:app"
    assert service_from_cmdline(["/venv/bin/uvicorn", "--host", "0.0.0.0", "svc.main:api"]) == "svc.main:api"
    assert service_from_cmdline(["celery", "-A", "proj", "worker"]) == "proj"
    assert service_from_cmdline(["python3", "-u", "/srv/busy.py"]) == "busy"
    assert service_from_cmdline(["python3", "-c", "print(1)"]) == "python"
    assert service_from_cmdline(["python3", "/x/\x1b[31mevil\u202e.py"]) == "31mevil"  # target text made label-safe


def test_by_accepts_only_offered_labels() -> None:
    assert parse_by("role,service") == ("role", "service")
    assert parse_by("pid") == ("pid",)
    with pytest.raises(ValueError, match="--by"):
        parse_by("role,uid")


def _proc(pid: int, cpu: float, role: str = "gunicorn-worker") -> ProcSample:
    return ProcSample(pid=pid, ppid=1, role=role, service="app:app", container="", pod="", cgroup_key="",
                      cpu_seconds=cpu, rss_bytes=1 << 20, pss_bytes=None, uss_bytes=None, threads=1, fds=3)


def test_counters_stay_monotonic_through_worker_recycling_and_exited_series_go() -> None:
    r = Renderer(("role", "service"))
    cpu = "obskit_process_cpu_seconds_total"
    b1 = r.render(Snapshot(1.0, 0.0, procs=[_proc(10, 5.0), _proc(11, 7.0), _proc(1, 1.0, "gunicorn-master")])).decode()
    assert value(b1, cpu, role="gunicorn-worker") == 12.0
    assert value(b1, "obskit_processes", role="gunicorn-worker") == 2
    # Worker 11 recycled into 12: the group's counter keeps 11's CPU and adds 12's.
    b2 = r.render(Snapshot(2.0, 0.0, procs=[_proc(10, 6.0), _proc(12, 0.5), _proc(1, 1.0, "gunicorn-master")])).decode()
    assert value(b2, cpu, role="gunicorn-worker") == 13.5
    # Every worker gone: their series go, the master's stay.
    b3 = r.render(Snapshot(3.0, 0.0, procs=[_proc(1, 1.5, "gunicorn-master")])).decode()
    assert value(b3, cpu, role="gunicorn-worker") is None
    assert value(b3, cpu, role="gunicorn-master") == 1.5
    # --by pid: one series per process.
    rp = Renderer(("pid",))
    bp = rp.render(Snapshot(1.0, 0.0, procs=[_proc(10, 5.0), _proc(11, 7.0)])).decode()
    assert value(bp, cpu, pid="10") == 5.0 and value(bp, cpu, pid="11") == 7.0


def _capture(pid: int, root: Path) -> None:
    """A copy of the /proc files the collector reads for ``pid`` (a captured tree)."""
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "fd").mkdir()
    for name in ("stat", "status", "cmdline", "maps", "cgroup", "smaps_rollup", "environ"):
        (d / name).write_bytes(Path(f"/proc/{pid}/{name}").read_bytes())
    (root / "stat").write_bytes(Path("/proc/stat").read_bytes())


def test_scrape_answers_while_a_collection_is_stuck_and_the_age_rises(tmp_path: Path, spawn_python: object) -> None:
    target: Target = spawn_python("import time; print('ready', flush=True); time.sleep(300)")  # type: ignore[operator]
    root = tmp_path / "proc"
    _capture(target.pid, root)
    loop = Loop(Collector(ProcFS(root), agent=False).collect, Renderer(), 0.3)
    server = bind("127.0.0.1:0", loop)
    port = server.server_address[1]
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    loop.start()
    fifo = root / str(target.pid) / "smaps_rollup"
    try:
        body = wait_until(lambda: (b := scrape(port)[0]) and value(b, "obskit_processes") == 1 and b)
        assert value(str(body), "obskit_process_threads") == 1
        # The next collection hangs on a read that never returns (a FIFO nobody writes).
        fifo.unlink()
        os.mkfifo(fifo)
        time.sleep(1.0)
        ages, took = [], []
        for _ in range(4):
            b, t = scrape(port)
            took.append(t)
            ages.append(value(b, "obskit_serve_snapshot_age_seconds"))
            assert value(b, "obskit_processes") == 1  # the last snapshot is still served
            time.sleep(0.5)
        assert max(took) < 1.0, took
        assert ages == sorted(ages) and ages[-1] - ages[0] >= 1.0, ages
        skipped = value(scrape(port)[0], "obskit_serve_collections_skipped_total")
        assert skipped is not None and skipped >= 2
    finally:
        loop.stop()
        server.shutdown()
        server.server_close()
        with contextlib.suppress(OSError):  # let the stuck read finish
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)


# -- the command ------------------------------------------------------------------------------------


def test_address_in_use_is_one_line_and_the_usage_code() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_obskit("serve", "--listen", f"127.0.0.1:{port}", timeout=60)
    assert res.exit_code == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0], res.stderr


@pytest.mark.parametrize("args, needle", [
    (("--by", "uid"), "--by"),
    (("--listen", "nohost"), "HOST:PORT"),
    (("--interval", "10ms"), "--interval"),
    (("--all", "--pid", "1"), "exclude"),
])
def test_bad_options_are_usage_errors(args: tuple[str, ...], needle: str) -> None:
    res = run_obskit("serve", *args, timeout=60)
    assert res.exit_code == 2 and needle in res.stderr and "Traceback" not in res.stderr, res


def test_non_loopback_listen_warns_and_sigterm_exits_cleanly(spawn_python: object) -> None:
    target: Target = spawn_python("import time; print('ready', flush=True); time.sleep(300)")  # type: ignore[operator]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "obskit", "serve", "--listen", f"0.0.0.0:{port}", "--pid",
                             str(target.pid), "--interval", "500ms"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        body = wait_until(lambda: (b := try_scrape(port)) and value(b, "obskit_processes") is not None and b)
        assert value(str(body), "obskit_processes", role="plain", service="python") == 1
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "warning" in err and f"0.0.0.0:{port}" in err and "beyond loopback" in err
    assert "stopped:" in err


def test_help_stays_light() -> None:
    res = run_obskit("serve", "--help", timeout=60)
    assert res.exit_code == 0 and "--profile-to" in res.stdout


def test_spool_is_bounded_private_and_replays_oldest_first(tmp_path: Path) -> None:
    import gzip
    import stat

    from pyroscope_receiver import Receiver

    from obskit.serve.pyroscope import Push, Pusher

    down = Receiver().start()
    url = down.url
    down.stop()  # connection refused
    pusher = Pusher(url, tmp_path / "spool", max_files=3, timeout=2)
    for i in range(5):
        assert pusher.push(Push("svc", {"role": "plain"}, 1000.0 + 10 * i, 1005.0 + 10 * i, 100, gzip.compress(b"pprof"))) is False
    files = pusher.spooled_files()
    assert len(files) == 3 and pusher.stats.dropped == {"spool-full": 2}
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    up = Receiver(port=int(url.rsplit(":", 1)[1])).start()
    try:
        assert pusher.replay() == 3
        assert [r.start for r in up.received] == [1020, 1030, 1040]  # the two oldest were dropped
        assert not pusher.spooled_files()
    finally:
        up.stop()


def test_once_json_follows_a_wrapper_pid_to_the_python_below(tmp_path: Path) -> None:
    import json

    (tmp_path / "svc.py").write_text("import time\nprint('ready', flush=True)\ntime.sleep(300)\n")
    # `sh -c 'python ...; true'` keeps the shell as the parent (no exec): the PID given is not Python.
    wrapper = subprocess.Popen(["sh", "-c", f"{sys.executable} {tmp_path / 'svc.py'}; true"], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert wrapper.stdout is not None and wrapper.stdout.readline().startswith("ready")
        res = run_obskit("serve", "--pid", str(wrapper.pid), "--json", timeout=60)
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["schema"] == "obskit.serve.snapshot/1"
        [proc] = doc["procs"]
        assert proc["ppid"] == wrapper.pid and proc["service"] == "svc" and proc["role"] == "plain"
        assert proc["rss_bytes"] > 1 << 20 and proc["threads"] >= 1
        text = run_obskit("serve", "--pid", str(wrapper.pid), "--once", timeout=60)
        assert value(text.stdout, "obskit_processes", service="svc", role="plain") == 1
    finally:
        for child in Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)
        wrapper.kill()
        wrapper.wait()
