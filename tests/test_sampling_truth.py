"""Profiles that tell the truth on a busy machine: blocked threads are never CPU, -d is wall-clock.

CPU burners are started by the tests (three, beside the target, on this 2-core machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Target, needs_ptrace, run_obskit

from obskit import pyspy

# One spinning thread; seven threads blocked for good (a lock, socket reads, a long sleep).
MIXED = """
import socket, threading, time
lock = threading.Lock(); lock.acquire()
def spin_hot():
    x = 0
    while True:
        for i in range(10000):
            x += i
def lock_waiter():
    with lock:
        pass
def socket_reader(s):
    s.recv(1)
def long_sleeper():
    time.sleep(100000)
pairs = [socket.socketpair() for _ in range(2)]
ts = [threading.Thread(target=lock_waiter, daemon=True) for _ in range(3)]
ts += [threading.Thread(target=socket_reader, args=(a,), daemon=True) for a, _ in pairs]
ts += [threading.Thread(target=long_sleeper, daemon=True) for _ in range(2)]
for t in ts:
    t.start()
time.sleep(0.3)
print("ready", flush=True)
spin_hot()
"""
BLOCKED = ("lock_waiter", "socket_reader", "long_sleeper")


@pytest.fixture
def burners() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        time.sleep(0.5)
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)


def _shares_collapsed(path: Path) -> tuple[float, float]:
    """(spinner share, blocked share) of the samples in a py-spy raw file."""
    total = spin = blocked = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        if "spin_hot" in stack:
            spin += int(n)
        elif any(b in stack for b in BLOCKED):
            blocked += int(n)
    assert total > 0, "py-spy recorded nothing"
    return spin / total, blocked / total


def _shares_report(data: dict[str, object]) -> tuple[float, float]:
    funcs = {f["name"]: f["total_share"] for f in data["top_functions"]}  # type: ignore[attr-defined]
    return funcs.get("spin_hot", 0.0), sum(funcs.get(b, 0.0) for b in BLOCKED)


@needs_ptrace
@pytest.mark.slow
def test_blocked_threads_are_never_cpu_on_a_loaded_machine(
    spawn_python: Callable[..., Target], burners: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    t = spawn_python(MIXED)
    # py-spy --nonblocking alone first (never two samplers at once): the reference answer.
    raw = tmp_path / "ref.txt"
    ref = subprocess.Popen([pyspy.binary(), "record", "--nonblocking", "-r", "100", "-f", "raw", "--threads",
                            "--pid", str(t.pid), "-o", str(raw)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=pyspy.env())
    time.sleep(5)
    ref.send_signal(2)
    ref.wait(60)
    ref_spin, ref_blocked = _shares_collapsed(raw)
    assert ref_spin > 0.8, (ref_spin, ref_blocked)  # the reference itself is sane

    for args in ((), ("-s",)):
        r = run_obskit("profile", "record", "--pid", str(t.pid), "-d", "5", "-n", "50", *args, "--json",
                       "-o", str(tmp_path / "p.json"))
        assert r.exit_code == 0, r.stderr
        data = json.loads(r.stdout)
        spin, blocked = _shares_report(data)
        assert blocked <= 0.05, (args, spin, blocked, data["metadata"]["segments"])
        assert abs(spin - ref_spin) <= 0.05, (args, spin, ref_spin, data["metadata"]["segments"])


@needs_ptrace
@pytest.mark.slow
def test_top_does_not_count_blocked_threads(spawn_python: Callable[..., Target],
                                             burners: list[subprocess.Popen[bytes]]) -> None:
    t = spawn_python(MIXED)
    r = run_obskit("top", "--pid", str(t.pid), "--once", "-d", "4", "--json")
    assert r.exit_code == 0, r.stderr
    w = json.loads(r.stdout)
    funcs = {f["name"]: f["total_share"] for f in w["functions"]}
    assert sum(funcs.get(b, 0.0) for b in BLOCKED) <= 0.05, funcs


@needs_ptrace
@pytest.mark.slow
def test_duration_is_wall_clock_on_a_loaded_machine(spawn_python: Callable[..., Target],
                                                     burners: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    t = spawn_python(MIXED)
    t0 = time.monotonic()
    r = run_obskit("profile", "record", "--pid", str(t.pid), "-d", "3", "--json", "-o", str(tmp_path / "d.json"))
    wall = time.monotonic() - t0
    assert r.exit_code == 0, r.stderr
    m = json.loads(r.stdout)["metadata"]
    # The recording itself (calibration, every py-spy start and stop) within N + 1 s; the whole command,
    # interpreter start-up on a loaded machine included, within a generous bound.
    assert m["duration_s"] <= 3 + 1, m
    assert wall < 3 + 8, wall
    # Segments never overlap: each starts after the previous one ended.
    segs = m["segments"]
    for a, b in zip(segs, segs[1:]):
        assert b["start_offset_s"] >= a["start_offset_s"] + a["duration_s"] - 0.05, segs
