"""Item 1: every command with an output file, against a symlink or FIFO another user planted.

uid 65534 plants ``OUT`` in a world-writable sticky directory (as in /tmp): a symlink to a
root-only 0600 file, or a FIFO.  Root's obskit must refuse with one line (exit 6), leave the
victim as it was, never block on the FIFO, and never write through the link.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

import pytest

from hostile.conftest import EvilTarget
from hostile.hostile_lib import ROOT, Answer, as_nobody, fault, lost, run

DATA = ROOT / "tests" / "data" / "profile"
SPEEDSCOPE = str(DATA / "pyspy-speedscope.json")

# name -> (args with {out} for the output path, needs the evil target)
OUTPUT_COMMANDS: dict[str, tuple[list[str], bool]] = {
    "profile record -o html": (["profile", "record", "--pid", "{pid}", "-d", "2", "-o", "{out}.html"], True),
    "profile record -o speedscope": (["profile", "record", "--pid", "{pid}", "-d", "2", "-o", "{out}.speedscope.json"], True),
    "profile show -o": (["profile", "show", SPEEDSCOPE, "-o", "{out}.html"], False),
    "profile show -o pprof": (["profile", "show", SPEEDSCOPE, "-o", "{out}.pb.gz"], False),
    "profile diff -o": (["profile", "diff", SPEEDSCOPE, SPEEDSCOPE, "-o", "{out}.html"], False),
    "mem -o": (["mem", "--pid", "{pid}", "--no-agent", "-o", "{out}.html"], True),
    "mem --watch -o": (["mem", "--pid", "{pid}", "--watch", "2s", "--interval", "0.5", "-o", "{out}.html"], True),
    "demo -o": (["demo", "-d", "2", "-o", "{out}.html"], False),
    "trace exec -o": (["trace", "exec", "-o", "{out}.json", "--", "true"], False),
}


# A wrapper exits with its command's code whatever happens to the spans: it says so on stderr.
WRAPPERS = {"trace exec -o"}


def _refused(name: str, a: Answer, what: str) -> None:
    if name in WRAPPERS:
        assert a.exit_code == 0, a.describe()
        assert "refusing" in a.stderr and "spans dropped" in a.stderr, a.describe()
        return
    # 6 (permission denied) when -o is checked before the work; 9 when the refusal comes at the end.
    assert a.exit_code in (6, 9), a.describe()
    assert len(a.error_lines) == 1 and what in a.error_lines[0], a.describe()


def _args(template: list[str], out: Path, target: EvilTarget | None) -> list[str]:
    return [a.format(out=out, pid=target.pid if target else "") for a in template]


@pytest.fixture
def target_for(request: pytest.FixtureRequest) -> Callable[[bool], EvilTarget | None]:
    def get(needed: bool) -> EvilTarget | None:
        return request.getfixturevalue("evil_target") if needed else None

    return get


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "root-only-secret"
    victim.write_bytes(b"secret\n")
    os.chmod(victim, 0o600)
    return victim


def _demo_ok(name: str) -> None:
    if name.startswith("demo"):
        from conftest import ptrace_works  # the suite's own check: py-spy can attach here

        if ptrace_works() is not None:
            pytest.skip("demo profiles with py-spy, which cannot attach here")


@pytest.mark.parametrize("name", list(OUTPUT_COMMANDS))
def test_planted_symlink_is_refused(name: str, sticky_dir: Path, tmp_path: Path,
                                    target_for: Callable[[bool], EvilTarget | None]) -> None:
    template, needs_target = OUTPUT_COMMANDS[name]
    _demo_ok(name)
    target = target_for(needs_target)
    victim = _victim(tmp_path)
    out = sticky_dir / "out"
    args = _args(template, out, target)
    planted = Path(next(a for a in args if a.startswith(str(out))))
    as_nobody("ln", "-s", str(victim), str(planted))
    a = run(*args, extra_env=target.env if target else None, timeout=120)
    st = victim.stat()
    survived = victim.read_bytes() == b"secret\n" and stat.S_IMODE(st.st_mode) == 0o600 and planted.is_symlink()
    fault(survived, f"{name}: planted symlink")
    assert survived, a.describe()
    _refused(name, a, "refusing to write")


@pytest.mark.parametrize("name", list(OUTPUT_COMMANDS))
def test_planted_fifo_is_refused_without_blocking(name: str, sticky_dir: Path,
                                                   target_for: Callable[[bool], EvilTarget | None]) -> None:
    template, needs_target = OUTPUT_COMMANDS[name]
    _demo_ok(name)
    target = target_for(needs_target)
    out = sticky_dir / "out"
    args = _args(template, out, target)
    planted = Path(next(a for a in args if a.startswith(str(out))))
    as_nobody("mkfifo", str(planted))
    a = run(*args, extra_env=target.env if target else None, timeout=120)
    survived = a.exit_code is not None and stat.S_ISFIFO(os.lstat(planted).st_mode)
    fault(survived, f"{name}: planted FIFO")
    assert survived, a.describe()
    _refused(name, a, "FIFO")


LONG_COMMANDS = {
    "profile record": ["profile", "record", "--pid", "{pid}", "-d", "60", "-o", "{out}"],
    "mem --watch": ["mem", "--pid", "{pid}", "--watch", "60s", "-o", "{out}"],
}


@pytest.mark.parametrize("where", ["parent is a file", "parent missing", "is a directory"])
@pytest.mark.parametrize("name", list(LONG_COMMANDS))
def test_unwritable_output_fails_before_the_work(name: str, where: str, tmp_path: Path, evil_target: EvilTarget) -> None:
    """A -o that cannot be written fails in seconds, before a 60 s recording (one line, exit 2 or 9)."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.html").mkdir()
    out = {"parent is a file": tmp_path / "file" / "out.html", "parent missing": tmp_path / "nope" / "out.html",
           "is a directory": tmp_path / "dir.html"}[where]
    a = run(*_args(LONG_COMMANDS[name], out, evil_target), extra_env=evil_target.env, timeout=25)
    assert a.exit_code is not None, "waited for the whole recording before checking -o"
    assert a.exit_code in (2, 9), a.describe()
    assert len(a.error_lines) == 1, a.describe()


def test_mem_result_kept_when_the_write_fails_at_the_end(evil_target: EvilTarget, tmp_path: Path) -> None:
    """The directory goes away during --watch: the report is printed and the HTML kept in the state directory."""
    import subprocess
    import sys

    from hostile.hostile_lib import env

    out_dir = tmp_path / "gone"
    out_dir.mkdir()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "obskit", "mem", "--pid", str(evil_target.pid), "--watch", "3s", "--interval", "0.5",
         "-o", str(out_dir / "mem.html")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(XDG_STATE_HOME=str(state), **evil_target.env),
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "watching pid N ...": the output was checked, the watch has begun
    assert b"watching pid" in first, first
    out_dir.rmdir()
    out, err = proc.communicate(timeout=60)
    err = first + err
    assert proc.returncode == 11, err
    line = [x for x in err.decode().splitlines() if x.startswith("obskit: error:")]
    assert len(line) == 1 and "kept in" in line[0], err
    kept = Path(line[0].split("kept in ", 1)[1].split()[0].rstrip(";"))
    assert kept.is_file() and kept.read_bytes().startswith(b"<!") and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.parent.stat().st_mode) == 0o700
    assert b"rss" in out.lower(), "the report is printed whatever happened to the file"
    lost(0 if kept.is_file() else 1, "mem --watch -o result")
    fault(True, "mem -o directory removed mid-watch")
