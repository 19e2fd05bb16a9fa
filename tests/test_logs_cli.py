"""`obskit logs` end to end: real files, real subprocesses, exact counts."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest
from conftest import CAPTURED, Result, Target, run_obskit

from obskit.errors import ExitCode

MIXED = CAPTURED / "logs" / "mixed.log"


def records(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_mixed_formats_exact_counts(cli: Callable[..., Result]) -> None:
    r = cli("logs", str(MIXED), "--json")
    assert r.exit_code == 0, r.stderr
    recs = records(r.stdout)
    assert len(recs) == 19  # 23 lines: the 4 traceback lines belong to the record before them
    assert all(rec["schema"] == "obskit.log/1" and rec["source"] == "mixed.log" for rec in recs)
    assert Counter(rec["level"] for rec in recs) == {"error": 7, "info": 5, "warning": 2, "debug": 2, None: 2,
                                                      "critical": 1}
    assert Counter(rec["format"] for rec in recs) == {"json": 10, "python": 5, "logfmt": 2, "plain": 2}
    errors = [rec for rec in recs if rec["level"] in ("error", "critical")]
    assert Counter(rec["trace_id"] for rec in errors if rec["trace_id"]) == {
        "4bf92f3577b34da6a3ce929d0e0e4736": 2, "a1b2c3d4e5f60718293a4b5c6d7e8f90": 1,
        "0af7651916cd43dd8448eb211c80319c": 1}


def test_level_filter_json_counts_exactly(cli: Callable[..., Result]) -> None:
    r = cli("logs", str(MIXED), "--level", "error", "--json")
    assert r.exit_code == 0
    assert len(r.stdout.splitlines()) == 8  # 7 error + 1 critical; nothing else on stdout
    assert len(records(cli("logs", str(MIXED), "--level", "critical", "--json").stdout)) == 1
    assert len(records(cli("logs", str(MIXED), "--level", "warning", "--json").stdout)) == 10


def test_filters_combine(cli: Callable[..., Result]) -> None:
    recs = records(cli("logs", str(MIXED), "--json", "--where", "status>=500").stdout)
    assert sorted(int(str(x["attrs"]["status"])) for x in recs) == [500, 502, 503, 504]  # type: ignore[index]
    recs = records(cli("logs", str(MIXED), "--json", "--where", "status>=500", "--where", "msg~timeout").stdout)
    assert [x["message"] for x in recs] == ["upstream timeout"]
    recs = records(cli("logs", str(MIXED), "--json", "--where", "user=alice").stdout)
    assert len(recs) == 2
    recs = records(cli("logs", str(MIXED), "--json", "--trace-id", "4BF92F3577B34DA6A3CE929D0E0E4736").stdout)
    assert [x["message"] for x in recs] == ["user logged in", "payment failed", "upstream timeout"]
    recs = records(cli("logs", str(MIXED), "--json", "--trace-id",
                       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").stdout)
    assert [x["span_id"] for x in recs] == ["b7ad6b7169203331"]
    recs = records(cli("logs", str(MIXED), "--json", "--grep", "pino").stdout)
    assert len(recs) == 2
    recs = records(cli("logs", str(MIXED), "--json", "--since", "2024-05-14T12:00:01Z",
                       "--until", "2024-05-14T12:00:02.1Z").stdout)
    assert [x["message"] for x in recs] == ["request done", "cache lookup", "GET /health 200", "out of memory"]
    r = cli("logs", str(MIXED), "--raw", "--level", "critical")
    assert r.stdout == "2024-05-14 12:00:02,100 CRITICAL app.api: out of memory\n"


def test_tracebacks_belong_to_their_record(cli: Callable[..., Result]) -> None:
    recs = records(cli("logs", str(MIXED), "--json", "--level", "error", "--grep", "^ERROR:").stdout)
    assert len(recs) == 1
    assert recs[0]["message"] == "job crashed with timeout"
    assert recs[0]["attrs"] == {"exc_info": 'Traceback (most recent call last):\n  File "worker.py", line 10, in run\n'
                                            "    do()\nTimeoutError: timed out"}
    raw = cli("logs", str(MIXED), "--raw", "--where", "logger=app.worker", "--level", "error").stdout
    assert raw.splitlines() == MIXED.read_text().splitlines()[11:16]
    human = cli("logs", str(MIXED), "--level", "error", "--no-color").stdout
    assert "\n                   TimeoutError: timed out\n" in human


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--where", "status>>5"], "bad --where expression"),
        (["--where", "msg~("], "bad regular expression"),
        (["--level", "loud"], "unknown level"),
        (["--since", "soonish"], "cannot read --since"),
        (["--grep", "(["], "bad --grep"),
        (["--on-full", "sometimes"], "--on-full"),
        (["--raw", "--json"], "--raw and --json"),
    ],
)
def test_bad_input_is_one_line_usage_error(cli: Callable[..., Result], args: list[str], fragment: str) -> None:
    r = cli("logs", str(MIXED), *args)
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and fragment in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_missing_file_and_empty_glob(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("logs", str(tmp_path / "nope.log"))
    assert r.exit_code == 9 and "no such file" in r.stderr
    r = cli("logs", str(tmp_path / "*.log"))
    assert r.exit_code == 9 and "no files match" in r.stderr


def test_several_sources_labelled(cli: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "app.log").write_text('{"level":"info","msg":"from a"}\n')
    (tmp_path / "b" / "app.log").write_text("level=error msg=\"from b\"\n")
    (tmp_path / "api.log").write_text("WARNING:api:from api\n")
    recs = records(cli("logs", str(tmp_path / "*" / "app.log"), str(tmp_path / "api.log"), "--json").stdout)
    assert sorted((x["source"], x["message"]) for x in recs) == [("a/app.log", "from a"), ("api.log", "from api"),
                                                                 ("b/app.log", "from b")]
    human = cli("logs", str(tmp_path / "*" / "app.log"), "--no-color").stdout
    assert "a/app.log" in human and "b/app.log" in human


def test_stdin_pipe() -> None:
    data = MIXED.read_text()
    r = run_obskit("logs", "--level", "error", "--json", input=data)
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 8
    assert all(json.loads(x)["source"] == "stdin" for x in r.stdout.splitlines())
    r = run_obskit("logs", "-", "--summary", "--json", input=data)
    s = json.loads(r.stdout)
    assert s["schema"] == "obskit.logs-summary/1"
    assert s["by_level"]["error"] == 7 and s["unparsed"] == 2 and s["lines"] == 23


def test_one_megabyte_line_and_invalid_utf8(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "big.log"
    big = b'{"level":"error","msg":"' + b"A" * (1 << 20) + b'"}'
    p.write_bytes(b'{"level":"info","msg":"before"}\n' + big + b'\n\xff\xfe{"level":"error"}\n'
                  + b'{"level":"error","msg":"after \xe2\x28\xa1"}\n')
    r = cli("logs", str(p), "--json")
    assert r.exit_code == 0
    recs = records(r.stdout)
    assert len(recs) == 4
    assert recs[1]["capped"] is True and recs[1]["format"] == "plain" and len(str(recs[1]["message"])) == 65536
    assert recs[3]["message"] == "after \ufffd(\ufffd" and recs[3]["level"] == "error"
    assert "1 capped" in r.stderr and "2 invalid utf-8" in r.stderr
    r = cli("logs", str(p), "--summary", "--json", "--max-line-bytes", str(2 << 20))
    s = json.loads(r.stdout)
    assert s["capped"] == 0 and s["invalid_utf8"] == 2 and s["by_level"]["error"] == 2


def test_summary_json(cli: Callable[..., Result]) -> None:
    r = cli("logs", str(MIXED), "--summary", "--json")
    s = json.loads(r.stdout)
    assert s["lines"] == 23 and s["records"] == 19 and s["unparsed"] == 2
    assert s["by_level"] == {"debug": 2, "info": 5, "warning": 2, "error": 7, "critical": 1, "none": 2}
    assert s["top_error_traces"][0] == {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "errors": 2,
                                        "first_seen": "2024-05-14T12:00:00.300Z",
                                        "last_seen": "2024-05-14T12:00:00.400Z", "example": "payment failed"}
    assert s["first_time"] == "2024-05-14T12:00:00.100Z"
    assert s["untimed"] == 5
    assert sum(sum(b["counts"].values()) for b in s["histogram"]) == 19 - 5
    human = cli("logs", str(MIXED), "--summary").stdout
    assert "top messages" in human and "by level" in human


def test_human_output_escapes_terminal_sequences(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "evil.log"
    p.write_text('{"level":"error","msg":"\\u001b]0;pwned\\u0007 \\u001b[2J"}\nplain \x1b[31mred\n')
    r = cli("logs", str(p), "--color")
    assert "\x1b]0" not in r.stdout and "\x1b[2J" not in r.stdout and "\x1b[31mred" not in r.stdout
    assert "\\x1b]0;pwned\\x07" in r.stdout


def test_pid_reads_open_log_files(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    t = spawn_python(
        f"""
        import logging, sys, time
        logging.basicConfig(filename={str(log)!r}, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("svc").error("database unreachable")
        logging.getLogger("svc").info("retrying")
        logging.getLogger().handlers[0].flush()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    r = run_obskit("logs", "--pid", str(t.pid), "--json")
    assert r.exit_code == 0, r.stderr
    recs = records(r.stdout)
    assert [(x["source"], x["level"], x["message"]) for x in recs] == [
        ("svc.log", "error", "database unreachable"), ("svc.log", "info", "retrying")]
    assert "stdout of" in r.stderr  # its stdout is a pipe: said so, with what to do


def test_pid_errors() -> None:
    r = run_obskit("logs", "--pid", str(2**22 + 12345))
    assert r.exit_code == 4 and "not found" in r.stderr
    r = run_obskit("logs", "--pid", str(os.getpid()))
    # pytest's own process: its stdout/stderr are pipes or files, never a traceback
    assert r.exit_code in (0, 9) and "Traceback" not in r.stderr


def test_help_is_light() -> None:
    code = ("import sys; from obskit.commands import main; main(['logs', '--help']); "
            "bad = [m for m in ('rich', 'opentelemetry', 'google.protobuf', 'orjson', 'psutil') if m in sys.modules]; "
            "print('HEAVY', bad)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY []" in out and "--where" in out


def test_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """`obskit logs ... | head -1`: the reader going away ends obskit quietly with 0."""
    import subprocess

    p = tmp_path / "many.log"
    p.write_text("".join(f'{{"level":"info","msg":"m {i}"}}\n' for i in range(50000)))
    proc = subprocess.Popen([sys.executable, "-m", "obskit", "logs", str(p), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["message"] == "m 0"
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 0, err
    assert b"Traceback" not in err and b"error" not in err


def test_closed_stdin_and_stdout_are_one_line_or_quiet(tmp_path: Path) -> None:
    import subprocess

    log = tmp_path / "app.log"
    log.write_text('{"level": "error", "msg": "boom"}\n')

    def run(args: list[str], close: int) -> subprocess.CompletedProcess[str]:
        # The other standard streams are pipes; `close` is closed in the child before obskit starts.
        pipes = {0: subprocess.DEVNULL, 1: subprocess.PIPE}
        return subprocess.run([sys.executable, "-m", "obskit", "logs", *args], text=True, stderr=subprocess.PIPE,
                              stdin=None if close == 0 else pipes[0], stdout=None if close == 1 else pipes[1],
                              preexec_fn=lambda: os.close(close), timeout=60)

    r = run(["-"], 0)  # `obskit logs - <&-`: the reader thread died with a traceback
    assert r.returncode == ExitCode.INPUT and r.stderr.count("\n") == 1 and "stdin is closed" in r.stderr
    r = run([str(log)], 1)  # `obskit logs app.log >&-`: was an internal error
    assert r.returncode == 0 and "Traceback" not in r.stderr and "1 lines" in r.stderr


def test_pid_of_a_zombie_says_it_exited(zombie_pid: str) -> None:
    r = run_obskit("logs", "--pid", zombie_pid)
    assert r.exit_code == ExitCode.TARGET_EXITED and "zombie" in r.stderr and r.stderr.count("\n") == 1


def _big_mixed_file(path: Path, min_bytes: int = 17 << 20) -> int:
    """MIXED (json, logfmt, python text with tracebacks, plain) repeated past the size at which
    two processes read it, with every spelling of error-or-worse; returns the repeats."""
    block = MIXED.read_bytes()
    extra = (b'{"level":"ERROR","msg":"upper"}\n{"severity":"critical","msg":"crit"}\n'
             b'{"levelno":40,"msg":"py"}\n{"level":"\\u0065rror","msg":"escaped"}\n')
    unit = block + extra
    n = min_bytes // len(unit) + 1
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(unit)
    return n


@pytest.mark.slow
def test_two_processes_print_what_one_does(tmp_path: Path) -> None:
    """Byte ranges read by a worker process: the same records, in the same order, the same summary;
    no level spelling is lost by the prefilter, tracebacks stay with their records across the cut."""
    p = tmp_path / "big.log"
    n = _big_mixed_file(p)
    one = {"OBSKIT_LOGS_WORKERS": "1"}
    for args in (["--level", "error", "--json"], ["--json"], ["--summary", "--json"]):
        both = run_obskit("logs", str(p), *args)
        alone = run_obskit("logs", str(p), *args, env=one)
        assert both.exit_code == 0 and alone.exit_code == 0, both.stderr + alone.stderr
        assert both.stdout == alone.stdout, args
    errors = records(run_obskit("logs", str(p), "--level", "error", "--json").stdout)
    assert len(errors) == n * (8 + 4)  # 7 error + 1 critical in MIXED, 4 more spellings
    assert Counter(str(r["message"]) for r in errors)["escaped"] == n
    s = json.loads(run_obskit("logs", str(p), "--summary", "--json").stdout)
    assert s["lines"] == n * 27 and s["records"] == n * 23
    assert s["by_level"]["error"] == n * 10 and s["by_level"]["critical"] == n * 2


def test_since_uses_the_one_duration_grammar(cli: Callable[..., Result], tmp_path: Path) -> None:
    import time

    p = tmp_path / "t.log"
    now = time.time()
    p.write_text(json.dumps({"ts": now - 2 * 86400, "level": "info", "msg": "old"}) + "\n"
                 + json.dumps({"ts": now - 3600, "level": "info", "msg": "recent"}) + "\n")
    for since in ("1d", "1d ago", "2h", "1w"):
        got = [x["message"] for x in records(cli("logs", str(p), "--json", "--since", since).stdout)]
        assert got == (["recent"] if since != "1w" else ["old", "recent"]), since
    r = cli("logs", str(p), "--since", "5 parsecs ago")
    assert r.exit_code == 2 and "unknown unit" in r.stderr


def test_padded_64_bit_trace_ids_stay_distinct(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text("".join(json.dumps({"level": "error", "msg": "m", "trace_id": f"{i:032x}"}) + "\n"
                         for i in (0xA1, 0xB2)) + json.dumps({"level": "error", "msg": "w",
                                                                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}) + "\n")
    human = cli("logs", str(p), "--no-color").stdout.splitlines()
    assert "trace=00000000000000a1" in human[0] and "trace=00000000000000b2" in human[1]
    assert "trace=4bf92f3577b34da6a3ce929d0e0e4736" in human[2]


def test_summary_histogram_shows_the_whole_range(cli: Callable[..., Result], tmp_path: Path) -> None:
    """94 one-second buckets: every one is drawn (rebucketed to 40 rows at most), from the first
    record's time to the last; a uniformly random error stream reports no burst."""
    import random

    rnd = random.Random(3)
    p = tmp_path / "t.log"
    t0 = 1715688000
    with open(p, "w") as f:
        for i in range(94 * 20):
            f.write(json.dumps({"ts": t0 + i / 20, "level": "error" if rnd.random() < 0.05 else "info",
                                "msg": "m"}) + "\n")
    s = json.loads(cli("logs", str(p), "--summary", "--json").stdout)
    assert len(s["histogram"]) == 94 and s["bursts"] == []
    human = cli("logs", str(p), "--summary").stdout
    rows = [line for line in human.splitlines() if line[:2] == "12" and line[2] == ":"]
    assert 24 <= len(rows) <= 40
    assert rows[0].startswith("12:00:00") and "94 buckets of 1s shown 3 to a row" in human
    total = sum(int(line.split()[1] if line.split()[1].isdigit() else line.split()[2]) for line in rows)
    assert total == 94 * 20
