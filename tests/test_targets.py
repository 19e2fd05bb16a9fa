"""Any PID a user has: real process trees with a wrapper (`sh -c`, a bash entrypoint, tini) above Python."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable

import pytest
from conftest import Result, needs_ptrace, wait_for_lines

from obskit.errors import ExitCode
from obskit.proc import ProcFS
from obskit.targets import resolve

# One write(2) per line: with PYTHONUNBUFFERED, print() writes "ready" and "\n" apart, and two
# children sharing a pipe would interleave them into "readyready\n\n".
SLEEPER = "import os, time\nos.write(1, b'ready\\n')\ntime.sleep(120)\n"


@contextmanager
def tree(argv: list[str], ready: int = 1, needle: str = "ready", stream: str = "stdout",
         cwd: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """Start ``argv`` in its own session, wait for ``ready`` lines containing ``needle``; kill the whole group after."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=cwd)
    try:
        wait_for_lines(getattr(proc, stream), needle, ready, timeout=60)
        yield proc
    finally:
        # tini puts its child in a process group of its own: kill every descendant, then the group
        for pid in [*ProcFS().descendants(proc.pid), proc.pid]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _python_children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(x) for x in out.split())


def test_sh_c_wrapping_python_is_followed(cli: Callable[..., Result]) -> None:
    # `; true` keeps sh alive as the parent (a lone command would be exec'd in place of sh).
    with tree(["sh", "-c", f"{sys.executable} -c \"{SLEEPER}\"; true"]) as sh:
        (py,) = _python_children(sh.pid)
        res = resolve(sh.pid)
        assert res.pid == py and res.followed is not None and not res.with_workers
        note = res.note()
        assert note is not None and note.startswith(f"following python pid {py} (") and note.endswith(f"under sh pid {sh.pid}")
        # ps --pid of the wrapper lists the Python process, says why, exits 0
        r = cli("ps", "--pid", str(sh.pid), "-i", "0", "--json")
        assert r.exit_code == 0, r.stderr
        assert [p["pid"] for p in json.loads(r.stdout)["processes"]] == [py]
        assert f"following python pid {py}" in r.stderr and r.stderr.count("\n") == 1
        # the doctor checks the process the attaching commands would attach to
        d = cli("doctor", "--pid", str(sh.pid), "--json", "-o", "/tmp")
        assert json.loads(d.stdout)["pid"] == py and f"following python pid {py}" in d.stderr
        # mem takes any PID: it reports the wrapper and names the Python process below it
        m = cli("mem", "--pid", str(sh.pid), "--json", "--no-agent")
        assert m.exit_code == 0, m.stderr
        assert json.loads(m.stdout)["processes"][0]["pid"] == sh.pid
        assert f"process {sh.pid} (sh) is not Python; Python below it: {py} (" in m.stderr


@needs_ptrace
def test_sh_c_wrapping_python_stacks(cli: Callable[..., Result]) -> None:
    with tree(["sh", "-c", f"{sys.executable} -c \"{SLEEPER}\"; true"]) as sh:
        (py,) = _python_children(sh.pid)
        r = cli("stacks", "--pid", str(sh.pid), "--json")
        assert r.exit_code == 0, r.stderr
        assert [p["pid"] for p in json.loads(r.stdout)["processes"]] == [py]
        assert r.stderr.strip() == f"obskit: {resolve(sh.pid).note()}"


BASH_TWO = "#!/bin/bash\n" + f"{sys.executable} -c \"{SLEEPER}\" &\n" * 2 + "wait\n"


def test_bash_with_two_unrelated_pythons_is_a_usage_error(tmp_path: Path, cli: Callable[..., Result]) -> None:
    script = tmp_path / "entrypoint.sh"
    script.write_text(BASH_TWO)
    script.chmod(0o755)
    with tree([str(script)], ready=2) as bash:
        kids = _python_children(bash.pid)
        assert len(kids) == 2
        res = resolve(bash.pid)
        assert res.ambiguous and [c.pid for c in res.candidates] == kids and res.pid == bash.pid
        for command in (["stacks"], ["top", "--once"], ["gc"], ["doctor"], ["profile", "record", "-o", str(tmp_path / "p.html")]):
            r = cli(*command, "--pid", str(bash.pid))
            assert r.exit_code == ExitCode.USAGE, (command, r.stderr)
            lines = r.stderr.strip().splitlines()
            # one line per candidate (pid, role, command), then the error naming the next command to type
            assert len(lines) == 3, r.stderr
            for kid, line in zip(kids, lines):
                assert line.split()[1:3] == [str(kid), "python"] and "-c import os, time" in line
            name = " ".join(command[:2]) if command[0] == "profile" else command[0]
            assert lines[2].startswith(f"obskit: error: process {bash.pid} (entrypoint.sh) is not Python and runs 2 "
                                       f"unrelated Python processes ({kids[0]}, {kids[1]})")
            assert f"`obskit {name} --pid {kids[0]}`" in lines[2]
        assert not (tmp_path / "p.html").exists()
        # ps lists them both (a listing is the answer); quota and mem name them and carry on
        r = cli("ps", "--pid", str(bash.pid), "-i", "0", "--json")
        assert r.exit_code == 0 and sorted(p["pid"] for p in json.loads(r.stdout)["processes"]) == kids
        q = cli("quota", "--pid", str(bash.pid), "--json")
        assert q.exit_code in (0, 3), q.stderr
        assert f"Python below it: {kids[0]} (" in q.stderr and f", {kids[1]} (" in q.stderr


WSGI = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@contextmanager
def tini_gunicorn(tmp_path: Path) -> Iterator[tuple[int, int, list[int]]]:
    """tini (pid T) → gunicorn master (M) → 2 workers: yields (T, M, workers)."""
    pytest.importorskip("gunicorn")
    tini = shutil.which("tini")
    if tini is None:
        pytest.skip("tini not installed")
    (tmp_path / "wsgiapp.py").write_text(WSGI)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    argv = [tini, "-s", "--", gunicorn, "--workers", "2", "--bind", f"unix:{tmp_path / 'g.sock'}", "wsgiapp:app"]
    with tree(argv, ready=2, needle="Booting worker", stream="stderr", cwd=tmp_path) as t:
        (master,) = _python_children(t.pid)
        workers = _python_children(master)
        assert len(workers) == 2
        yield t.pid, master, workers


@pytest.mark.slow
def test_wrapper_above_gunicorn_follows_master_and_workers(tmp_path: Path, cli: Callable[..., Result]) -> None:
    with tini_gunicorn(tmp_path) as (tini, master, workers):
        res = resolve(tini)
        assert res.pid == master and res.with_workers
        assert res.followed is not None and res.followed.role == "gunicorn-master" and res.followed.workers == workers
        assert res.note() == (f"following python pid {master} (gunicorn master) under tini pid {tini}, "
                              f"with its 2 workers ({workers[0]}, {workers[1]})")
        r = cli("ps", "--pid", str(tini), "-i", "0", "--json")
        assert r.exit_code == 0
        roles = {p["pid"]: p["role"] for p in json.loads(r.stdout)["processes"]}
        assert roles == {master: "gunicorn-master", workers[0]: "gunicorn-worker", workers[1]: "gunicorn-worker"}


@needs_ptrace
@pytest.mark.slow
def test_wrapper_above_gunicorn_stacks_and_profile(tmp_path: Path, cli: Callable[..., Result]) -> None:
    with tini_gunicorn(tmp_path) as (tini, master, workers):
        r = cli("stacks", "--pid", str(tini), "--json")
        assert r.exit_code == 0, r.stderr
        assert sorted(p["pid"] for p in json.loads(r.stdout)["processes"]) == sorted([master, *workers])
        assert f"following python pid {master} (gunicorn master) under tini pid {tini}" in r.stderr
        out = tmp_path / "p.json"
        p = cli("profile", "record", "--pid", str(tini), "-d", "2", "--idle", "--json", "-o", str(out))
        assert p.exit_code == 0, p.stderr
        data = json.loads(p.stdout)
        assert data["metadata"]["target_pid"] == master and data["metadata"]["subprocesses"] is True
        assert {master, *workers} <= {row["pid"] for row in data["processes"]}
        assert f"following python pid {master} (gunicorn master) under tini pid {tini}" in p.stderr
        t = cli("top", "--pid", str(tini), "--once", "-d", "1", "--json")
        assert t.exit_code == 0, t.stderr
        window = json.loads(t.stdout)
        assert window["pid"] == master and window["subprocesses"] is True
        assert {master, *workers} <= {proc["pid"] for proc in window["processes"]}


def test_a_python_pid_is_never_second_guessed(cli: Callable[..., Result]) -> None:
    with tree([sys.executable, "-c", SLEEPER]) as py:
        res = resolve(py.pid)
        assert res.pid == py.pid and res.followed is None and res.note() is None and res.below_line() is None


def test_ps_of_obskit_itself_is_one_line(tmp_path: Path) -> None:
    # `exec` makes obskit's PID the shell's, so --pid names the obskit process itself
    r = subprocess.run(["sh", "-c", f"exec {sys.executable} -m obskit ps --pid $$"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == ExitCode.USAGE, r.stderr
    assert r.stderr.count("\n") == 1 and "is this `obskit ps` itself" in r.stderr and r.stdout == ""


def test_profile_of_a_command_that_already_exited_is_exit_8(tmp_path: Path) -> None:
    # The command runs and exits at once: whichever moment obskit notices, it exited (8), it was not "not found" (4).
    for _ in range(3):
        r = subprocess.run([sys.executable, "-m", "obskit", "profile", "record", "-o", str(tmp_path / "p.html"),
                            "--", sys.executable, "-c", "pass"], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
        assert r.returncode in (0, ExitCode.TARGET_EXITED), r.stderr
        assert "not found" not in r.stderr
