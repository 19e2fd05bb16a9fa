"""The in-process agent: permissions, hostile clients, fork, and `obskit run` start-up."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import ROOT, Target, needs_root, run_obskit, terminate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obskit.errors import ExitCode

AGENT_TARGET = """
import os, sys, time
import obskit.agent
agent = obskit.agent.start()
print("ready", agent.path if agent else "none", flush=True)
junk = []
while True:
    junk = [[i] for i in range(200)]
    time.sleep(0.01)
"""


def _exchange(path: str, payload: bytes, timeout: float = 10.0) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        if payload:
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (BrokenPipeError, ConnectionResetError, BlockingIOError):
        return b""  # refused by a full backlog or closed by a busy agent: callers retry
    finally:
        s.close()


def _hello(path: str, retries: int = 50) -> dict[str, object]:
    for _ in range(retries):
        reply = _exchange(path, b'{"cmd": "hello"}\n')
        if reply:
            out = json.loads(reply)
            assert isinstance(out, dict)
            return out
        time.sleep(0.2)  # all client slots busy: the agent closed us; retry
    raise AssertionError("agent never answered hello")


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"


@pytest.fixture
def agent_target(spawn_python: Callable[..., Target], agent_dir: Path) -> tuple[Target, str]:
    t = spawn_python(AGENT_TARGET, env={"OBSKIT_AGENT_DIR": str(agent_dir), "PYTHONPATH": str(ROOT)})
    path = t.ready_line.split(None, 1)[1]
    assert path == str(agent_dir / f"{t.pid}.sock")
    return t, path


def test_socket_and_directory_are_private(agent_target: tuple[Target, str], agent_dir: Path) -> None:
    t, path = agent_target
    assert stat.S_IMODE(os.stat(agent_dir).st_mode) == 0o700
    st_sock = os.stat(path)
    assert stat.S_ISSOCK(st_sock.st_mode)
    assert stat.S_IMODE(st_sock.st_mode) == 0o600
    hello = _hello(path)
    assert hello["ok"] is True and hello["pid"] == t.pid


@needs_root
def test_other_users_cannot_connect(agent_target: tuple[Target, str]) -> None:
    _, path = agent_target
    code = (
        "import os, socket, sys\nos.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1]); print('connected')\n"
        "except PermissionError:\n    print('denied')\n"
    )
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "denied", r.stderr


def test_unsafe_directory_is_refused(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    bad = tmp_path / "shared"
    bad.mkdir()
    os.chmod(bad, 0o777)
    t = spawn_python(AGENT_TARGET, env={"OBSKIT_AGENT_DIR": str(bad), "PYTHONPATH": str(ROOT)})
    assert t.ready_line == "ready none"
    assert not list(bad.iterdir())
    assert t.proc.poll() is None


# (payload, the agent must refuse it); out-of-range numbers are clamped, so those are answered.
HOSTILE: list[tuple[bytes, bool]] = [
    (b"", False),
    (b"\n", True),
    (b"not json\n", True),
    (b"[1, 2]\n", True),
    (b'"hello"\n', True),
    (b'{"cmd": 5}\n', True),
    (b'{"cmd": "no-such"}\n', True),
    (b'{"cmd": "types", "limit": "x"}\n', True),
    (b'{"cmd": "types", "limit": 1e308}\n', True),
    (b'{"cmd": "types", "limit": 99999999999999999999999}\n', False),
    (b'{"cmd": "events", "since": -5}\n', False),
    (b'{"cmd": "tm.diff"}\n', True),
    (b'{"cmd": "tm.snapshot"}\n', True),
    (b'{"cmd": "tm.start", "frames": true}\n', True),
    (b"\xff\xfe\xfd\n", True),
    (b"[" * 60000 + b"\n", True),
    (b'{"a": ' * 20000 + b"\n", True),
    (b"x" * 200_000, True),
    (b'{"cmd": "hello"', False),
    (b'{"cmd": "hello"}\n' * 500, False),
]


def test_hostile_requests_leave_the_app_running(agent_target: tuple[Target, str]) -> None:
    t, path = agent_target
    for payload, refused in HOSTILE:
        reply = _exchange(path, payload)
        if reply:
            answer = json.loads(reply.split(b"\n", 1)[0])
            assert "ok" in answer, payload[:40]
            if refused:
                assert answer["ok"] is False, payload[:40]
        assert t.proc.poll() is None, payload[:40]
    # Idle connections hold every client slot; the agent times them out and serves again.
    idle = []
    for _ in range(12):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.append(s)
        try:
            s.connect(path)
        except BlockingIOError:
            pass  # backlog full: that is the point
    try:
        assert _hello(path)["pid"] == t.pid
    finally:
        for s in idle:
            s.close()
    assert t.proc.poll() is None


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.fixed_dictionaries(
            {"cmd": st.sampled_from(["hello", "gc", "events", "types", "tm.snapshot", "tm.diff", "x", ""])},
            optional={
                "limit": st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=5), st.none()),
                "since": st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=3)),
                "frames": st.integers(min_value=-5, max_value=5),
            },
        ).map(lambda d: json.dumps(d).encode() + b"\n"),
    )
)
def test_fuzzed_requests_get_an_answer_or_a_close(agent_target: tuple[Target, str], payload: bytes) -> None:
    t, path = agent_target
    reply = _exchange(path, payload)
    if reply:
        assert reply.endswith(b"\n")
        answer = json.loads(reply)
        assert isinstance(answer, dict) and "ok" in answer
    assert t.proc.poll() is None


def test_forked_child_gets_its_own_agent(spawn_python: Callable[..., Target], agent_dir: Path) -> None:
    code = AGENT_TARGET.replace(
        'print("ready"',
        'child = os.fork()\nif child == 0:\n    time.sleep(60)\n    os._exit(0)\nprint("ready", child, flush=True)\nprint("x"',
    )
    t = spawn_python(code, env={"OBSKIT_AGENT_DIR": str(agent_dir), "PYTHONPATH": str(ROOT)})
    child = int(t.ready_line.split()[1])
    try:
        path = agent_dir / f"{child}.sock"
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _hello(str(path))["pid"] == child
        assert _hello(str(agent_dir / f"{t.pid}.sock"))["pid"] == t.pid
    finally:
        os.kill(child, 9)


def test_agent_import_is_light() -> None:
    # Only obskit.agent itself and the standard library: nothing from site-packages is loaded
    # into the host app (what the stdlib part is depends on what `site` already imported).
    code = (
        "import sys; before = set(sys.modules); import obskit.agent\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT).stdout
    assert out.strip() == "['obskit', 'obskit.agent']"


# -- obskit run ---------------------------------------------------------------------------

PROBE = """
import os, sys
print("agent", "_obskit_agent_server" in sys.modules, os.path.exists(os.path.join(os.environ["OBSKIT_AGENT_DIR"], f"{os.getpid()}.sock")))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def test_run_passes_the_exit_code_through(tmp_path: Path) -> None:
    env = {"OBSKIT_AGENT_DIR": str(tmp_path / "a")}
    r = run_obskit("run", "--", sys.executable, "-c", PROBE, "7", env=env)
    assert r.exit_code == 7, r.stderr
    assert r.stdout.strip() == "agent True True"
    assert "obskit gc --pid" in r.stderr


def test_run_script_and_module(tmp_path: Path) -> None:
    env = {"OBSKIT_AGENT_DIR": str(tmp_path / "a")}
    script = tmp_path / "probe_script.py"
    script.write_text(PROBE)
    r = run_obskit("run", "-q", str(script), "3", env=env)
    assert (r.exit_code, r.stdout.strip(), r.stderr) == (3, "agent True True", "")
    r = run_obskit("run", "-q", "--", sys.executable, "-m", "probe_script", env=env, cwd=str(tmp_path))
    assert (r.exit_code, r.stdout.strip()) == (0, "agent True True"), r.stderr


def test_run_chains_an_existing_sitecustomize(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nprint('their sitecustomize ran', os.environ.get('OBSKIT_AGENT'))\n")
    env = {"OBSKIT_AGENT_DIR": str(tmp_path / "a"), "PYTHONPATH": str(site)}
    r = run_obskit("run", "-q", "--", sys.executable, "-c", PROBE, env=env)
    assert r.exit_code == 0, r.stderr
    # The first line is obskit's own interpreter (same PYTHONPATH); then the app's, once.
    assert r.stdout.splitlines() == ["their sitecustomize ran None", "their sitecustomize ran 1", "agent True True"]


def test_bootstrap_is_gated_by_obskit_agent_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from obskit.agent.bootstrap import run_env

    monkeypatch.setenv("OBSKIT_AGENT_DIR", str(tmp_path / "a"))
    env = run_env()
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=30)
    assert r.stdout.strip() == "agent True True", r.stderr
    env["OBSKIT_AGENT"] = "0"  # the bootstrap stays on PYTHONPATH but must do nothing
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=30)
    assert r.stdout.strip() == "agent False False", r.stderr


def test_run_unknown_command(tmp_path: Path) -> None:
    r = run_obskit("run", "--", "no-such-command-obskit", env={"OBSKIT_AGENT_DIR": str(tmp_path / "a")})
    assert r.exit_code == ExitCode.TARGET_NOT_FOUND
    assert r.stderr.startswith("obskit: error: command not found") and r.stderr.count("\n") == 1
    r = run_obskit("run")
    assert r.exit_code == ExitCode.USAGE


@pytest.mark.slow
def test_run_gunicorn_workers_each_get_an_agent(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "wsgiapp.py").write_text(
        textwrap.dedent(
            """
            def app(environ, start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok"]
            """
        )
    )
    agent_dir = tmp_path / "a"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "obskit", "run", "-q", "--", gunicorn, "--workers", "2",
         "--bind", f"unix:{tmp_path / 'g.sock'}", "wsgiapp:app"],
        cwd=tmp_path, env={**os.environ, "OBSKIT_AGENT_DIR": str(agent_dir)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        socks: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            socks = sorted(agent_dir.glob("*.sock")) if agent_dir.exists() else []
            if len(socks) >= 3:
                break
            time.sleep(0.1)
        assert len(socks) >= 3, (socks, proc.poll())
        pids = {int(p.stem) for p in socks}
        assert proc.pid in pids
        worker = next(iter(pids - {proc.pid}))
        r = run_obskit("gc", "--pid", str(worker), "--json", env={"OBSKIT_AGENT_DIR": str(agent_dir)})
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["pid"] == worker
        r = run_obskit("mem", "--pid", str(proc.pid), "-s", "--json", "--no-agent")
        roles = {p["role"] for p in json.loads(r.stdout)["processes"]}
        assert {"gunicorn-master", "gunicorn-worker"} <= roles
    finally:
        terminate(proc, timeout=15)


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_stale_sockets_are_swept_and_reported(spawn_python: Callable[..., Target], agent_dir: Path) -> None:
    agent_dir.mkdir(mode=0o700)
    stale = agent_dir / f"{_dead_pid()}.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    # A live process without an agent, but with a leftover socket under its PID.
    plain = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)")
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(agent_dir / f"{plain.pid}.sock"))
    left.close()
    env = {"OBSKIT_AGENT_DIR": str(agent_dir)}
    r = run_obskit("gc", "--pid", str(plain.pid), env=env)
    assert r.exit_code == ExitCode.UNAVAILABLE and "stale socket" in r.stderr, r.stderr
    t = spawn_python(AGENT_TARGET, env={**env, "PYTHONPATH": str(ROOT)})
    assert _hello(str(agent_dir / f"{t.pid}.sock"))["ok"] is True
    deadline = time.monotonic() + 20
    while stale.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stale.exists()


# -- the client does not trust what listens at the agent path ----------------------------------


def test_every_real_reply_passes_validation(agent_target: tuple[Target, str]) -> None:
    """The shapes the client checks are the shapes the agent sends (a check that rejects real replies is a defect)."""
    from obskit.agent.client import AgentClient

    target, path = agent_target
    client = AgentClient(target.pid, path, expect_uid=os.geteuid())
    for cmd, args in (("hello", {}), ("gc", {}), ("events", {"since": 0}), ("types", {"limit": 5}),
                      ("tm.start", {"frames": 2}), ("tm.snapshot", {"limit": 5, "baseline": True}),
                      ("tm.diff", {"limit": 5}), ("tm.stop", {})):
        reply = client.request(cmd, **args)
        assert reply["ok"] is True, cmd


@pytest.mark.parametrize(("cmd", "reply", "field"), [
    ("gc", {"ok": True, "uptime_s": float("nan")}, "gc.uptime_s"),
    ("events", {"ok": True, "seq": 1, "uptime_s": 1.0, "dropped": 0, "events": [[1, 0.1, 7, 0.1, 1, 0]]}, "events[0][2]"),
    ("types", {"ok": True, "tracked": True, "types": [], "cost_s": 0.0}, "types.tracked"),
    ("tm.start", {"ok": True, "tracing": 1, "already": False, "frames": 1}, "tm.start.tracing"),
    ("hello", {"ok": True, "agent_version": 1, "pid": 1, "python": "x" * 100, "uptime_s": 1.0}, "hello.python"),
])
def test_malformed_replies_name_the_field(cmd: str, reply: dict[str, object], field: str) -> None:
    from obskit.agent.client import ReplyError, validate_reply

    with pytest.raises(ReplyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        validate_reply(cmd, reply)


def test_reply_cap_and_peer_check(tmp_path: Path) -> None:
    """A listener of our own uid sending 9 MiB without a newline: capped (another uid: tests/hostile)."""
    import threading

    from obskit.agent.client import AgentClient
    from obskit.errors import PermissionDenied, Unavailable

    path = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            try:
                conn.recv(65536)
                conn.sendall(b"x" * (9 << 20))
            except OSError:
                pass
            finally:
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(Unavailable, match="larger than 8 MiB"):
            AgentClient(os.getpid(), path, timeout=10, expect_uid=os.geteuid()).request("hello")
        if os.geteuid() != 0:  # root's listener is accepted for any target (root is trusted)
            with pytest.raises(PermissionDenied, match=f"served by uid {os.geteuid()}"):
                AgentClient(os.getpid(), path, timeout=10, expect_uid=os.geteuid() + 12345).request("hello")
    finally:
        srv.close()
