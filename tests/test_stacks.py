"""`obskit stacks`: the classifier on frame lists, and real processes with a thread in each state."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any, Callable

import pytest
from conftest import ROOT, Result, Target, needs_ptrace

from obskit.stacks.classify import FrameRef, ThreadState, classify
from obskit.stacks.dump import StackFrame, ThreadInfo, gil_findings, lock_findings, thread_count_findings, watch_summary

LIB = "/usr/lib/python3.11/"


def fr(name: str, filename: str, line: int = 1) -> FrameRef:
    return FrameRef(name, filename, line)


# -- the classifier, pure ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frames", "kwargs", "state", "rule"),
    [
        ([fr("busy", "/app/x.py")], {"active": True}, ThreadState.RUNNING, "py-spy:active"),
        ([fr("busy", "/app/x.py")], {"owns_gil": True}, ThreadState.RUNNING, "py-spy:owns_gil"),
        (
            [fr("Condition.wait", LIB + "threading.py"), fr("Queue.get", LIB + "queue.py"), fr("consume", "/app/x.py")],
            {},
            ThreadState.WAITING_LOCK,
            "frame:queue.py:get",
        ),
        (
            [fr("Condition.wait", LIB + "threading.py"), fr("Event.wait", LIB + "threading.py"), fr("f", "/app/x.py")],
            {},
            ThreadState.WAITING_LOCK,
            "frame:threading.py:Event.wait",
        ),
        # py-spy < 0.4 prints bare function names
        ([fr("wait", LIB + "threading.py"), fr("get", LIB + "queue.py")], {}, ThreadState.WAITING_LOCK, "frame:queue.py:get"),
        (
            [fr("_worker", LIB + "concurrent/futures/thread.py"), fr("Thread.run", LIB + "threading.py")],
            {},
            ThreadState.IDLE_POOL,
            "frame:concurrent/futures/thread.py:_worker",
        ),
        (
            [fr("EpollSelector.select", LIB + "selectors.py"), fr("BaseEventLoop._run_once", LIB + "asyncio/base_events.py"),
             fr("BaseEventLoop.run_forever", LIB + "asyncio/base_events.py")],
            {},
            ThreadState.IDLE_LOOP,
            "frame:asyncio/base_events.py:_run_once",
        ),
        # a handler blocking the event loop is not an idle loop
        (
            [fr("handler", "/app/x.py"), fr("Handle._run", LIB + "asyncio/events.py"),
             fr("BaseEventLoop._run_once", LIB + "asyncio/base_events.py")],
            {"source_line": "    time.sleep(5)"},
            ThreadState.SLEEPING,
            "line:sleep",
        ),
        ([fr("socket.accept", LIB + "socket.py"), fr("serve", "/app/x.py")], {}, ThreadState.BLOCKED_IO, "frame:socket.py:accept"),
        ([fr("SSLSocket.read", LIB + "ssl.py")], {}, ThreadState.BLOCKED_IO, "frame:ssl.py:read"),
        ([fr("Popen._try_wait", LIB + "subprocess.py"), fr("Popen.wait", LIB + "subprocess.py")], {},
         ThreadState.BLOCKED_IO, "frame:subprocess.py:_try_wait"),
        ([fr("PollSelector.select", LIB + "selectors.py"), fr("serve", "/app/x.py")], {}, ThreadState.BLOCKED_IO,
         "frame:selectors.py:select"),
        ([fr("f", "/app/x.py")], {"source_line": "        lock.acquire()"}, ThreadState.WAITING_LOCK, "line:acquire"),
        ([fr("f", "/app/x.py")], {"source_line": "    with inventory_lock:"}, ThreadState.WAITING_LOCK, "line:acquire"),
        ([fr("f", "/app/x.py")], {"source_line": "    data = conn.recv(4096)"}, ThreadState.BLOCKED_IO, "line:socket"),
        ([fr("f", "/app/x.py")], {"source_line": "    time.sleep(1)"}, ThreadState.SLEEPING, "line:sleep"),
        ([fr("f", "/app/x.py")], {"syscall": "futex"}, ThreadState.WAITING_LOCK, "syscall:futex"),
        ([fr("f", "/app/x.py")], {"syscall": "clock_nanosleep"}, ThreadState.SLEEPING, "syscall:clock_nanosleep"),
        ([fr("f", "/app/x.py")], {"syscall": "epoll_wait"}, ThreadState.BLOCKED_IO, "syscall:epoll_wait"),
        ([fr("f", "/app/x.py")], {"syscall": "running"}, ThreadState.RUNNING, "syscall:running"),
        # py-spy's runnable guess loses to a thread found blocked right after the dump
        ([fr("f", "/app/x.py")], {"active": True, "syscall": "futex"}, ThreadState.WAITING_LOCK, "syscall:futex"),
        ([fr("f", "/app/x.py")], {"active": True, "syscall": "running"}, ThreadState.RUNNING, "py-spy:active"),
        ([fr("Condition.wait", LIB + "threading.py"), fr("Event.wait", LIB + "threading.py")], {"active": True},
         ThreadState.WAITING_LOCK, "frame:threading.py:Event.wait"),
        ([fr("f", "/app/x.py")], {}, ThreadState.IDLE, "default:idle"),
    ],
)
def test_classifier_rules(frames: list[FrameRef], kwargs: dict[str, Any], state: ThreadState, rule: str) -> None:
    c = classify(frames, **kwargs)
    assert (c.state, c.rule) == (state, rule)
    assert c.detail


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("202 0x7f2c 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x7f2c", "futex"),
        ("23 0x0 0x0 0x0 0x0 0x7ffc9a 0x0 0x7ffc 0x7f11", "select_sleep"),  # time.sleep on Python < 3.11
        ("23 0x6 0x7ffc10 0x0 0x0 0x7ffc9a 0x0 0x7ffc 0x7f11", "select"),
        ("7 0x0 0x0 0x3e8 0x0 0x0 0x0 0x7ffc 0x7f11", "poll_sleep"),
        ("45 0x3 0x7f2c 0xa 0x0 0x0 0x0 0x7ffd 0x7f2c", "recvfrom"),
        ("running", "running"),
        ("999 0x0", "syscall 999"),
    ],
)
def test_thread_syscall_from_proc(tmp_path: Any, line: str, expected: str) -> None:
    from obskit.proc import ProcFS
    from obskit.stacks.dump import thread_syscall

    task = tmp_path / "10" / "task" / "11"
    task.mkdir(parents=True)
    (task / "syscall").write_text(line + "\n")
    assert thread_syscall(ProcFS(tmp_path), 10, 11, machine="x86_64") == expected
    assert classify([fr("f", "/app/x.py")], syscall="select_sleep").state is ThreadState.SLEEPING


def _thread(name: str, state: ThreadState, top: tuple[str, str, int], *, detail: str = "", gil: bool = False,
            rule: str = "line:acquire", tid: int = 0, pid: int = 10) -> ThreadInfo:
    f = StackFrame(top[0], top[1], top[1].rsplit("/", 1)[-1], top[2])
    outer = StackFrame("worker", "/app/w.py", "w.py", 5)
    return ThreadInfo(pid, tid or hash(name) & 0xFFFF, tid or hash(name) & 0xFFFF, name, state, rule,
                      detail or ("Lock.acquire: with lock:" if state is ThreadState.WAITING_LOCK else "x"),
                      gil, gil, [f, outer])


def test_same_lock_finding_names_the_probable_holder() -> None:
    site = ("worker", "/app/w.py", 9)
    threads = [_thread(f"pool-{i}", ThreadState.WAITING_LOCK, site, tid=i + 1) for i in range(3)]
    threads.append(_thread("pool-3", ThreadState.SLEEPING, ("slow_io", "/app/w.py", 20), rule="line:sleep", tid=9))
    threads.append(_thread("other", ThreadState.WAITING_LOCK, ("elsewhere", "/app/e.py", 3), tid=12))
    (finding,) = lock_findings(threads)
    assert finding.kind == "same_lock" and len(finding.threads) == 3
    assert "probably held by pool-3 (9), which is sleeping in slow_io (w.py:20)" in finding.message


def test_queue_waiters_are_not_a_shared_lock() -> None:
    site = ("Condition.wait", "/usr/lib/python3.11/threading.py", 327)
    threads = [_thread(f"q-{i}", ThreadState.WAITING_LOCK, site, detail="queue.Queue.get", rule="frame:queue.py:get", tid=i + 1)
               for i in range(4)]
    assert lock_findings(threads) == []


def test_gil_held_across_every_dump_is_a_warning() -> None:
    hog = _thread("hog", ThreadState.RUNNING, ("spin", "/app/s.py", 3), gil=True, tid=5)
    rest = _thread("w", ThreadState.WAITING_LOCK, ("worker", "/app/w.py", 9), tid=6)
    one = gil_findings([[hog, rest]])
    assert [f.severity for f in one] == ["info"]
    three = gil_findings([[hog, rest]] * 3)
    assert [f.severity for f in three] == ["warning"] and "all 3 dumps" in three[0].message
    moved = _thread("w", ThreadState.RUNNING, ("worker", "/app/w.py", 9), gil=True, tid=6)
    assert gil_findings([[hog, rest], [moved]]) == []


def test_too_many_threads() -> None:
    threads = [_thread(f"t{i}", ThreadState.IDLE_POOL, ("_worker", "/x/thread.py", 1), tid=i + 1) for i in range(200)]
    (finding,) = thread_count_findings(threads, cpus=2)
    assert "200 threads for 2 CPU(s)" in finding.message
    assert thread_count_findings(threads[:40], cpus=2) == []


def test_watch_summary_stuck_and_growth() -> None:
    stuck = _thread("stuck", ThreadState.WAITING_LOCK, ("worker", "/app/w.py", 9), tid=1)
    pool = _thread("pool", ThreadState.IDLE_POOL, ("_worker", "/x/thread.py", 1), rule="frame:x", tid=2)
    moving = [_thread("mover", ThreadState.RUNNING, ("f", "/app/m.py", n), rule="py-spy:active", tid=3) for n in (1, 2, 3)]
    extra = [_thread(f"new{i}", ThreadState.SLEEPING, ("s", "/app/s.py", 1), rule="line:sleep", tid=10 + i) for i in range(3)]
    dumps = [[stuck, pool, moving[0]], [stuck, pool, moving[1], extra[0]], [stuck, pool, moving[2], *extra]]
    summary, findings = watch_summary(dumps, [0.0, 1.0, 2.0], 1.0)
    assert [s.thread for s in summary.stuck] == ["stuck (1)"]
    assert summary.stuck[0].seconds == 2.0
    assert summary.thread_counts == {"10": [3, 4, 6]}
    kinds = {f.kind: f for f in findings}
    assert kinds["stuck"].severity == "warning"
    assert "grew from 3 to 6" in kinds["thread_growth"].message


def test_watch_counts_only_wakeups_between_dumps() -> None:
    waiter = _thread("waiter", ThreadState.WAITING_LOCK, ("worker", "/app/w.py", 9), tid=1)
    timed = _thread("timed", ThreadState.WAITING_LOCK, ("Condition.wait", "/x/threading.py", 331), tid=2)
    dumps = [[waiter, timed]] * 3
    # each dump adds 2 switches to every thread (ptrace stop + resume); "timed" also wakes between dumps
    switches = [({(10, 1): 1, (10, 2): 5}, {(10, 1): 3, (10, 2): 7}),
                ({(10, 1): 3, (10, 2): 9}, {(10, 1): 5, (10, 2): 11}),
                ({(10, 1): 5, (10, 2): 14}, {(10, 1): 7, (10, 2): 16})]
    summary, findings = watch_summary(dumps, [0.0, 1.0, 2.0], 1.0, switches)
    assert [(s.thread, s.wakeups) for s in summary.stuck] == [("waiter (1)", 0)]
    assert "never woke up" in findings[0].message


# -- real processes ---------------------------------------------------------------------------------
STATES_TARGET = r"""
import asyncio, queue, socket, threading, time
from concurrent.futures import ThreadPoolExecutor

held = threading.Lock(); held.acquire()
a, b = socket.socketpair()
q = queue.Queue(); ev = threading.Event()
marks = []

def mark():
    marks.append(threading.current_thread().name)

def lock_waiter():
    mark(); held.acquire()

def recv_io():
    mark(); a.recv(10)

def sleeper():
    mark(); time.sleep(1000)

def spin():
    mark(); x = 0
    while True:
        x += 1

def queue_get():
    mark(); q.get()

def event_wait():
    mark(); ev.wait()

def loop_thread():
    mark(); asyncio.new_event_loop().run_forever()

for fn in (lock_waiter, recv_io, sleeper, spin, queue_get, event_wait, loop_thread):
    threading.Thread(target=fn, name=fn.__name__, daemon=True).start()
shared = threading.Lock(); shared.acquire()
def same_wait():
    mark(); shared.acquire()
for i in range(3):
    threading.Thread(target=same_wait, name=f"same-{i}", daemon=True).start()
pool = ThreadPoolExecutor(2, thread_name_prefix="pool")
pool.submit(mark).result()
while len(marks) < 11:
    time.sleep(0.01)
time.sleep(0.3)  # let each thread reach its blocking call
print("ready", flush=True)
time.sleep(1000)
"""

EXPECTED = {
    "lock_waiter": "waiting_lock",
    "recv_io": "blocked_io",
    "sleeper": "sleeping",
    "spin": "running",
    "queue_get": "waiting_lock",
    "event_wait": "waiting_lock",
    "loop_thread": "idle_loop",
    "pool_0": "idle_pool",
    "MainThread": "sleeping",
}


def _states(data: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["state"] for p in data["processes"] for t in p["threads"]}


def _settled_states(cli: Callable[..., Result], pid: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The last of up to 4 --json dumps and its thread states, stopping once they are the EXPECTED ones."""
    got: dict[str, str] = {}
    data: dict[str, Any] = {}
    for _ in range(4):  # a loaded machine may catch a thread between its mark and its blocking call
        r = cli("stacks", "--pid", str(pid), "--json")
        assert r.exit_code == 0, r.stderr
        data = json.loads(r.stdout)
        got = _states(data)
        # Code from `-c` has no source lines, so the same-* waiters are told by their system call,
        # which a loaded machine may catch restarting (state R) right after the dump's ptrace stop.
        same_ok = all(v == "waiting_lock" for k, v in got.items() if k.startswith("same-"))
        if all(got.get(k) == v for k, v in EXPECTED.items()) and same_ok:
            break
    return data, got


@needs_ptrace
@pytest.mark.slow
def test_every_state_classified_in_a_real_process(spawn_python: Callable[..., Target], cli: Callable[..., Result]) -> None:
    target = spawn_python(STATES_TARGET)
    data, got = _settled_states(cli, target.pid)
    assert data["schema"] == "obskit.stacks/1"
    assert {k: got.get(k) for k in EXPECTED} == EXPECTED
    proc = data["processes"][0]
    assert proc["python_version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    same = [g for g in proc["groups"] if g["count"] == 3]
    assert same and same[0]["state"] == "waiting_lock" and sorted(same[0]["threads"])[0].startswith("same-")
    assert all(t["group"] for t in proc["threads"])
    kinds = {f["kind"] for f in data["findings"]}
    assert "same_lock" in kinds
    assert "asyncio" in kinds and "not available for Python 3." in data["asyncio_tasks"]

    for _ in range(4):
        human = cli("stacks", "--pid", str(target.pid))
        assert human.exit_code == 0
        if "3 threads: waiting on a lock" in human.stdout:
            break
    assert "3 threads: waiting on a lock" in human.stdout, human.stdout
    assert "blocked on I/O" in human.stdout and "idle in a thread pool" in human.stdout


GROWTH_TARGET = r"""
import threading, time
lock = threading.Lock(); lock.acquire()
def stuck():
    lock.acquire()
threading.Thread(target=stuck, name="stuck", daemon=True).start()
print("ready", flush=True)
n = 0
while True:
    threading.Thread(target=time.sleep, args=(1000,), name=f"leak-{n}", daemon=True).start()
    n += 1
    time.sleep(0.15)
"""


@needs_ptrace
@pytest.mark.slow
def test_watch_reports_stuck_thread_and_growth(spawn_python: Callable[..., Target], cli: Callable[..., Result]) -> None:
    target = spawn_python(GROWTH_TARGET)
    r = cli("stacks", "--pid", str(target.pid), "--watch", "3", "--interval", "0.6", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    watch = data["watch"]
    assert watch["dumps"] == 3
    counts = watch["thread_counts"][str(target.pid)]
    assert counts[-1] > counts[0]
    assert any(s["thread"].startswith("stuck") and s["state"] == "waiting_lock" for s in watch["stuck"])
    kinds = {f["kind"] for f in data["findings"]}
    assert {"stuck", "thread_growth"} <= kinds


def test_missing_pid_is_exit_4_one_line(cli: Callable[..., Result]) -> None:
    r = cli("stacks", "--pid", "999999999")
    assert r.exit_code == 4
    assert r.stderr.count("\n") == 1 and "obskit ps" in r.stderr


def test_pid_is_required(cli: Callable[..., Result]) -> None:
    r = cli("stacks")
    assert r.exit_code == 2 and "--pid" in r.stderr


def test_non_python_pid_is_exit_5() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        from conftest import run_obskit

        r = run_obskit("stacks", "--pid", str(sleeper.pid))
        assert r.exit_code == 5, r.stderr
        assert r.stderr.count("\n") == 1 and "not running Python" in r.stderr
    finally:
        sleeper.kill()
        sleeper.wait()


SETPRIV = shutil.which("setpriv")
SYSTEM_PY = "/usr/bin/python3"


def _nobody_python_ok() -> str | None:
    import os

    if os.geteuid() != 0:
        return "needs root to start a target as another user"
    if SETPRIV is None:
        return "setpriv not installed"
    if not os.access(SYSTEM_PY, os.X_OK):
        return f"{SYSTEM_PY} missing"
    return None


@needs_ptrace
@pytest.mark.skipif(_nobody_python_ok() is not None, reason=str(_nobody_python_ok()))
def test_target_of_another_user(spawn_python: Callable[..., Target], cli: Callable[..., Result]) -> None:
    assert SETPRIV is not None
    code = "import threading,time\nprint('ready', flush=True)\ntime.sleep(1000)\n"
    proc = subprocess.Popen([SETPRIV, "--reuid", "65534", "--regid", "65534", "--clear-groups", SYSTEM_PY, "-u", "-c", code],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        # root with CAP_SYS_PTRACE reads it
        r = cli("stacks", "--pid", str(proc.pid), "--json")
        assert r.exit_code == 0, r.stderr
        assert _states(json.loads(r.stdout))["MainThread"] == "sleeping"
        d = cli("doctor", "--pid", str(proc.pid), "--json")
        uid = next(c for c in json.loads(d.stdout)["checks"] if c["name"] == "uid")
        assert uid["status"] == "pass" and "uid 65534" in uid["message"]
        # obskit itself without privileges: the preflight names the cause (the CLI's deps live under /root)
        probe = (
            "import sys; sys.path.insert(0, sys.argv[1])\n"
            "from obskit.attach import preflight\nfrom obskit.errors import ObskitError\n"
            "try:\n    preflight(int(sys.argv[2]))\nexcept ObskitError as e:\n"
            "    print(e.one_line()); sys.exit(int(e.exit_code))\n"
        )
        other = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None and other.stdout.readline().startswith("ready")
            res = subprocess.run([SETPRIV, "--reuid", "65534", "--regid", "65534", "--clear-groups", SYSTEM_PY, "-c", probe,
                                  str(ROOT), str(other.pid)], capture_output=True, text=True, timeout=60)
        finally:
            other.kill()
            other.wait()
        assert res.returncode == 6, res.stdout + res.stderr
        assert "uid 0" in res.stdout and "CAP_SYS_PTRACE" in res.stdout
    finally:
        proc.kill()
        proc.wait()


WORKERS_TARGET = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
kids = [subprocess.Popen([sys.executable, "-c", "import time\nprint('up', flush=True)\ntime.sleep(600)"],
                         stdout=subprocess.PIPE, text=True) for _ in range(2)]
for k in kids:
    k.stdout.readline()
print("ready", flush=True)
try:
    time.sleep(600)
finally:
    for k in kids:
        k.kill()
"""


@needs_ptrace
@pytest.mark.slow
def test_subprocesses_dumps_every_worker(spawn_python: Callable[..., Target], cli: Callable[..., Result]) -> None:
    target = spawn_python(WORKERS_TARGET)
    procs: list[dict[str, Any]] = []
    for _ in range(4):  # a loaded machine may catch a child between its print and its sleep
        r = cli("stacks", "--pid", str(target.pid), "-s", "--json")
        assert r.exit_code == 0, r.stderr
        procs = json.loads(r.stdout)["processes"]
        if all(p["threads"][0]["state"] == "sleeping" for p in procs):
            break
    assert len(procs) == 3 and target.pid in {p["pid"] for p in procs}
    assert all(p["threads"][0]["state"] == "sleeping" for p in procs)
    human = cli("stacks", "--pid", str(target.pid), "-s")
    assert human.stdout.count("Process ") == 3


def _pyenv(version: str) -> str | None:
    import glob

    found = sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}"))
    return found[-1] if found else None


@needs_ptrace
@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.8", "3.13"])
def test_states_on_other_python_versions(version: str, spawn_python: Callable[..., Target],
                                         cli: Callable[..., Result]) -> None:
    exe = _pyenv(version)
    if exe is None:
        pytest.skip(f"no Python {version} under /root/.pyenv")
    target = spawn_python(STATES_TARGET, executable=exe)
    data, got = _settled_states(cli, target.pid)
    assert data["processes"][0]["python_version"] == version
    assert {k: got.get(k) for k in EXPECTED} == EXPECTED


LOCALS_TARGET = r"""
import time
def handler(order_id):
    retries = 3
    print("ready", flush=True)
    time.sleep(1000)
handler("A-1234")
"""


@needs_ptrace
def test_locals_are_carried(spawn_python: Callable[..., Target], cli: Callable[..., Result]) -> None:
    target = spawn_python(LOCALS_TARGET)
    r = cli("stacks", "--pid", str(target.pid), "--locals", "--json")
    assert r.exit_code == 0, r.stderr
    frame = json.loads(r.stdout)["processes"][0]["threads"][0]["frames"][0]
    assert frame["name"] == "handler"
    assert frame["locals"] == {"order_id": '"A-1234"', "retries": "3"}  # py-spy's repr of a str
    human = cli("stacks", "--pid", str(target.pid), "--locals")
    assert 'order_id = "A-1234"' in human.stdout


# -- bad input (QA) --------------------------------------------------------------------------
def test_zombie_pid_is_target_exited(zombie_pid: str, cli: Callable[..., Result]) -> None:
    from obskit.attach import preflight
    from obskit.errors import TargetExited

    with pytest.raises(TargetExited):
        preflight(int(zombie_pid))
    r = cli("stacks", "--pid", zombie_pid, "--json")
    assert r.exit_code == 8 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and f"process {zombie_pid} has exited (a zombie" in r.stderr


def test_nan_interval_is_a_usage_error(cli: Callable[..., Result]) -> None:
    r = cli("stacks", "--pid", "1", "--watch", "2", "--interval", "nan")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--interval" in r.stderr


# -- truthful lines: GIL on a lone thread, per-thread locals, a per-worker table -----------------------------
def test_gil_held_by_the_only_thread_is_not_starvation() -> None:
    hog = _thread("MainThread", ThreadState.RUNNING, ("spin", "/app/s.py", 3), gil=True, tid=5)
    (finding,) = gil_findings([[hog]] * 3)
    assert finding.severity == "info"
    assert "only Python thread" in finding.message and "cannot run Python" not in finding.message
    assert "0 other" not in finding.message


def _report(threads: list[ThreadInfo], pids: list[int], stuck: int | None = None) -> Any:
    from obskit.stacks.dump import ProcessStacks, StacksReport, StuckThread, WatchSummary, group_threads

    procs = []
    for pid in pids:
        ts = [t for t in threads if t.pid == pid]
        procs.append(ProcessStacks(pid, f"python3 worker.py --id {pid}", "3.11", len(ts), {}, ts, group_threads(ts)))
    watch = None
    if stuck is not None:
        watch = WatchSummary(3, 1.0, 2.0, {str(p): [1, 1, 1] for p in pids},
                             [StuckThread(stuck, "t", ThreadState.RUNNING, "spin (s.py:3)", 2.0, 3, None)])
    return StacksReport(pids[0], len(pids) > 1, True, 0.0, procs, [], None, watch)


def _text(renderable: Any, width: int = 120) -> str:
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False, color_system=None).print(renderable, crop=False)
    return buf.getvalue()


def test_locals_of_a_group_are_per_thread_when_they_differ() -> None:
    from obskit.stacks.render import render

    site = ("handle", "/app/h.py", 7)
    threads = [_thread(f"req-{i}", ThreadState.SLEEPING, site, tid=i + 1, rule="line:sleep") for i in range(3)]
    for i, t in enumerate(threads):
        t.frames[0].locals = {"order_id": f'"A-{i}"'}
    text = _text(render(_report(threads, [10])))
    assert "3 threads: sleeping" in text
    assert "locals differ between the 3 threads" in text
    assert all(f'order_id = "A-{i}"' in text for i in range(3))
    for t in threads:
        t.frames[0].locals = {"order_id": '"same"'}
    same = _text(render(_report(threads, [10])))
    assert same.count('order_id = "same"') == 1 and "differ" not in same


def test_worker_table_counts_hot_stuck_and_idle_per_worker() -> None:
    from obskit.stacks.render import render

    threads = [
        _thread("MainThread", ThreadState.SLEEPING, ("sleep", "/app/m.py", 1), tid=1, pid=10, rule="line:sleep"),
        _thread("MainThread", ThreadState.RUNNING, ("spin", "/app/s.py", 3), tid=2, pid=11, gil=True),
        _thread("pool", ThreadState.IDLE_POOL, ("_worker", "/x/thread.py", 1), tid=3, pid=11),
        _thread("MainThread", ThreadState.WAITING_LOCK, ("acquire", "/app/l.py", 4), tid=4, pid=12),
    ]
    text = _text(render(_report(threads, [10, 11, 12], stuck=11)))
    assert "Workers" in text
    rows = {int(ln.split()[0]): ln.split() for ln in text.splitlines() if ln.split() and ln.split()[0].isdigit()}
    # PID threads hot lock I/O idle stuck where
    assert rows[11][1:7] == ["2", "1", "0", "0", "1", "1"] and "spin" in " ".join(rows[11])
    assert rows[12][1:7] == ["1", "0", "1", "0", "0", "0"]
    assert rows[10][1:7] == ["1", "0", "0", "0", "1", "0"]


BUSY_WORKER_TARGET = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
codes = ["import time\nprint('up', flush=True)\ntime.sleep(600)",
         "print('up', flush=True)\nx = 0\nwhile True:\n    x += 1\n"]
kids = [subprocess.Popen([sys.executable, "-c", c], stdout=subprocess.PIPE, text=True) for c in codes]
for k in kids:
    k.stdout.readline()
print("ready", [k.pid for k in kids], flush=True)
try:
    time.sleep(600)
finally:
    for k in kids:
        k.kill()
"""


@needs_ptrace
@pytest.mark.slow
def test_subprocesses_summary_table_on_real_workers(spawn_python: Callable[..., Target],
                                                   cli: Callable[..., Result]) -> None:
    target = spawn_python(BUSY_WORKER_TARGET)
    sleeper, busy = (int(x) for x in target.ready_line.split("[", 1)[1].rstrip("]\n").split(","))
    rows: dict[int, list[str]] = {}
    for _ in range(4):  # the busy child may be caught off CPU on a loaded machine
        human = cli("stacks", "--pid", str(target.pid), "-s")
        assert human.exit_code == 0, human.stderr
        rows = {int(ln.split()[0]): ln.split() for ln in human.stdout.splitlines()
                if ln.split() and ln.split()[0].isdigit()}
        if busy in rows and rows[busy][2] == "1":
            break
    assert {target.pid, sleeper, busy} <= set(rows)
    assert rows[busy][2] == "1" and "<module>" in " ".join(rows[busy])  # hot, and where
    assert rows[sleeper][2] == "0" and rows[sleeper][5] == "1"  # idle (sleeping)
