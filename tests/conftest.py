"""Shared test helpers: real target processes with a readiness handshake, and CLI runners.

* ``spawn_python(code)`` starts ``sys.executable -c code``; the code must print a line
  (``ready`` or ``ready PID``) when it is ready; the fixture waits for it, never sleeps.
* ``run_obskit(*args)`` runs the real CLI in a subprocess (``python -m obskit``).
* ``cli(*args)`` runs ``obskit.commands.main`` in-process and captures its output.
* ``obskit_process(*args)`` starts the real CLI for a test that signals it mid-way.
* ``terminate(proc)`` and ``wait_for_lines(stream, needle, n)`` stop and await other processes.
* ``zombie_pid`` is the PID of a zombie (exited, never reaped).
* ``needs_ptrace`` skips, with the reason, where py-spy cannot attach here.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPTURED = Path(__file__).resolve().parent / "data"
TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _stable_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("OBSKIT_WIDTH", "120")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("TRACEPARENT", raising=False)


@dataclass
class Target:
    proc: subprocess.Popen[str]
    ready_line: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        terminate(self.proc)


def terminate(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    """SIGTERM ``proc``; SIGKILL it if it has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for_lines(stream: IO[str], needle: str, count: int, timeout: float = 90) -> None:
    """Readiness handshake on a log stream: ``count`` lines containing ``needle`` (gunicorn's "Booting worker")."""
    import selectors

    # Raw reads: lines a buffered readline() pulled in with the previous one would never wake select().
    fd, want, tail, seen = stream.fileno(), needle.encode(), b"", 0
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while seen < count and time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, tail = (tail + chunk).split(b"\n")
            seen += sum(want in line for line in lines)
    sel.close()
    assert seen >= count, f"saw {seen}/{count} '{needle}' lines"


def _wait_ready(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    assert proc.stdout is not None
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.2):
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"target exited with {proc.returncode} before ready: {err[-2000:]}")
            continue
        line = proc.stdout.readline()
        if line.startswith("ready"):
            return line.strip()
        if not line and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"target exited with {proc.returncode} before ready: {err[-2000:]}")
    raise RuntimeError("target did not print 'ready' in time")


@pytest.fixture
def spawn_python() -> Iterator[Callable[..., Target]]:
    started: list[Target] = []

    def spawn(code: str, *args: str, executable: str | None = None, env: dict[str, str] | None = None,
              cwd: str | None = None) -> Target:
        proc = subprocess.Popen(
            [executable or sys.executable, "-u", "-c", textwrap.dedent(code), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        t = Target(proc, "")
        started.append(t)
        t.ready_line = _wait_ready(proc)
        return t

    yield spawn
    for t in started:
        t.stop()


ZOMBIE = """
import os, time
pid = os.fork()
if pid == 0:
    os._exit(0)
while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
    time.sleep(0.01)
print("ready", pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def zombie_pid(spawn_python: Callable[..., Target]) -> str:
    """The PID (as the command line takes it) of a child its living parent never reaps."""
    return spawn_python(ZOMBIE).ready_line.split()[1]


@pytest.fixture
def demo_target(spawn_python: Callable[..., Target]) -> Target:
    return spawn_python("import sys; from obskit.demo import main; sys.exit(main(sys.argv[1:]))", "--seconds", "120")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_obskit(*args: str, timeout: float = 120, env: dict[str, str] | None = None, input: str | None = None,
               cwd: str | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "obskit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120", "OBSKIT_WIDTH": "120", **(env or {})},
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        cwd=cwd,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@contextlib.contextmanager
def obskit_process(*args: str, env: dict[str, str] | None = None,
                   cwd: str | Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """``python -m obskit ARGS`` with stdout/stderr piped; killed at the end if it is still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "obskit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=None if env is None else {**os.environ, **env},
        cwd=cwd,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    from obskit.commands import main

    def run(*args: str) -> Result:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@functools.lru_cache(maxsize=1)
def ptrace_works() -> str | None:
    """None when py-spy can dump a child process here, else the reason it cannot."""
    try:
        from obskit import pyspy

        exe = pyspy.binary()
    except Exception as e:  # pragma: no cover - depends on the machine
        return f"py-spy unavailable: {e}"
    proc = subprocess.Popen([sys.executable, "-c", "import time\nprint('ready', flush=True)\ntime.sleep(30)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        _wait_ready(proc)
        r = subprocess.run([exe, "dump", "--pid", str(proc.pid)], capture_output=True, text=True, timeout=30,
                           env=pyspy.env())
        if r.returncode != 0:
            return f"py-spy cannot attach here: {pyspy.error_line(r.stderr)}"
        return None
    finally:
        proc.kill()
        proc.wait()


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def require_ptrace() -> None:
    reason = ptrace_works()
    if reason is not None:
        pytest.skip(reason)


needs_ptrace = pytest.mark.usefixtures("require_ptrace")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


# Real peers and consumers the tests run (Debian package in brackets); .ci/system-deps.sh installs them.
REAL_CONSUMERS = {
    "go": "golang-go", "jq": "jq", "node": "nodejs", "chromium": "chromium", "chromedriver": "chromium-driver",
    "prometheus": "prometheus", "gdb": "gdb", "docker": "docker.io", "dockerd": "docker.io",
    "debootstrap": "debootstrap",
}
_MISSING_PREFIX = "real consumer missing:"


def require_tool(name: str) -> str:
    """The path of a real consumer (``go``, ``jq``, ``chromium``...), or skip the test with the
    reason — which the test summary lists.  With ``CI=true`` a missing one fails instead: CI
    installs every one of them, so a skip there would hide a broken install step."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{_MISSING_PREFIX} {name} (Debian package {REAL_CONSUMERS.get(name, name)}; .ci/system-deps.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """List every real-consumer check that did not run, so a skip is never silent."""
    missing = []
    for rep in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(rep, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        if _MISSING_PREFIX in reason:
            missing.append((rep.nodeid, reason.split("Skipped: ", 1)[-1]))
    if missing:
        terminalreporter.section("real-consumer checks skipped")
        for nodeid, reason in missing:
            terminalreporter.write_line(f"{nodeid}: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    # Make the helpers importable as `from conftest import ...` in test modules.
    sys.path.insert(0, str(Path(__file__).parent))
