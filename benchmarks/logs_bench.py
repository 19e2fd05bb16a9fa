"""`obskit logs` throughput and memory against jq, measured side by side in the same run.

Usage: python benchmarks/logs_bench.py [--quick] [--lines N] [--rounds R] [--rss-repeat K]

Generates N JSON log lines (the shape of baselines.md's gen_logs.py: ~206 B/line, 5 % errors)
in benchmarks/out/, then, interleaved over R rounds (medians reported):

* ``obskit logs FILE --level error --json``   (two processes over byte ranges of the file)
* the same with OBSKIT_LOGS_WORKERS=1          (one process)
* ``obskit logs FILE --summary --json``
* ``jq -c 'select(.level=="error")' FILE``     (the peer; its output counted the same way)

obskit is run through the installed ``obskit`` entry point next to this Python (not ``python -m``
from a source tree).  Every run is checked: exit 0 and the expected output (the same number of
lines as jq's, the summary's line and error counts), or the benchmark stops with an error instead
of printing a ratio.  A level-spelling check first runs ``--level error`` over a generated file whose
error-or-worse lines are spelled every way the prefilter must not miss (``"ERROR"``, ``critical``,
``fatal``, other level keys, python's ``levelno``, logfmt, text) and compares with the exact count.

Peak RSS is summed over obskit's processes (the main one and its worker): each process's VmHWM,
sampled every 5 ms from /proc while it runs, plus the main process's ru_maxrss from wait4.
Also: ``--summary --json`` reading the file K times over from stdin (one process, a stream).
Figures are lines/s, MB/s (10^6 B) and ratios to jq.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def generate(n: int, path: Path) -> None:
    rnd = random.Random(42)
    levels = ["debug"] * 15 + ["info"] * 70 + ["warning"] * 10 + ["error"] * 5
    loggers = ["app.api.orders", "app.api.users", "app.db.pool", "app.worker.billing", "uvicorn.access", "app.cache"]
    msgs = ["request completed", "cache miss", "db query slow", "retrying upstream call", "payment declined",
            "user session refreshed", "connection reset by peer", "job finished"]
    methods = ["GET", "POST", "PUT", "DELETE"]
    t0 = dt.datetime(2024, 5, 14, 12, 0, 0, tzinfo=dt.timezone.utc)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for i in range(n):
            ts = (t0 + dt.timedelta(milliseconds=i * 3 + rnd.randrange(3))).isoformat(timespec="milliseconds")
            rec = {"timestamp": ts.replace("+00:00", "Z"), "level": rnd.choice(levels), "logger": rnd.choice(loggers),
                   "message": rnd.choice(msgs), "trace_id": f"{rnd.getrandbits(128):032x}",
                   "method": rnd.choice(methods), "status": rnd.choice([200, 200, 200, 201, 404, 500]),
                   "duration_ms": round(rnd.expovariate(1 / 40), 2)}
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    tmp.rename(path)


# error-or-worse spelled every way `--level error` must keep, and lines it must drop
SPELLINGS_KEEP = ['{{"level":"ERROR","msg":"k{i}"}}', '{{"level":"Error","msg":"k{i}"}}',
                  '{{"level":"critical","msg":"k{i}"}}', '{{"severity":"FATAL","msg":"k{i}"}}',
                  '{{"lvl":"err","msg":"k{i}"}}', '{{"levelname":"CRITICAL","msg":"k{i}"}}',
                  '{{"levelno":40,"msg":"k{i}"}}', '{{"level":50,"msg":"k{i}"}}', '{{"log.level":"panic","msg":"k{i}"}}',
                  '{{"severity_number":17,"msg":"k{i}"}}', 'level=error msg="k{i}"',
                  '2024-05-14 12:00:00,123 ERROR app: k{i}', '{{"level":"\\u0045RROR","msg":"k{i}"}}']
SPELLINGS_DROP = ['{{"level":"info","msg":"d{i} error in text"}}', '{{"level":"WARNING","msg":"d{i}"}}',
                  '{{"levelno":20,"msg":"d{i}"}}', 'level=debug msg="d{i}"', '2024-05-14 12:00:00,123 INFO app: d{i}']


def spelling_file(path: Path, n: int = 20000) -> int:
    rnd = random.Random(7)
    keep = 0
    with open(path, "w") as f:
        for i in range(n):
            if rnd.random() < 0.2:
                f.write(rnd.choice(SPELLINGS_KEEP).format(i=i) + "\n")
                keep += 1
            else:
                f.write(rnd.choice(SPELLINGS_DROP).format(i=i) + "\n")
    return keep


@dataclass
class Run:
    wall: float
    cpu: float
    rss_sum_kib: int  # summed peak over obskit's processes
    out: bytes
    code: int
    procs: int


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run(cmd: list[str], env: dict[str, str] | None = None, stdin_repeat: tuple[Path, int] | None = None,
        keep_output: bool = False) -> Run:
    """One command, stdout read through a pipe (kept whole only when asked; else its lines counted)."""
    stdin = subprocess.DEVNULL if stdin_repeat is None else subprocess.PIPE
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=stdin, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in [proc.pid, *_children(proc.pid)]:
                v = _hwm(pid)
                if v > peaks.get(pid, 0):
                    peaks[pid] = v
            done.wait(0.005)

    threads = [threading.Thread(target=sample, daemon=True)]
    if stdin_repeat is not None:
        def feed() -> None:
            assert proc.stdin is not None
            path, k = stdin_repeat
            try:
                for _ in range(k):
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, proc.stdin, 1 << 20)
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()

        threads.append(threading.Thread(target=feed, daemon=True))
    err: list[bytes] = []
    assert proc.stderr is not None
    stderr = proc.stderr
    threads.append(threading.Thread(target=lambda: err.append(stderr.read()), daemon=True))
    for t in threads:
        t.start()
    kept: list[bytes] = []
    lines = 0
    assert proc.stdout is not None
    while chunk := proc.stdout.read(1 << 20):
        lines += chunk.count(b"\n")
        if keep_output:
            kept.append(chunk)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in threads:
        t.join(5)
    peaks[proc.pid] = max(peaks.get(proc.pid, 0), ru.ru_maxrss)
    out = b"".join(kept) if keep_output else str(lines).encode()
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)} exited {proc.returncode}: {b''.join(err).decode()[-500:]}")
    return Run(wall, ru.ru_utime + ru.ru_stime, sum(peaks.values()), out, proc.returncode, len(peaks))


def check_count(name: str, r: Run, expected: int) -> None:
    got = int(r.out)
    if got != expected:
        raise SystemExit(f"FAILED: {name} printed {got} lines, expected {expected}: no figures from a wrong answer")


def check_summary(name: str, r: Run, lines: int, errors: int) -> None:
    try:
        doc = json.loads(r.out)
    except ValueError:
        raise SystemExit(f"FAILED: {name} printed no JSON summary: {r.out[:200]!r}") from None
    got = (doc.get("lines"), doc.get("by_level", {}).get("error", 0))
    if got != (lines, errors):
        raise SystemExit(f"FAILED: {name}: lines/errors {got}, expected {(lines, errors)}")


def obskit_entry() -> list[str]:
    exe = Path(sys.executable).parent / "obskit"
    found = str(exe) if exe.exists() else shutil.which("obskit")
    if not found:
        raise SystemExit("FAILED: no installed `obskit` entry point next to this Python or on PATH "
                         "(pip install -e . first)")
    return [found]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k lines, 1 round, RSS over 3 copies")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rss-repeat", type=int, default=5)
    a = ap.parse_args()
    if a.quick:
        a.lines, a.rounds, a.rss_repeat = 100_000, 1, 3
    jq_bin = shutil.which("jq")
    if not jq_bin:
        raise SystemExit("FAILED: jq not found (apt-get install jq, or .ci/system-deps.sh): no peer to compare with")
    obskit = obskit_entry()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"logs_{a.lines}.jsonl"
    if not path.exists():
        t = time.perf_counter()
        generate(a.lines, path)
        print(f"generated {path} in {time.perf_counter() - t:.1f}s")
    size = path.stat().st_size

    spell = OUT / "logs_spellings.log"
    keep = spelling_file(spell)
    r = run([*obskit[:1], "logs", str(spell), "--level", "error", "--json"])
    check_count("obskit --level error over every spelling", r, keep)
    print(f"level spellings: --level error kept {keep} of {keep} error-or-worse lines of 20000 (exact)")

    expected = int(run([jq_bin, "-c", 'select(.level=="error")', str(path)]).out)
    cases: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "obskit --level error --json": ([*obskit, "logs", str(path), "--level", "error", "--json"], None),
        "obskit --level error --json (1 process)": ([*obskit, "logs", str(path), "--level", "error", "--json"],
                                                    {"OBSKIT_LOGS_WORKERS": "1"}),
        "obskit --summary --json": ([*obskit, "logs", str(path), "--summary", "--json"], None),
        "jq -c 'select(.level==\"error\")'": ([jq_bin, "-c", 'select(.level=="error")', str(path)], None),
    }
    results: dict[str, list[Run]] = {k: [] for k in cases}
    for _ in range(a.rounds):  # interleaved, so load changes hit every case alike
        for name, (cmd, env) in cases.items():
            summary = "--summary" in cmd
            res = run(cmd, env, keep_output=summary)
            if summary:
                check_summary(name, res, a.lines, expected)
            else:
                check_count(name, res, expected)
            results[name].append(res)
    print(f"file: {a.lines} lines, {size / 1e6:.1f} MB; {a.rounds} interleaved round(s), medians; "
          f"jq and obskit --level error both printed {expected} lines every run; load {os.getloadavg()[0]:.2f}")
    print(f"{'case':42} {'wall s':>7} {'cpu s':>7} {'lines/s':>10} {'MB/s':>7} {'RSS MiB':>8} {'procs':>5}")
    med: dict[str, float] = {}
    for name, rs in results.items():
        wall = statistics.median(x.wall for x in rs)
        cpu = statistics.median(x.cpu for x in rs)
        rss = max(x.rss_sum_kib for x in rs) / 1024
        med[name] = wall
        print(f"{name:42} {wall:7.2f} {cpu:7.2f} {a.lines / wall:10,.0f} {size / 1e6 / wall:7.1f} {rss:8.1f} "
              f"{max(x.procs for x in rs):5d}")
    jq = next(k for k in med if k.startswith("jq"))
    for name in med:
        if name != jq:
            ratios = [j.wall / o.wall for j, o in zip(results[jq], results[name])]
            print(f"lines/s {name} / jq: {med[jq] / med[name]:.2f}x  (per-round ratios "
                  f"{', '.join(f'{x:.2f}' for x in ratios)})")
    res = run([*obskit, "logs", "-", "--summary", "--json"], stdin_repeat=(path, a.rss_repeat), keep_output=True)
    check_summary("obskit - --summary --json (stdin)", res, a.lines * a.rss_repeat, expected * a.rss_repeat)
    total = size * a.rss_repeat
    print(f"peak RSS, --summary --json over {total / 1e9:.2f} GB from stdin ({a.rss_repeat}x the file): "
          f"{res.rss_sum_kib / 1024:.1f} MiB in {res.wall:.1f}s ({total / 1e6 / res.wall:.1f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
