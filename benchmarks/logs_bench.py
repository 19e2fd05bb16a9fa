"""`obskit logs` throughput and memory against jq, measured in the same run.

Usage: python benchmarks/logs_bench.py [--quick] [--lines N] [--rounds R] [--rss-repeat K]

Generates N JSON log lines (the shape of baselines.md's gen_logs.py: ~206 B/line, 5 % errors)
in benchmarks/out/, then, interleaved over R rounds (medians reported):

* ``obskit logs FILE --level error --json``   (stdout read through a pipe and counted)
* the same with OBSKIT_NO_ORJSON=1             (stdlib json, to decide on orjson)
* ``obskit logs FILE --summary --json``
* ``jq -c 'select(.level=="error")' FILE``     (the peer; its output counted the same way)

and the peak RSS (wait4) of ``--summary --json`` reading the file K times over from stdin
(a larger-than-memory-budget stream).  Figures are lines/s, MB/s (10^6 B) and ratios to jq.
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


def run(cmd: list[str], env: dict[str, str] | None = None, stdin_repeat: tuple[Path, int] | None = None
        ) -> tuple[float, float, int, int]:
    """(wall s, cpu s, peak RSS KiB, stdout lines) of one command, stdout read through a pipe."""
    feeder = None
    stdin = subprocess.DEVNULL if stdin_repeat is None else subprocess.PIPE
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=stdin, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    if stdin_repeat is not None:
        def feed() -> None:
            assert proc.stdin is not None
            path, k = stdin_repeat
            try:
                for _ in range(k):
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, proc.stdin, 1 << 20)
            finally:
                proc.stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
    lines = 0
    assert proc.stdout is not None
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
    _, _status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = 0
    if feeder is not None:
        feeder.join()
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k lines, 1 round, RSS over 3 copies")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rss-repeat", type=int, default=5)
    a = ap.parse_args()
    if a.quick:
        a.lines, a.rounds, a.rss_repeat = 100_000, 1, 3
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"logs_{a.lines}.jsonl"
    if not path.exists():
        t = time.perf_counter()
        generate(a.lines, path)
        print(f"generated {path} in {time.perf_counter() - t:.1f}s")
    size = path.stat().st_size
    obskit = [sys.executable, "-m", "obskit", "logs", str(path)]
    cases: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "obskit --level error --json": ([*obskit, "--level", "error", "--json"], None),
        "obskit --level error --json (stdlib json)": ([*obskit, "--level", "error", "--json"], {"OBSKIT_NO_ORJSON": "1"}),
        "obskit --summary --json": ([*obskit, "--summary", "--json"], None),
        "obskit --summary --json (stdlib json)": ([*obskit, "--summary", "--json"], {"OBSKIT_NO_ORJSON": "1"}),
    }
    if shutil.which("jq"):
        cases["jq -c 'select(.level==\"error\")'"] = (["jq", "-c", 'select(.level=="error")', str(path)], None)
    else:
        print("jq not found: no peer figures")
    results: dict[str, list[tuple[float, float, int, int]]] = {k: [] for k in cases}
    for _ in range(a.rounds):  # interleaved, so load changes hit every case alike
        for name, (cmd, env) in cases.items():
            results[name].append(run(cmd, env))
    print(f"file: {a.lines} lines, {size / 1e6:.1f} MB; {a.rounds} round(s), medians; load {os.getloadavg()[0]:.2f}")
    print(f"{'case':45} {'wall s':>7} {'cpu s':>7} {'lines/s':>10} {'MB/s':>7} {'RSS MiB':>8} {'out lines':>9}")
    med: dict[str, float] = {}
    med_cpu: dict[str, float] = {}
    for name, rs in results.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        rss = max(r[2] for r in rs) / 1024
        med[name] = wall
        med_cpu[name] = cpu
        print(f"{name:45} {wall:7.2f} {cpu:7.2f} {a.lines / wall:10,.0f} {size / 1e6 / wall:7.1f} {rss:8.1f} "
              f"{rs[0][3]:9d}")
    jq = next((k for k in med if k.startswith("jq")), None)
    if jq:
        for name in med:
            if name != jq:
                print(f"ratio jq / ({name}): wall {med[jq] / med[name]:.2f}x, cpu {med_cpu[jq] / med_cpu[name]:.2f}x"
                      "  (>1: obskit faster; cpu is the steadier figure on a loaded machine)")
    wall, _cpu, rss, _out = run([sys.executable, "-m", "obskit", "logs", "-", "--summary", "--json"],
                              stdin_repeat=(path, a.rss_repeat))
    total = size * a.rss_repeat
    print(f"peak RSS, --summary --json over {total / 1e9:.2f} GB from stdin ({a.rss_repeat}x the file): "
          f"{rss / 1024:.1f} MiB in {wall:.1f}s ({total / 1e6 / wall:.1f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
