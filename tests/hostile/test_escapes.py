"""Item 2: target strings never reach the terminal raw.

The hostile target's function names, file names, thread names and argv carry an OSC title
sequence, SGR, a C1 CSI and a bidi override; log lines, span names and attributes carry them
too.  Every command that shows them must print them inert: no C0/C1 control (but tab and
newline), DEL, bidi override or zero-width character on stdout or stderr, in text or --json.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostile.conftest import EvilTarget
from hostile.hostile_lib import EVIL, env, fault, raw_controls, run

# name -> args; {pid} the hostile target, {prof} a profile recorded from it, {spans} a span file, {log} a log file.
SHOWING = {
    "stacks": ["stacks", "--pid", "{pid}"],
    "stacks --locals": ["stacks", "--pid", "{pid}", "--locals"],
    "stacks --watch": ["stacks", "--pid", "{pid}", "--watch", "2", "--interval", "0.3"],
    "stacks --json": ["stacks", "--pid", "{pid}", "--json"],
    "profile record": ["profile", "record", "--pid", "{pid}", "-d", "2"],
    "profile show": ["profile", "show", "{prof}"],
    "profile show --json": ["profile", "show", "{prof}", "--json"],
    "profile diff": ["profile", "diff", "{prof}", "{prof}"],
    "top --once": ["top", "--pid", "{pid}", "--once", "-d", "1"],
    "gc": ["gc", "--pid", "{pid}"],
    "mem": ["mem", "--pid", "{pid}", "--types"],
    "mem top": ["mem", "top", "--pid", "{pid}", "--wait", "0.5"],
    "ps": ["ps"],
    "ps --pid": ["ps", "--pid", "{pid}"],
    "ps --json": ["ps", "--json"],
    "doctor": ["doctor", "--pid", "{pid}"],
    "quota": ["quota", "--pid", "{pid}", "--window", "0"],
    "trace show": ["trace", "show", "{spans}"],
    "logs": ["logs", "{log}"],
    "logs --json": ["logs", "--json", "{log}"],
    "logs --summary": ["logs", "--summary", "{log}"],
}

SHOWS_NAMES = {"stacks", "stacks --locals", "stacks --watch", "stacks --json", "profile record", "profile show",
               "profile show --json", "top --once", "mem top", "ps", "ps --pid", "ps --json", "trace show", "logs",
               "logs --json"}


@pytest.fixture(scope="module")
def files(evil_target: EvilTarget, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("escapes")
    prof = d / "evil.speedscope.json"
    subprocess.run([sys.executable, "-m", "obskit", "profile", "record", "--pid", str(evil_target.pid), "-d", "2",
                    "-o", str(prof)], check=True, capture_output=True, env=env(**evil_target.env), timeout=120)
    spans = d / "spans.json"
    subprocess.run([sys.executable, "-m", "obskit", "trace", "exec", "-n", EVIL, "-a", f"k={EVIL}", "-o", str(spans),
                    "--", "/bin/sh", "-c", "true", EVIL], check=True, capture_output=True, env=env(), timeout=60)
    log = d / "app.log"
    log.write_text(
        f'{{"ts": "2026-01-01T00:00:00Z", "level": "error", "msg": "{EVIL.encode("unicode_escape").decode()}"}}\n'
        f"2026-01-01T00:00:01Z ERROR {EVIL} raw line\n"
        f"{EVIL}\r\n"
    )
    return {"prof": str(prof), "spans": str(spans), "log": str(log)}


@pytest.mark.parametrize("name", list(SHOWING))
def test_target_strings_are_inert(name: str, evil_target: EvilTarget, files: dict[str, str]) -> None:
    args = [a.format(pid=evil_target.pid, **files) for a in SHOWING[name]]
    a = run(*args, extra_env=evil_target.env, timeout=120)
    bad = raw_controls(a.stdout + a.stderr)
    fault(not bad, f"{name}: raw {bad}")
    assert a.exit_code == 0, a.describe()
    assert not bad, f"raw controls {bad!r} in the output of {name}: {(a.stdout + a.stderr)[:2000]!r}"
    if name in SHOWS_NAMES:
        # The hostile names were shown (escaped), not dropped.
        assert "evil" in a.stdout, a.stdout[:2000]


def test_evil_names_reach_the_target(evil_target: EvilTarget) -> None:
    """The target really carries the sequences (a test that cannot fail is a defect)."""
    cmdline = Path(f"/proc/{evil_target.pid}/cmdline").read_bytes()
    assert b"\x1b]0;pwned\x07" in cmdline


def test_logs_raw_is_exact_into_a_pipe_and_inert_on_a_terminal(files: dict[str, str]) -> None:
    import os
    import pty

    piped = subprocess.run([sys.executable, "-m", "obskit", "logs", "--raw", files["log"]], capture_output=True,
                           env=env(), timeout=60)
    assert piped.returncode == 0
    assert EVIL.encode() in piped.stdout  # byte-exact for grep and jq
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "obskit", "logs", "--raw", files["log"]], stdout=slave,
                            stderr=slave, stdin=subprocess.DEVNULL, env=env())
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(60) == 0
    text = out.decode("utf-8", "replace").replace("\r\n", "\n")  # the pty's own line discipline adds \r
    bad = raw_controls(text)
    fault(not bad, f"logs --raw on a terminal: raw {bad}")
    assert not bad, text
    assert "evil" in text
