"""The CLI's conventions: version, help, one-line errors and the exit-code table."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import ROOT, run_obskit

from obskit import __version__
from obskit.errors import EXIT_CODE_TABLE, ExitCode, ObskitError


def test_version_both_entry_points() -> None:
    r = run_obskit("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"obskit {__version__}"


def test_help_lists_every_command() -> None:
    r = run_obskit("--help")
    assert r.exit_code == 0
    for name in ("profile", "ps", "stacks", "top", "doctor", "quota", "mem", "gc", "run", "logs", "trace", "demo"):
        assert re.search(rf"^\s+{name}\s", r.stdout, re.M), name


def test_unknown_command_is_one_line_usage_error() -> None:
    r = run_obskit("no-such-command")
    assert r.exit_code == ExitCode.USAGE
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("obskit: error: ")
    assert "Traceback" not in r.stderr


def test_bad_option_is_one_line_usage_error() -> None:
    r = run_obskit("--no-such-option")
    assert r.exit_code == ExitCode.USAGE
    assert r.stderr.count("\n") == 1


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from obskit.commands import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('opentelemetry.sdk.trace', 'google.protobuf', 'psutil', 'typer.rich_utils',"
        " 'rich.markdown') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY []" in out, out


def test_error_one_line_with_hint() -> None:
    e = ObskitError("process 12 not found.", "check the PID with `obskit ps`", pid=12)
    assert e.one_line() == "process 12 not found (check the PID with `obskit ps`)"
    assert e.to_dict()["pid"] == 12


def test_exit_code_doc_matches_table() -> None:
    doc = (ROOT / "docs" / "exit-codes.md").read_text()
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|", doc, re.M)
    documented = {int(code): name for code, name in rows}
    assert documented == {int(code): name for code, name, _ in EXIT_CODE_TABLE}
    assert {int(c) for c, _, _ in EXIT_CODE_TABLE} == {int(c) for c in ExitCode}


def test_reader_that_stops_reading_is_not_a_failure() -> None:
    # `obskit ... | head -1`: stdout is closed before obskit writes; that is exit 0, and silent.
    import os
    import subprocess

    r, w = os.pipe()
    os.close(r)
    proc = subprocess.run([sys.executable, "-m", "obskit", "ps", "--all"], stdout=w, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_command_table_matches_what_modules_register() -> None:
    # `obskit --help` lists COMMANDS without importing the modules; each module must register
    # exactly its name, with the same one-line help.
    from obskit.commands import COMMANDS, load_command

    for name, short_help in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        assert command.get_short_help_str(limit=500) == short_help, name


def test_help_imports_no_command_module() -> None:
    import subprocess

    code = (
        "import sys; from obskit.commands import main\n"
        "main(['--help'])\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith('obskit.commands.') and m != 'obskit.commands._common'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "LOADED []" in out, out


def test_signal_rows_in_the_exit_code_table() -> None:
    """128+N for SIGHUP, SIGINT and SIGTERM before a result; 11 when the result was kept elsewhere."""
    codes = {int(c): name for c, name, _ in EXIT_CODE_TABLE}
    assert codes[129] == "hung up" and codes[130] == "interrupted" and codes[143] == "terminated"
    assert codes[11] == "result kept elsewhere"


def test_error_lines_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    from obskit.commands import main

    code = main(["profile", "show", "/nonexistent/evil\x1b]0;pwned\x07\u202e.json"])
    err = capsys.readouterr().err
    assert code == ExitCode.INPUT
    assert "\x1b" not in err and "\u202e" not in err and "\\x1b" in err
    assert len(err.strip().splitlines()) == 1


def test_sigterm_in_process_ends_like_ctrl_c() -> None:
    """main() turns SIGTERM into the command's Ctrl-C path and then 128+15 when there was no result."""
    import signal
    import subprocess

    code = (
        "import os, signal, threading, sys\n"
        "from obskit.commands import main\n"
        "threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
        "sys.exit(main(['ps', '--interval', '60']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert r.stderr.count("obskit: error:") == 1 and "SIGTERM" in r.stderr


def test_an_interrupt_leaving_a_command_is_reported_not_swallowed(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Typer turns a KeyboardInterrupt that leaves a command into a silent exit 130; obskit's
    main reports it (one line, 128+N) — and after a stream showed lines, it is the normal end (0)."""
    import obskit.commands as cli
    import typer

    from obskit.output import mark_result_shown

    app = typer.Typer()

    @app.command()
    def boom(shown: bool = False) -> None:
        if shown:
            mark_result_shown()
        raise KeyboardInterrupt

    @app.command()
    def other() -> None:
        pass

    monkeypatch.setattr(cli, "build_app", lambda: app)
    assert cli.main(["boom"]) == ExitCode.INTERRUPTED
    err = capsys.readouterr().err
    assert err.count("obskit: error:") == 1 and "interrupted" in err
    assert cli.main(["boom", "--shown"]) == ExitCode.OK
    assert capsys.readouterr().err == ""
    assert cli.main(["boom"]) == ExitCode.INTERRUPTED  # the mark does not outlive its command


def test_a_hang_up_landing_on_a_hung_up_report_is_the_hang_up_alone() -> None:
    """The report hit EIO (terminal gone) and the SIGHUP landed while that error left the
    command: the outcome is the hang-up's (exit 0, the result was there), not an interruption."""
    import subprocess

    code = (
        "import errno, sys, typer\n"
        "import obskit.commands as cli\n"
        "app = typer.Typer()\n"
        "@app.command()\n"
        "def report() -> None:\n"
        "    try:\n"
        "        raise OSError(errno.EIO, 'Input/output error')\n"
        "    except OSError:\n"
        "        raise KeyboardInterrupt\n"
        "@app.command()\n"
        "def other() -> None:\n"
        "    pass\n"
        "cli.build_app = lambda: app\n"
        "sys.exit(cli.main(['report']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and r.stderr == "", r.stderr
