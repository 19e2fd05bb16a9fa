"""Item 10: bad input to every command is one line and a documented exit code, never a traceback.

A table: each row is a command line and the exit codes it may give (None: any documented
non-zero code with exactly one ``obskit: error:`` line).  Rows are generated over every
command for the classes that apply to it (unknown option, PIDs that are no process or no
Python, non-finite and negative durations, input files that are missing, a directory, empty,
garbage, a FIFO without a writer, /dev/zero).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostile.hostile_lib import run

COMMANDS = ["demo", "profile record", "profile show", "profile diff", "ps", "stacks", "top", "doctor", "quota", "mem",
            "mem top", "mem diff", "gc", "run", "logs", "trace exec", "trace show", "trace status", "trace flush",
            "trace span", "trace event"]
PID_COMMANDS = {"profile record": ["-d", "1"], "stacks": [], "top": ["--once", "-d", "1"], "quota": ["--window", "0"],
                "mem": [], "mem top": ["--wait", "0"], "mem diff": ["--interval", "0.2"], "gc": [], "doctor": [],
                "ps": []}
BAD_PIDS = {"zero": "0", "negative": "-1", "huge": "99999999999", "not a number": "abc", "no such process": "4194000",
            "init (not Python)": "1"}
DURATIONS = {
    "profile record": ["--pid", "1", "-d"], "top": ["--pid", "1", "--once", "-d"], "quota": ["--pid", "1", "--window"],
    "mem": ["--pid", "1", "--watch"], "gc": ["--pid", "1", "-d"], "stacks": ["--pid", "1", "--watch", "3", "--interval"],
    "demo": ["-d"], "ps": ["--interval"], "mem diff": ["--pid", "1", "--interval"],
}
BAD_DURATIONS = ["nan", "inf", "-1", "1e400", "-inf", "1e309s", "x", ""]
READERS = {"profile show": [], "profile diff": ["{good}"], "trace show": [], "logs": []}

Row = tuple[str, list[str], "set[int] | None"]


def _rows() -> list[Row]:
    rows: list[Row] = []
    for c in COMMANDS:
        if c in ("run", "trace exec"):
            continue  # they run what follows: `run --bogus` looks for a command named --bogus
        rows.append((f"{c} --bogus", [*c.split(), "--bogus-option"], {2}))
    for c, extra in PID_COMMANDS.items():
        for what, pid in BAD_PIDS.items():
            rows.append((f"{c} --pid {what}", [*c.split(), "--pid", pid, *extra], None))
    rows.extend((f"{c} duration {d!r}", [*c.split(), *prefix, d], {2, 4, 5, 6, 8, 10})
                for c, prefix in DURATIONS.items() for d in BAD_DURATIONS)
    rows.append(("profile record -- no such command", ["profile", "record", "--", "/nonexistent/cmd"], {4}))
    rows.append(("logs -n -1", ["logs", "-n", "-1", "{empty}"], {2}))
    rows.append(("logs --where garbage", ["logs", "--where", "status>>>=", "{empty}"], {2}))
    rows.append(("logs --grep bad regex", ["logs", "--grep", "(", "{empty}"], {2}))
    rows.append(("logs --since garbage", ["logs", "--since", "yesterday-ish", "{empty}"], {2}))
    rows.append(("mem --fail-on garbage", ["mem", "--pid", "1", "--watch", "1s", "--fail-on", "x"], {2}))
    rows.append(("mem -o not html", ["mem", "--pid", "1", "-o", "{tmp}/x.txt"], {2}))
    rows.append(("profile record -f garbage", ["profile", "record", "--pid", "1", "-o", "{tmp}/x", "-f", "nope"], {2}))
    rows.append(("run without command", ["run"], {2}))
    rows.append(("trace span bad start", ["trace", "span", "-n", "x", "--start", "when"], {2, 9}))
    rows.append(("trace exec bad timeout", ["trace", "exec", "--export-timeout", "nan", "--", "true"], {2}))
    for c, extra in READERS.items():
        for what in ("missing", "directory", "empty", "garbage", "fifo", "devzero", "nul", "utf16"):
            if c == "logs" and what in ("fifo", "devzero", "empty", "garbage", "nul", "utf16"):
                continue  # logs reads any stream, for ever with -f: these are inputs, not errors
            rows.append((f"{c} {what}", [*c.split(), *extra, "{" + what + "}"], {9}))
    return rows


# The item 10 rows.
ITEM_10 = {
    "trace exec --bogus -- true": (["trace", "exec", "--bogus", "--", "true"], {2}),
    "run --bogus -- true": (["run", "--bogus", "--", "true"], {2}),
    "profile record -- python3 -c pass": (["profile", "record", "--", "python3", "-c", "pass"], {8}),
}



ROWS = [pytest.param(*r, id=r[0]) for r in _rows()] + [pytest.param(n, a, c, id=n) for n, (a, c) in ITEM_10.items()]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "garbage").write_bytes(os.urandom(4096))
    (tmp_path / "nul").write_bytes(b"\0" * 100000)
    (tmp_path / "utf16").write_bytes("{\"a\": 1}".encode("utf-16"))
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")  # nobody ever writes: a reader must not wait for ever
    good = Path(__file__).resolve().parents[1] / "data" / "profile" / "pyspy-speedscope.json"
    return {"tmp": str(tmp_path), "empty": str(tmp_path / "empty"), "garbage": str(tmp_path / "garbage"),
            "nul": str(tmp_path / "nul"), "utf16": str(tmp_path / "utf16"), "directory": str(tmp_path / "dir"),
            "fifo": str(tmp_path / "fifo"), "missing": str(tmp_path / "missing"), "devzero": "/dev/zero",
            "good": str(good)}


@pytest.mark.parametrize(("name", "args", "codes"), ROWS)
def test_bad_input_is_one_line(name: str, args: list[str], codes: set[int] | None, inputs: dict[str, str]) -> None:
    a = run(*[x.format(**inputs) for x in args], timeout=60, memory=1024 * 1024 * 1024, stdin="")
    assert a.kind == "answer", a.describe()
    if codes is not None:
        assert a.exit_code in codes, a.describe()
    else:
        assert a.exit_code != 0 or name.endswith("init (not Python)"), a.describe()
    if a.exit_code != 0:
        assert len(a.error_lines) == 1, a.describe()
