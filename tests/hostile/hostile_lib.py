"""Shared by the hostile suite: running obskit as an attacker's victim would, and counting answers.

Every obskit run of the suite goes through :func:`run` (or :func:`record`), which classifies the
answer: a documented exit code with at most one ``obskit: error:`` line and no traceback is a
"one-line-and-code answer"; exit 1, a traceback or an undocumented code is an internal error; a
run past its timeout is a hang.  Tests that inject a fault count it with :func:`fault`, and
anything collected that did not reach an output with :func:`lost`.  ``conftest.py`` prints the
counts at the end of the session.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from obskit.errors import EXIT_CODE_TABLE

ROOT = Path(__file__).resolve().parents[2]
EVIL = "evil\x1b]0;pwned\x07\x1b[31m\u202eRTL\x9b2J"
NOBODY = 65534
DOCUMENTED = {int(code) for code, _, _ in EXIT_CODE_TABLE}
# Characters that must never reach a terminal raw (C0 but tab/newline, DEL, C1, bidi, zero-width).
FORBIDDEN = {chr(c) for c in (*range(0, 9), *range(11, 32), 0x7F, *range(0x80, 0xA0))} | {
    "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\u200e", "\u200f",
}

COUNTS: Counter[str] = Counter()
FAILURES: list[str] = []


@dataclass
class Answer:
    args: tuple[str, ...]
    exit_code: int | None  # None: killed at the timeout (a hang)
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("obskit: error:")]

    @property
    def kind(self) -> str:
        if self.exit_code is None:
            return "hang"
        if self.exit_code == 1 or "Traceback (most recent call last)" in self.stderr or self.exit_code not in DOCUMENTED:
            return "internal"
        if self.exit_code != 0 and len(self.error_lines) != 1:
            return "internal"  # a failure must say what happened, in one line
        return "answer"

    def describe(self) -> str:
        return f"obskit {' '.join(self.args)!r} -> {self.exit_code}: {self.stderr.strip()[-300:]!r}"


def classify(a: Answer) -> Answer:
    COUNTS["inputs tried"] += 1
    kind = a.kind
    COUNTS[{"hang": "hangs", "internal": "internal errors", "answer": "one-line-and-code answers"}[kind]] += 1
    if kind != "answer":
        FAILURES.append(a.describe())
    return a


def fault(survived: bool, what: str = "") -> None:
    COUNTS["faults injected"] += 1
    if survived:
        COUNTS["faults survived"] += 1
    else:
        FAILURES.append(f"fault not survived: {what}")


def lost(count: int, what: str = "") -> None:
    """Record data lost silently (the goal is none; every case is counted, never ignored)."""
    COUNTS["data lost"] += count
    if count:
        FAILURES.append(f"data lost: {what}")


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "120", "OBSKIT_WIDTH": "120", "PYTHONPATH": str(ROOT), **extra}


def limit_memory(limit: int = 512 * 1024 * 1024) -> None:
    """preexec_fn: RLIMIT_AS for one fuzzed input."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(*args: str, timeout: float = 60, stdin: str | None = None, user: int | None = None,
        extra_env: dict[str, str] | None = None, cwd: str | None = None, memory: int | None = None) -> Answer:
    """``obskit ARGS`` in a subprocess (as ``user`` via setpriv), classified and counted."""
    cmd = [sys.executable, "-m", "obskit", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout, env=env(**(extra_env or {})), cwd=cwd,
            input=stdin.encode() if stdin is not None else None,
            stdin=subprocess.DEVNULL if stdin is None else None,
            preexec_fn=(lambda: limit_memory(memory)) if memory else None,
        )
    except subprocess.TimeoutExpired as e:
        return classify(Answer(args, None, _text(e.stdout), _text(e.stderr)))
    return classify(Answer(args, proc.returncode, _text(proc.stdout), _text(proc.stderr)))


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b if isinstance(b, str) else b.decode("utf-8", "surrogateescape")


def raw_controls(text: str) -> list[str]:
    """The forbidden characters present in ``text`` (terminal output must have none)."""
    return sorted({c for c in text if c in FORBIDDEN})


def as_nobody(*cmd: str) -> None:
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd], check=True)
