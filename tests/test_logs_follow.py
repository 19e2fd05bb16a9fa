"""`obskit logs -f` in a real subprocess: rotation by rename, truncation, several files, drops."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TIMEOUT = 30.0
EOF = "\x00eof"


class Follower:
    """`obskit logs -f ...` with its stdout and stderr read line by line in the background."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "obskit", "logs", "-f", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.err_lines: list[str] = []
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()

    @staticmethod
    def _pump(stream: object, q: queue.Queue[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            q.put(line.rstrip("\n"))
        q.put(EOF)

    def records(self, n: int) -> list[dict[str, object]]:
        got: list[dict[str, object]] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only {len(got)} of {n} records in {TIMEOUT}s: {got}; stderr {self.stderr()}")
            try:
                got.append(json.loads(self.out.get(timeout=left)))
            except queue.Empty:
                continue
        return got

    def stderr_line(self, fragment: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in self.err_lines:
                if fragment in line:
                    return line
            try:
                self.err_lines.append(self.err.get(timeout=0.5))
            except queue.Empty:
                pass
        raise AssertionError(f"no stderr line with {fragment!r}: {self.err_lines}")

    def stderr(self) -> list[str]:
        while not self.err.empty():
            self.err_lines.append(self.err.get_nowait())
        return self.err_lines

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def follow() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for f in started:
        f.stop()


def append(path: Path, *msgs: str, level: str = "info") -> None:
    with open(path, "a") as f:
        for m in msgs:
            f.write(json.dumps({"level": level, "msg": m}) + "\n")


@pytest.mark.slow
def test_follow_survives_rotation_and_truncation(follow: list[Follower], tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "old-1", "old-2")
    f = Follower(str(log), "--json", "--tail", "1")
    follow.append(f)
    assert [r["message"] for r in f.records(1)] == ["old-2"]  # --tail 1, then following
    append(log, "a1", "a2")
    assert [r["message"] for r in f.records(2)] == ["a1", "a2"]

    # rotation by rename: the last line written to the old file, then the new file from its start
    os.rename(log, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", "late-in-old")
    append(log, "new-1", "new-2", level="error")
    got = [r["message"] for r in f.records(3)]
    assert got == ["late-in-old", "new-1", "new-2"]
    assert "rotated" in f.stderr_line("rotated")

    # truncation (copytruncate): a counted gap marker, then reading from the start
    with open(log, "w"):
        pass
    f.stderr_line("truncated")
    append(log, "after-truncate")
    assert [r["message"] for r in f.records(1)] == ["after-truncate"]
    assert f.stop() == 0
    assert any("1 gaps" in line for line in f.stderr())


@pytest.mark.slow
def test_follow_several_files_and_summary_on_interrupt(follow: list[Follower], tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("")
    b.write_text("")
    f = Follower(str(a), str(b), "--json", "--level", "warning")
    follow.append(f)
    append(a, "quiet")
    append(a, "from-a", level="warning")
    append(b, "from-b", level="error")
    got = f.records(2)
    assert sorted((r["source"], r["message"]) for r in got) == [("a.log", "from-a"), ("b.log", "from-b")]
    assert f.stop() == 0

    s = Follower(str(a), "--summary", "--json", "--tail", "0")
    follow.append(s)
    s.stderr_line("following")  # readiness: the readers run
    append(a, "x1", "x2", level="error")
    # the summary of what was collected is still printed on Ctrl-C
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        s.proc.send_signal(signal.SIGINT)
        try:
            s.proc.wait(2)
            break
        except subprocess.TimeoutExpired:
            continue
    assert s.proc.stdout is not None
    out = ""
    while (line := s.out.get(timeout=TIMEOUT)) != EOF:
        out += line + "\n"
    doc = json.loads(out)
    assert doc["schema"] == "obskit.logs-summary/1" and doc["interrupted"] is True
    assert doc["lines"] <= 2 and doc["by_level"].get("error", 0) == doc["lines"]


def test_drop_policy_counts_what_it_drops(tmp_path: Path) -> None:
    """With --on-full drop and a consumer slower than the reader, drops are counted, never silent."""
    from obskit.logs.filters import Filters
    from obskit.logs.pipeline import Options, Pipeline
    from obskit.logs.sources import SourceSpec

    p = tmp_path / "many.log"
    with open(p, "w") as fh:
        for i in range(200000):
            fh.write(f'{{"level":"info","msg":"m {i}"}}\n')
    import io

    class Slow(io.BytesIO):
        def write(self, b: object) -> int:  # a terminal that cannot keep up
            time.sleep(0.01)
            return super().write(b)  # type: ignore[arg-type]

    sink = Slow()
    markers: list[str] = []
    opts = Options(follow=False, on_full="drop", cap=65536, mode="json")
    pipe = Pipeline([SourceSpec("many.log", str(p))], Filters(), opts, out=sink, err=markers.append)
    import obskit.logs.pipeline as pl

    old = pl.QUEUE_BATCHES
    pl.QUEUE_BATCHES = 1
    try:
        pipe.run()
    finally:
        pl.QUEUE_BATCHES = old
    written = sink.getvalue().count(b"\n")
    assert pipe.dropped > 0
    assert written + pipe.dropped == 200000  # every line is either shown or counted as dropped
    assert any("dropped" in m for m in markers)


WRITER = r"""
import os, sys, time
path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(start, start + count):
    os.write(fd, ('{"level":"info","msg":"seq %06d","pad":"%s"}\n' % (i, "x" * 40)).encode())
    if i % 50 == 0:
        time.sleep(0.001)
os.close(fd)
"""


def write_lines(path: Path, start: int, count: int) -> None:
    """A separate writer process appends ``count`` numbered lines (O_APPEND, as loggers do)."""
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(start), str(count)], check=True, timeout=60)


@pytest.mark.slow
def test_copytruncate_that_regrows_past_the_offset_is_a_gap(follow: list[Follower], tmp_path: Path) -> None:
    """copytruncate (copy, then truncate in place) while obskit is between two polls, and the writer
    regrows the file past obskit's read offset before it looks again: a gap marker with the count
    unknown, the new contents read from their start, and the footer never says 0 gaps."""
    log = tmp_path / "app.log"
    write_lines(log, 0, 1000)
    f = Follower(str(log), "--json", "--tail", "0")
    follow.append(f)
    f.stderr_line("following")
    write_lines(log, 1000, 500)
    assert [r["message"] for r in f.records(500)][-1] == "seq 001499"
    os.kill(f.proc.pid, signal.SIGSTOP)  # obskit between two polls, for as long as the rotation takes
    try:
        write_lines(log, 1500, 300)  # written after obskit's last read: they end up only in the copy
        with open(log, "rb") as src, open(tmp_path / "app.log.1", "wb") as dst:
            dst.write(src.read())
        os.truncate(log, 0)
        write_lines(log, 1800, 3000)  # regrows far past the read offset
        assert log.stat().st_size > 1800 * 80
    finally:
        os.kill(f.proc.pid, signal.SIGCONT)
    marker = f.stderr_line("truncated")
    assert "count unknown" in marker
    got = [str(r["message"]) for r in f.records(3000)]
    assert got == [f"seq {i:06d}" for i in range(1800, 4800)]  # every line after the truncation
    assert f.stop() == 0
    footer = [line for line in f.stderr() if "lines" in line and "shown" in line]
    assert footer and "1 gaps" in footer[-1], f.stderr()


@pytest.mark.slow
def test_follow_glob_picks_up_new_files_and_waits_for_a_missing_file(follow: list[Follower], tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("")
    g = Follower(str(tmp_path / "*.log"), "--json")
    follow.append(g)
    g.stderr_line("following")
    append(tmp_path / "a.log", "in-a")
    assert [r["message"] for r in g.records(1)] == ["in-a"]
    append(tmp_path / "b.log", "b-first", "b-second")  # created after the start
    g.stderr_line("following new file")
    got = g.records(2)
    assert [(r["source"], r["message"]) for r in got] == [("b.log", "b-first"), ("b.log", "b-second")]

    later = tmp_path / "later.json"
    w = Follower(str(later), "--json")
    follow.append(w)
    notice = w.stderr_line("does not exist yet")
    assert "waiting" in notice
    append(later, "first", "second")
    assert [r["message"] for r in w.records(2)] == ["first", "second"]
    assert w.stop() == 0

    gone = Follower(str(tmp_path / "no-such-dir" / "app.log"), "--json")
    follow.append(gone)
    assert gone.proc.wait(TIMEOUT) == 9
    assert "no such file" in gone.stderr_line("no such file")
