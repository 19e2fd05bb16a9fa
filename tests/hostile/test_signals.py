"""Item 7: SIGTERM and SIGHUP end every long command the way Ctrl-C does.

Each long command runs against the hostile target until it has shown something, then gets the
signal: it must write its outputs, print its report and exit 0; its temporary files must be gone.
With SIGHUP the terminal is really gone too (a pty whose other end was closed: every write is
EIO), and that is not an error either.  Before there is a result the exit is 128+N.
"""

from __future__ import annotations

import os
import pty
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile.conftest import EvilTarget
from hostile.hostile_lib import Answer, classify, env, fault, lost

# name -> args ({pid}, {log}, {out}); outputs the command must have written when it ends.
LONG: dict[str, tuple[list[str], list[str]]] = {
    "mem --watch": (["mem", "--pid", "{pid}", "--watch", "10m", "--interval", "0.5", "-o", "{out}/mem.html"], ["mem.html"]),
    "stacks --watch": (["stacks", "--pid", "{pid}", "--watch", "1000", "--interval", "0.5"], []),
    "top": (["top", "--pid", "{pid}"], []),
    "quota --window": (["quota", "--pid", "{pid}", "--window", "600"], []),
    "logs -f --summary": (["logs", "-f", "--summary", "{log}"], []),
    "profile record": (["profile", "record", "--pid", "{pid}", "-o", "{out}/p.html", "-o", "{out}/p.speedscope.json"],
                       ["p.html", "p.speedscope.json"]),
    "gc --trace": (["gc", "--pid", "{pid}", "--trace"], []),
}
SIGNALS = [signal.SIGTERM, signal.SIGHUP]


def _start(args: list[str], tmp_path: Path, target: EvilTarget, *, tty: bool) -> tuple[subprocess.Popen[bytes], int | None]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "obskit", *args], stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=slave, env=env(TMPDIR=str(tmpdir), **target.env), start_new_session=True)
        os.close(slave)
        return proc, master
    proc = subprocess.Popen([sys.executable, "-m", "obskit", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env(TMPDIR=str(tmpdir), **target.env))
    return proc, None


def _wait_for_output(proc: subprocess.Popen[bytes], fd: int, timeout: float = 60) -> bytes:
    """Until the command has printed something (it is running), then a little longer."""
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    got = b""
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline and proc.poll() is None:
        if sel.select(0.2):
            try:
                got += os.read(fd, 65536)
            except OSError:
                break
    sel.close()
    time.sleep(2.5)  # a window's worth of samples: the command has a result now
    return got


def _args(name: str, tmp_path: Path, target: EvilTarget) -> list[str]:
    log = tmp_path / "app.log"
    log.write_text("".join(f"2026-01-01T00:00:0{i}Z ERROR {i} boom\n" for i in range(5)))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return [a.format(pid=target.pid, log=log, out=out) for a in LONG[name][0]]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("name", list(LONG))
def test_signal_ends_like_ctrl_c(name: str, sig: int, tmp_path: Path, evil_target: EvilTarget) -> None:
    args = _args(name, tmp_path, evil_target)
    proc, _ = _start(args, tmp_path, evil_target, tty=False)
    try:
        assert proc.stderr is not None
        early = _wait_for_output(proc, proc.stderr.fileno())
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    a = classify(Answer(tuple(args), proc.returncode, out.decode(errors="replace"), (early + err).decode(errors="replace")))
    written = [f for f in LONG[name][1] if (tmp_path / "out" / f).is_file() and (tmp_path / "out" / f).stat().st_size]
    left = list((tmp_path / "tmp").iterdir())
    ok = a.exit_code == 0 and bool(a.stdout.strip()) and len(written) == len(LONG[name][1]) and not left
    fault(ok, f"{name} {signal.Signals(sig).name}")
    lost(0 if a.stdout.strip() else 1, f"{name}: report lost to {signal.Signals(sig).name}")
    assert a.exit_code == 0, a.describe()
    assert a.stdout.strip(), f"no report printed: {a.describe()}"
    assert written == LONG[name][1], f"outputs missing: {a.describe()}"
    assert not left, f"temporary files left: {left}"


@pytest.mark.parametrize("name", list(LONG))
def test_hangup_with_the_terminal_gone(name: str, tmp_path: Path, evil_target: EvilTarget) -> None:
    """An SSH disconnect: the pty's other end closes, then SIGHUP; writes fail with EIO."""
    args = _args(name, tmp_path, evil_target)
    proc, master = _start(args, tmp_path, evil_target, tty=True)
    assert master is not None
    try:
        _wait_for_output(proc, master)
        os.close(master)  # the terminal is gone
        proc.send_signal(signal.SIGHUP)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    a = classify(Answer(tuple(args), proc.returncode, "", ""))
    written = [f for f in LONG[name][1] if (tmp_path / "out" / f).is_file()]
    left = list((tmp_path / "tmp").iterdir())
    ok = a.exit_code == 0 and written == LONG[name][1] and not left
    fault(ok, f"{name}: SIGHUP with the terminal gone")
    lost(len(LONG[name][1]) - len(written), f"{name}: outputs lost to a hang-up")
    assert a.exit_code == 0, a.describe()
    assert written == LONG[name][1]
    assert not left, f"temporary files left: {left}"


@pytest.mark.parametrize("sig", [*SIGNALS, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_signal_before_a_result_is_128_plus_n(sig: int) -> None:
    """`ps --interval 60` measures CPU % for a minute before it has a list: no result yet, so 128+N, one line."""
    args = ("ps", "--interval", "60")
    proc = subprocess.Popen([sys.executable, "-m", "obskit", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env())
    try:
        time.sleep(3)  # started and measuring (ps prints nothing before its list)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    a = classify(Answer(args, proc.returncode, out.decode(), err.decode()))
    fault(a.exit_code == 128 + sig, f"ps before a result, {signal.Signals(sig).name}")
    assert a.exit_code == 128 + sig, a.describe()
    assert len(a.error_lines) == 1, a.describe()
