"""`--inject` / `gc --detach`: the agent loaded into real processes started without obskit (gdb path)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Target, _wait_ready, require_tool, run_obskit, terminate

from obskit.errors import ExitCode

pytestmark = pytest.mark.usefixtures("gdb")

PYENV = Path("/root/.pyenv/versions")


@pytest.fixture
def gdb() -> str:
    return require_tool("gdb")


@pytest.fixture
def agent_env(tmp_path: Path) -> dict[str, str]:
    return {"OBSKIT_AGENT_DIR": str(tmp_path / "agent")}


# Cycles of objects in a loop: gen 0 and gen 1 collect every few milliseconds.
GC_LOOP = r"""
import time
class Node:
    def __init__(self):
        self.me = self
print("ready", flush=True)
while True:
    junk = [Node() for _ in range(500)]
    time.sleep(0.002)
"""

LEAKY = r"""
import time
cache = []
def handle(i):
    cache.append("x" * 1000 + str(i))   # LEAK
print("ready", flush=True)
i = 0
while True:
    handle(i)
    i += 1
    time.sleep(0.001)
"""


def _pythons() -> list[str]:
    """The shared-library build this suite runs on, Debian's static build, and pyenv's 3.9 and 3.13."""
    others = ("/usr/bin/python3.11", str(PYENV / "3.9.18/bin/python3"), str(PYENV / "3.13.0/bin/python3"))
    return [sys.executable, *(exe for exe in others if Path(exe).exists())]


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _assert_running(t: Target) -> None:
    assert t.proc.poll() is None
    st = _status(t.pid)
    assert st["TracerPid"] == "0", st
    assert not st["State"].startswith(("T", "t")), st


def test_gc_inject_pauses_per_generation_and_trace(spawn_python: Callable[..., Target], agent_env: dict[str, str]) -> None:
    t = spawn_python(GC_LOOP)
    r = run_obskit("gc", "--pid", str(t.pid), "--inject", "-d", "2", "--json", env=agent_env)
    assert r.exit_code == 0, r.stderr
    assert re.search(rf"loaded the obskit agent into pid {t.pid} \(Python 3\.\d+\.\d+\) with gdb: the process was paused "
                     r"\d+ ms", r.stderr), r.stderr
    data = json.loads(r.stdout)
    gens = data["generations"]
    assert gens[0]["collections"] > 0 and gens[0]["pause_total_s"] > 0, gens
    assert gens[1]["collections"] > 0, gens
    _assert_running(t)
    r = run_obskit("gc", "--pid", str(t.pid), "--trace", "-d", "1.5", env=agent_env)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(re.match(r"^gc \d+ @\d+\.\d{3}s gen[012] ", line) for line in lines), lines[:5]
    # Idempotent: a second --inject finds the agent, pauses nothing.
    r = run_obskit("gc", "--pid", str(t.pid), "--inject", "--json", env=agent_env)
    assert r.exit_code == 0 and "already runs the obskit agent" in r.stderr, r.stderr


@pytest.mark.parametrize("exe", _pythons(), ids=lambda p: p.replace("/", "_"))
def test_inject_each_python_build(spawn_python: Callable[..., Target], agent_env: dict[str, str], exe: str) -> None:
    # Shared-library builds (symbols in libpython) and Debian's static build (symbols in the executable).
    t = spawn_python(GC_LOOP, executable=exe)
    r = run_obskit("gc", "--pid", str(t.pid), "--inject", "--json", env=agent_env)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == t.pid
    assert "with gdb" in r.stderr
    r = run_obskit("gc", "--detach", "--pid", str(t.pid), "--json", env=agent_env)
    assert r.exit_code == 0, r.stderr
    _assert_running(t)


def test_mem_diff_inject_finds_growing_site(spawn_python: Callable[..., Target], agent_env: dict[str, str]) -> None:
    t = spawn_python(LEAKY)
    r = run_obskit("mem", "diff", "--pid", str(t.pid), "--inject", "-i", "2", "--json", env=agent_env)
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    leak_line = LEAKY.splitlines().index('    cache.append("x" * 1000 + str(i))   # LEAK') + 1
    top = data["sites"][0]
    assert top["file"] == "<string>" and top["line"] == leak_line, data["sites"][:3]
    assert top["size_diff"] > 100_000
    # tracemalloc was stopped again (no --keep); detach reports nothing left to stop.
    r = run_obskit("gc", "--detach", "--pid", str(t.pid), "--json", env=agent_env)
    assert json.loads(r.stdout)["tracemalloc_stopped"] is False


def test_detach_removes_everything_and_attach_starts_again(spawn_python: Callable[..., Target],
                                                           agent_env: dict[str, str], tmp_path: Path) -> None:
    t = spawn_python(GC_LOOP)
    sock = tmp_path / "agent" / f"{t.pid}.sock"
    counts = []
    for _ in range(3):
        r = run_obskit("gc", "--pid", str(t.pid), "--inject", "--json", env=agent_env)
        assert r.exit_code == 0, r.stderr
        assert sock.is_socket()
        # tracemalloc started through the agent is stopped by the detach.
        assert run_obskit("mem", "top", "--pid", str(t.pid), "--keep", "--wait", "0.2", "--json", env=agent_env).exit_code == 0
        r = run_obskit("gc", "--detach", "--pid", str(t.pid), "--json", env=agent_env)
        assert r.exit_code == 0, r.stderr
        reply = json.loads(r.stdout)
        assert reply["detached"] is True and reply["tracemalloc_stopped"] is True
        assert reply["callbacks"]["gc"] == 0  # checked inside the target: no obskit callback in gc.callbacks
        counts.append(reply["callbacks"])
        assert not sock.exists()
        r = run_obskit("gc", "--pid", str(t.pid), env=agent_env)
        assert r.exit_code == ExitCode.UNAVAILABLE and "has no obskit agent" in r.stderr
    # Registrations do not pile up: one atexit and one fork hook, and the process-wide atexit count is flat.
    assert all(c["obskit_atexit"] == 1 and c["obskit_fork"] == 1 for c in counts), counts
    assert len({c["atexit"] for c in counts}) == 1, counts
    _assert_running(t)


SERVER = r"""
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print("ready", s.server_address[1], flush=True)
s.serve_forever()
"""


def _cycles(spawn_python: Callable[..., Target], env: dict[str, str], n: int) -> None:
    t = spawn_python(SERVER)
    port = int(t.ready_line.split()[1])
    stop = threading.Event()
    answered: list[int] = []
    failed: list[str] = []

    def one() -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                assert resp.read() == b"ok"
            answered.append(1)
        except Exception as e:
            failed.append(repr(e))

    def load() -> None:
        while not stop.is_set():
            one()

    worker = threading.Thread(target=load)
    worker.start()
    try:
        for i in range(n):
            r = run_obskit("gc", "--pid", str(t.pid), "--inject", "--json", env=env)
            assert r.exit_code == 0, (i, r.stderr)
            r = run_obskit("gc", "--detach", "--pid", str(t.pid), env=env)
            assert r.exit_code == 0, (i, r.stderr)
    finally:
        stop.set()
        worker.join(30)
    assert failed == [], failed[:5]
    assert len(answered) > n
    _assert_running(t)


def test_attach_detach_cycles_while_serving(spawn_python: Callable[..., Target], agent_env: dict[str, str]) -> None:
    _cycles(spawn_python, agent_env, 10)


@pytest.mark.slow
def test_attach_detach_50_cycles_while_serving(spawn_python: Callable[..., Target], agent_env: dict[str, str]) -> None:
    _cycles(spawn_python, agent_env, 50)


def test_gil_held_in_c_times_out_and_target_runs_on(spawn_python: Callable[..., Target],
                                                    agent_env: dict[str, str]) -> None:
    # sum() over a huge range runs in C without ever reaching the eval loop or dropping the GIL.
    t = spawn_python("print('ready', flush=True)\nsum(range(10**13))")
    t0 = time.monotonic()
    r = run_obskit("gc", "--pid", str(t.pid), "--inject", env={**agent_env, "OBSKIT_INJECT_TIMEOUT": "5"}, timeout=60)
    assert r.exit_code == ExitCode.UNAVAILABLE, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "did not start in process" in r.stderr and "holding the GIL" in r.stderr and "paused" in r.stderr
    assert time.monotonic() - t0 < 45
    _assert_running(t)
    cpu0 = sum(int(x) for x in Path(f"/proc/{t.pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])
    time.sleep(0.5)
    cpu1 = sum(int(x) for x in Path(f"/proc/{t.pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])
    assert cpu1 > cpu0  # still computing, not stopped


def _unshared(code: str, setup: str, env: dict[str, str], *flags: str) -> subprocess.Popen[str]:
    require_tool("unshare")
    # The interpreter itself, not a virtualenv's link to it: the venv may live under the /tmp this replaces.
    script = f"{setup} && exec {os.path.realpath(sys.executable)} -u -c \"$0\""
    proc = subprocess.Popen(["unshare", "-m", *flags, "--propagation", "private", "sh", "-c", script, code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, **env})
    _wait_ready(proc)
    return proc


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_target_in_another_mount_namespace(tmp_path: Path) -> None:
    # The target's /tmp is its own tmpfs: the agent file and its socket exist only there.
    env = {k: v for k, v in os.environ.items() if k != "OBSKIT_AGENT_DIR"}
    proc = _unshared(GC_LOOP, "mount -t tmpfs tmpfs /tmp", {})
    try:
        r = subprocess.run([sys.executable, "-m", "obskit", "gc", "--pid", str(proc.pid), "--inject", "--json"],
                           capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["pid"] == proc.pid
        assert not Path(f"/tmp/obskit-0/{proc.pid}.sock").exists()  # not in our /tmp
        assert Path(f"/proc/{proc.pid}/root/tmp/obskit-0/{proc.pid}.sock").is_socket()
        assert not list(Path(f"/proc/{proc.pid}/root/tmp").glob("obskit-agent-*.py"))  # the agent file is removed
        r = subprocess.run([sys.executable, "-m", "obskit", "gc", "--detach", "--pid", str(proc.pid)],
                           capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
    finally:
        terminate(proc)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for private namespaces")
def test_target_is_pid_1_of_its_own_pid_and_mount_namespace() -> None:
    # As in a container seen from the host: the agent names its socket by its own PID (1).
    env = {k: v for k, v in os.environ.items() if k != "OBSKIT_AGENT_DIR"}
    proc = _unshared(GC_LOOP, "mount -t tmpfs tmpfs /tmp", {}, "-p", "-f", "--mount-proc")
    target = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0])
    try:
        assert _status(target)["NSpid"].split()[-1] == "1"
        r = subprocess.run([sys.executable, "-m", "obskit", "gc", "--pid", str(target), "--inject", "--json"],
                           capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["pid"] == target
        assert Path(f"/proc/{target}/root/tmp/obskit-0/1.sock").is_socket()
    finally:
        os.kill(target, 9)
        proc.wait(10)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_read_only_tmp_passes_the_agent_as_a_string(tmp_path: Path) -> None:
    shm = Path("/dev/shm") / f"obskit-test-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k != "OBSKIT_AGENT_DIR"}
    proc = _unshared(GC_LOOP, "mount -t tmpfs -o ro tmpfs /tmp", {"OBSKIT_AGENT_DIR": str(shm)})
    try:
        r = subprocess.run([sys.executable, "-m", "obskit", "gc", "--pid", str(proc.pid), "--inject", "--json"],
                           capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        assert (shm / f"{proc.pid}.sock").is_socket()
    finally:
        terminate(proc)
        subprocess.run(["rm", "-rf", str(shm)], check=False)


def test_forked_workers_are_named_and_reached_with_s(spawn_python: Callable[..., Target],
                                                      agent_env: dict[str, str]) -> None:
    code = GC_LOOP.replace('print("ready", flush=True)',
                           'import os\nchild = os.fork()\nprint("ready", child, flush=True) if child else None')
    t = spawn_python(code)
    child = int(t.ready_line.split()[1])
    try:
        r = run_obskit("gc", "--pid", str(t.pid), "--inject", "--json", env=agent_env)
        assert r.exit_code == 0, r.stderr
        assert f"({child})" in r.stderr and "not reached" in r.stderr and "-s" in r.stderr
        assert run_obskit("gc", "--pid", str(child), env=agent_env).exit_code == ExitCode.UNAVAILABLE
        run_obskit("gc", "--detach", "--pid", str(t.pid), env=agent_env)
        r = run_obskit("gc", "--pid", str(t.pid), "--inject", "-s", "--json", env=agent_env)
        assert r.exit_code == 0, r.stderr
        assert f"into pid {child}" in r.stderr
        assert run_obskit("gc", "--pid", str(child), "--json", env=agent_env).exit_code == 0
    finally:
        try:
            os.kill(child, 9)
        except OSError:
            pass


def test_missing_gdb_says_how_to_get_it(spawn_python: Callable[..., Target], agent_env: dict[str, str]) -> None:
    t = spawn_python(GC_LOOP)
    r = run_obskit("gc", "--pid", str(t.pid), "--inject", env={**agent_env, "PATH": "/nonexistent"})
    assert r.exit_code == ExitCode.UNAVAILABLE, r.stderr
    assert "needs gdb" in r.stderr and "apt-get install gdb" in r.stderr


def test_without_inject_and_no_terminal_nothing_is_loaded(spawn_python: Callable[..., Target],
                                                         agent_env: dict[str, str], tmp_path: Path) -> None:
    t = spawn_python(GC_LOOP)
    r = run_obskit("mem", "top", "--pid", str(t.pid), env=agent_env)
    assert r.exit_code == ExitCode.UNAVAILABLE and "--inject" in r.stderr
    assert not (tmp_path / "agent" / f"{t.pid}.sock").exists()


def test_dynsym_reader_finds_symbols_in_both_builds() -> None:
    from obskit.agent.inject import dynsym

    lib = PYENV / "3.11.7/lib/libpython3.11.so.1.0"
    for path in (lib, Path("/usr/bin/python3.11")):
        if not path.exists():
            continue
        found, _ = dynsym(path.read_bytes(), ("Py_AddPendingCall", "PyRun_SimpleString"))
        assert set(found) == {"Py_AddPendingCall", "PyRun_SimpleString"}, path
    found, _ = dynsym(Path("/bin/sh").read_bytes(), ("Py_AddPendingCall",))
    assert found == {}


def test_doctor_gdb_check_is_a_warning_outside_the_attach_preflight(tmp_path: Path) -> None:
    from obskit import doctor

    missing = doctor.check_gdb(doctor.DoctorContext(environ={"PATH": str(tmp_path)}))
    assert missing.status == "warning" and "apt-get install gdb" in missing.fix and "--inject" in missing.message
    assert doctor.check_gdb(doctor.DoctorContext()).status == "pass"
    assert doctor.check_gdb in doctor.ALL_CHECKS and doctor.check_gdb not in doctor.ATTACH_CHECKS


def _on_terminal(args: list[str], answer: str, env: dict[str, str], timeout: float = 90) -> tuple[int, str]:
    """Run obskit with a pseudo-terminal as stdin/stdout/stderr; answer the first question."""
    import pty
    import select

    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "obskit", *args], stdin=child, stdout=child, stderr=child,
                            env={**os.environ, **env}, close_fds=True)
    os.close(child)
    out = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if not answered and b"[y/N]" in out:
                    os.write(main, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        return proc.wait(10), out.decode(errors="replace")
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_terminal_asks_before_loading(spawn_python: Callable[..., Target], agent_env: dict[str, str],
                                      tmp_path: Path) -> None:
    t = spawn_python(GC_LOOP)
    code, out = _on_terminal(["gc", "--pid", str(t.pid)], "n", agent_env)
    assert code == ExitCode.UNAVAILABLE and "load it now" in out, out
    assert not (tmp_path / "agent" / f"{t.pid}.sock").exists()
    code, out = _on_terminal(["gc", "--pid", str(t.pid)], "y", agent_env)
    assert code == 0 and "with gdb: the process was paused" in out and f"GC of pid {t.pid}" in out, out


@pytest.mark.slow
def test_gunicorn_master_then_each_worker(tmp_path: Path, agent_env: dict[str, str]) -> None:
    pytest.importorskip("gunicorn")
    from conftest import wait_for_lines

    (tmp_path / "wsgiapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen([gunicorn, "--workers", "2", "--bind", f"unix:{tmp_path / 'g.sock'}", "wsgiapp:app"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        wait_for_lines(proc.stderr, "Booting worker", 2)
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                  text=True).stdout.split()]
        assert len(workers) == 2
        r = run_obskit("gc", "--pid", str(proc.pid), "--inject", "--json", env=agent_env)
        assert r.exit_code == 0, r.stderr
        assert "2 Python child process(es)" in r.stderr and "not reached" in r.stderr, r.stderr
        r = run_obskit("gc", "--pid", str(proc.pid), "--inject", "-s", "--json", env=agent_env)
        assert r.exit_code == 0, r.stderr
        for w in workers:
            assert f"into pid {w}" in r.stderr, r.stderr
            g = run_obskit("gc", "--pid", str(w), "--json", env=agent_env)
            assert g.exit_code == 0 and json.loads(g.stdout)["pid"] == w, g.stderr
    finally:
        terminate(proc, timeout=15)


def test_stopped_target_is_refused_and_left_stopped(spawn_python: Callable[..., Target],
                                                    agent_env: dict[str, str]) -> None:
    import signal

    t = spawn_python(GC_LOOP)
    os.kill(t.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10
        while not _status(t.pid)["State"].startswith("T") and time.monotonic() < deadline:
            time.sleep(0.02)
        r = run_obskit("gc", "--pid", str(t.pid), "--inject", env=agent_env)
        assert r.exit_code == ExitCode.UNAVAILABLE and "is stopped" in r.stderr, r.stderr
        assert _status(t.pid)["State"].startswith("T")  # obskit did not continue a process someone stopped
    finally:
        os.kill(t.pid, signal.SIGCONT)


def test_late_bootstrap_does_nothing_and_never_raises(tmp_path: Path) -> None:
    # What PyRun_SimpleString runs: after its deadline it loads nothing; a failing load never escapes.
    from obskit.agent.inject import bootstrap_source

    late = bootstrap_source(deadline=time.time() - 1, directory=str(tmp_path / "a"), agent_path=None)
    broken = bootstrap_source(deadline=time.time() + 60, directory=str(tmp_path / "b"), agent_path="/nonexistent.py")
    code = (f"exec(compile({late!r}, 'late', 'exec'), globals())\n"
            f"exec(compile({broken!r}, 'broken', 'exec'), globals())\n"
            "import sys\n"
            "assert '_obskit_agent_server' not in sys.modules and '_obskit_boot' not in globals()\n"
            "print('clean')")
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "clean" and r.stderr == "", r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
