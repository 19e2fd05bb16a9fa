"""Continuous profiles from `obskit serve` into a Pyroscope ingest receiver, read back independently.

The receiver (tests/pyroscope_receiver.py) insists on Pyroscope's documented ingest API
(multipart ``profile`` part for ``format=pprof``); each pushed pprof is read by `go tool pprof -raw`
and by the protobuf runtime against profile.proto.  Then the server goes down: pushes are
spooled (0700 directory, 0600 files) and replayed when it returns, nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import needs_ptrace, require_tool, terminate
from pyroscope_receiver import Receiver, function_samples, pprof_message
from test_serve import serve, try_scrape, value, wait_until

pytestmark = [pytest.mark.slow, needs_ptrace]

HOT = textwrap.dedent("""
    def hot_function_for_pyroscope():
        x = 0
        for i in range(100000):
            x += i * i
        return x

    print("ready", flush=True)
    while True:
        hot_function_for_pyroscope()
""")


def _target(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "hotsvc.py").write_text(HOT)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "hotsvc.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
    return proc


def _state(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2]


def test_profiles_reach_pyroscope_with_hot_function_labels_and_time_range(tmp_path: Path) -> None:
    go = require_tool("go")
    recv = Receiver().start()
    target = _target(tmp_path)
    try:
        t_begin = time.time()
        with serve("--pid", str(target.pid), "--interval", "1s", "--profile-to", recv.url, "--profile-interval", "4s",
                   "--profile-duration", "3s", "--max-cpu", "1", "--spool-dir", str(tmp_path / "spool")) as (proc, port):
            wait_until(lambda: len(recv.received) >= 2, timeout=150)
            body = try_scrape(port)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            assert proc.returncode == 0
        t_end = time.time()
        assert not recv.refused, recv.refused
        assert (value(body, "obskit_serve_profiles_pushed_total") or 0) >= 2
        assert _state(target.pid) in "RS", "the target was left stopped"
        for ing in recv.received:
            assert ing.app == "hotsvc" and ing.labels["role"] == "plain" and ing.spy_name == "pyspy"
            assert "pid" not in ing.labels  # pid only with --by pid
            assert t_begin - 1 <= ing.start < ing.until <= t_end + 1 and ing.until - ing.start <= 3 + 2
            prof = pprof_message(ing.pprof)
            # The profile's own time range lies within the pushed from/until (whole seconds around it).
            start_s = prof.time_nanos / 1e9
            assert ing.start <= start_s <= ing.until and start_s + prof.duration_nanos / 1e9 <= ing.until + 1e-3
            hot = function_samples(prof).get("hot_function_for_pyroscope", 0)
            total = sum(s.value[0] for s in prof.sample)
            assert total > 0 and hot >= 0.5 * total, (hot, total)
        path = tmp_path / "one.pb"
        path.write_bytes(recv.received[-1].pprof)
        raw = subprocess.run([go, "tool", "pprof", "-raw", str(path)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "HOME": str(tmp_path)})
        assert raw.returncode == 0, raw.stderr
        assert "hot_function_for_pyroscope" in raw.stdout and "Duration:" in raw.stdout
    finally:
        terminate(target)
        recv.stop()


def test_server_down_spools_then_replays_nothing_lost_nothing_twice(tmp_path: Path) -> None:
    recv = Receiver().start()
    port_url = recv.url
    recv.stop()  # down: connections are refused
    spool = tmp_path / "spool"
    target = _target(tmp_path)
    try:
        with serve("--pid", str(target.pid), "--interval", "1s", "--profile-to", port_url, "--profile-interval", "3s",
                   "--profile-duration", "2s", "--max-cpu", "1", "--spool-dir", str(spool)) as (proc, port):
            wait_until(lambda: len(list(spool.glob("*.push"))) >= 2, timeout=150)
            assert stat.S_IMODE(spool.stat().st_mode) == 0o700
            for f in spool.glob("*.push"):
                assert stat.S_IMODE(f.stat().st_mode) == 0o600
            recv.start()  # back on the same port
            wait_until(lambda: not list(spool.glob("*.push")) and len(recv.received) >= 3, timeout=150)
            # Nothing lost: every slice obskit counted as taken by the server (replays included) arrived.
            body = wait_until(lambda: (b := try_scrape(port)) and
                              value(b, "obskit_serve_profiles_pushed_total") == len(recv.received) and b, timeout=60)
            assert (value(str(body), "obskit_serve_profiles_spooled_total") or 0) >= 2
            assert value(str(body), "obskit_serve_profiles_dropped_total") is None
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            assert proc.returncode == 0
        spooled = len(recv.received)
        keys = [ing.key for ing in recv.received]
        assert len(set(keys)) == len(keys), "a profile arrived twice"
        assert not recv.refused
        assert not list(spool.glob("*.push")), "left in the spool"
        # Replayed oldest first, every slice its own window.
        starts = [ing.start for ing in recv.received]
        assert starts == sorted(starts)
        assert spooled >= 3
    finally:
        terminate(target)
        recv.stop()


def test_spool_dir_that_is_a_link_or_another_users_is_refused(tmp_path: Path) -> None:
    """The spool holds profiles obskit replays later: a planted link or a directory someone else
    made first is never used (the one private_dir of obskit.state)."""

    from obskit.errors import InputError
    from obskit.serve.pyroscope import Pusher

    real = tmp_path / "elsewhere"
    real.mkdir()
    link = tmp_path / "spool-link"
    link.symlink_to(real)
    with pytest.raises(InputError, match="not a directory owned by this user"):
        Pusher("http://127.0.0.1:9/", link)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(InputError, match="not a directory owned by this user"):
            Pusher("http://127.0.0.1:9/", theirs)
    mine = Pusher("http://127.0.0.1:9/", tmp_path / "a" / "spool").dir
    assert (os.stat(mine).st_mode & 0o777) == 0o700
