"""The base modules every command shares: durations, inert text, redaction, safe file writes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obskit.durations import parse_duration, parse_duration_ns
from obskit.errors import InputError, PermissionDenied, UsageError
from obskit.inert import inert
from obskit.redact import redact_argv, redact_env, redact_text, redact_url
from obskit.safefile import preflight, write_bytes


@pytest.mark.parametrize(
    "text, seconds",
    [("90", 90), ("90s", 90), ("250ms", 0.25), ("5m", 300), ("1.5h", 5400), ("1d", 86400), ("2w", 1209600),
     (" 3 s ", 3), ("10min", 600)],
)
def test_one_duration_grammar(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5y", "-5s", "nan", "inf", "1e400", "0", "5 5s"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_signed_durations_in_exact_nanoseconds() -> None:
    assert parse_duration_ns("-5s", signed=True) == -5 * 10**9
    assert parse_duration_ns("+1.000000001s", signed=True) == 1_000_000_001
    assert parse_duration("0", allow_zero=True) == 0


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("evil\x1b]0;pwned\x07\x1b[31m", "evil\\x1b]0;pwned\\x07\\x1b[31m"),
        ("a\u202eb\u200bc\ufeff", "a\\u202eb\\u200bc\\ufeff"),
        ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
        ("tab\tnl\ncr\r", "tab\\x09nl\\x0acr\\x0d"),
        ("plain ünïcode → ok", "plain ünïcode → ok"),
    ],
)
def test_inert_makes_controls_visible(raw: str, shown: str) -> None:
    assert inert(raw) == shown


@given(st.text())
def test_inert_output_is_printable(text: str) -> None:
    out = inert(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u2066\u200b" for c in out)


def test_console_output_is_inert(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.table import Table

    from obskit import output

    output._consoles.clear()
    t = Table()
    t.add_column("function")
    t.add_row("evil\x1b]0;pwned\x1b[2J")
    output.console().print(t)
    output.warn("thread \x1b[31mred")
    out, err = capsys.readouterr()
    assert "\x1b" not in out and "\\x1b]0;pwned" in out
    assert "\\x1b[31mred" in err
    output._consoles.clear()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["x", "https://TOKENabc123@host/p"], ["x", "https://***@host/p"]),
        (["redis-cli", "-u", "redis://:PASS@h:6379"], ["redis-cli", "-u", "redis://:***@h:6379"]),
        (["curl", "-u", "user:PASS", "http://h"], ["curl", "-u", "user:***", "http://h"]),
        (["ssh-tool", "--private-key=abcdef"], ["ssh-tool", "--private-key=***"]),
        (["x", "Bearer abcdef123"], ["x", "Bearer ***"]),
        (["mysql", "-pS3cret", "-P", "S3cret"], ["mysql", "-p***", "-P", "***"]),
        (["gsutil", "--sig", "abcdef"], ["gsutil", "--sig", "***"]),
        (["app", "-p", "8080", "-p8080"], ["app", "-p", "8080", "-p8080"]),
        (["gunicorn", "-p", "/run/app.pid", "app:wsgi"], ["gunicorn", "-p", "/run/app.pid", "app:wsgi"]),
        (["celery", "-A", "proj", "worker", "-P", "prefork"], ["celery", "-A", "proj", "worker", "-P", "prefork"]),
        (["git", "clone", "ssh://git@host/x"], ["git", "clone", "ssh://git@host/x"]),
    ],
)
def test_argv_redaction_by_shape(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def test_env_and_text_redaction() -> None:
    env = redact_env({"DB_PASSWORD": "x", "DATABASE_URL": "postgres://u:p@h/d", "PATH": "/bin", "KEYBOARD": "us",
                      "AWS_SECRET_ACCESS_KEY": "k", "GITHUB_TOKEN": "t"})
    assert env == {"DB_PASSWORD": "***", "DATABASE_URL": "postgres://u:***@h/d", "PATH": "/bin", "KEYBOARD": "us",
                   "AWS_SECRET_ACCESS_KEY": "***", "GITHUB_TOKEN": "***"}
    assert redact_url("http://user:pw@collector:4318") == "http://user:***@collector:4318"
    assert redact_text("Authorization: Basic dXNlcjpwdw==") == "Authorization: ***"


# --- safe writes ---------------------------------------------------------------------------

def _as_nobody(*cmd: str) -> None:
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd], check=True)


@pytest.fixture
def sticky() -> Iterator[Path]:
    """A world-writable sticky directory other users can reach (pytest's tmp_path is 0700)."""
    top = Path(tempfile.mkdtemp(prefix="obskit-test-sticky-", dir="/tmp"))
    os.chmod(top, 0o755)
    d = top / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant files as another user")
def test_planted_symlink_in_sticky_dir_is_refused(sticky: Path) -> None:
    secret = sticky.parent / "secret"
    secret.write_text("root only\n")
    os.chmod(secret, 0o600)
    _as_nobody("ln", "-s", str(secret), str(sticky / "profile.html"))
    with pytest.raises(PermissionDenied):
        preflight(sticky / "profile.html")
    with pytest.raises(PermissionDenied):
        write_bytes(sticky / "profile.html", b"<html>")
    assert secret.read_text() == "root only\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant files as another user")
def test_planted_fifo_is_refused(sticky: Path) -> None:
    _as_nobody("mkfifo", str(sticky / "out.json"))
    with pytest.raises(PermissionDenied):
        write_bytes(sticky / "out.json", b"{}")


def test_own_symlink_is_followed_and_mode_kept(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    os.chmod(real, 0o600)
    (tmp_path / "link.txt").symlink_to(real)
    write_bytes(tmp_path / "link.txt", b"new")
    assert real.read_text() == "new" and stat.S_IMODE(real.stat().st_mode) == 0o600
    assert (tmp_path / "link.txt").is_symlink()


def test_fifo_without_reader_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="no reader"):
        write_bytes(fifo, b"x")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    for _ in range(200):  # the reader opens the FIFO first
        try:
            write_bytes(fifo, b"data")
            break
        except InputError:
            threading.Event().wait(0.01)
    reader.join(5)
    assert got == [b"data"]


def test_preflight_catches_bad_outputs_before_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        preflight(tmp_path / "missing" / "x.html")
    with pytest.raises(InputError, match="directory"):
        preflight(tmp_path)
    preflight(tmp_path / "ok.html")
    assert list(tmp_path.iterdir()) == []
