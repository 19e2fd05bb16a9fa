"""The `obskit bench compare` gate on this machine: detection, false positives, power, localisation.

Prints
- the detection table: the hot function made 2/5/10/20 % slower × runs needed × verdict × wall time;
- the false-positive rate of 20 A/A comparisons of the same command (goal: at most 1 "regressed");
- the power: a 10 % slowdown of the hot function regressed in >= 9 of 10 comparisons, a 25 % memory
  growth likewise, and how often "where the time went" names the slowed function first.

Every comparison is a real `obskit bench compare --json` at the default settings on a machine
shared with other jobs (on a quiet one, --burner adds a CPU burner switching on and off beside
it: the noise a shared CI runner adds).  Each result is checked (schema, every metric present)
before it is counted.
Usage: python benchmarks/bench_gate.py [--quick] [--aa N] [--power N] [--burner]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

# The targets (the tests use the same ones).  HOT_SLOW=P makes hot() do P % more work;
# MEM_GROW=P makes the allocated block P % larger.
HOT_SCRIPT = '''\
import os
SLOW = float(os.environ.get("HOT_SLOW", "0")) / 100.0
N = int(os.environ.get("HOT_N", "1500000"))

def hot(n):
    t = 0
    for i in range(n):
        t += i * i % 7
    return t

def other(n):
    t = 0
    for i in range(n):
        t ^= i
    return t

for _ in range(20):  # work items: each one calls both
    hot(int(N * (1 + SLOW)) // 20)
    other(N // 400)
'''

MEM_SCRIPT = '''\
import os
GROW = float(os.environ.get("MEM_GROW", "0")) / 100.0
MB = int(os.environ.get("MEM_MB", "40"))
block = bytearray(int(MB * (1 + GROW)) << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
'''

BURNER = '''\
import time
while True:
    end = time.monotonic() + 0.25
    while time.monotonic() < end:
        pass
    time.sleep(0.35)
'''


def write_targets(directory: str) -> tuple[str, str]:
    hot, mem = os.path.join(directory, "hot.py"), os.path.join(directory, "mem.py")
    with open(hot, "w") as f:
        f.write(HOT_SCRIPT)
    with open(mem, "w") as f:
        f.write(MEM_SCRIPT)
    return hot, mem


@contextlib.contextmanager
def burner() -> Iterator[None]:
    p = subprocess.Popen([sys.executable, "-c", BURNER])
    try:
        yield
    finally:
        p.kill()
        p.wait()


def compare(base: str, head: str, *extra: str, cwd: str) -> tuple[dict, float, int]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "obskit", "bench", "compare", "--base", base, "--head", head,
                        "--json", "--artifacts", os.path.join(cwd, "artifacts"), *extra],
                       cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode not in (0, 3):
        raise SystemExit(f"bench compare failed ({p.returncode}): {p.stderr[-800:]}")
    doc = json.loads(p.stdout)
    assert doc["schema"] == "obskit.bench/1", doc.get("schema")
    metrics = {m["metric"]: m for m in doc["benchmarks"][0]["metrics"]}
    assert {"wall", "cpu", "rss"} <= set(metrics), metrics.keys()
    return doc, wall, p.returncode


def verdict(doc: dict) -> str:
    vs = [m["verdict"] for m in doc["benchmarks"][0]["metrics"]]
    for v in ("regressed", "inconclusive", "improved"):
        if v in vs:
            return v
    return "unchanged"


def which(doc: dict, v: str) -> str:
    return ",".join(m["metric"] for m in doc["benchmarks"][0]["metrics"] if m["verdict"] == v) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 A/A and 3 power comparisons")
    ap.add_argument("--aa", type=int, default=20)
    ap.add_argument("--power", type=int, default=10)
    ap.add_argument("--aa-hot-n", type=int, default=300000,
                    help="HOT_N of the A/A command (shorter runs: start-up noise weighs more, and it is faster)")
    ap.add_argument("--sections", default="detection,aa,power,mem",
                    help="which parts to run (comma-separated: detection, aa, power, mem)")
    ap.add_argument("--burner", action="store_true", help="add a CPU burner (0.25 s on / 0.35 s off) beside every "
                    "comparison, for a quiet machine")
    args = ap.parse_args()
    if args.quick:
        args.aa, args.power = 5, 3
    py = f"{sys.executable} -I -S"
    sections = set(args.sections.split(","))
    fp, hits, mhits = 0, args.power, args.power
    with tempfile.TemporaryDirectory(prefix="obskit-bench-gate-") as d, \
            (burner() if args.burner else contextlib.nullcontext()):
        hot, mem = write_targets(d)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        print(f"machine: {os.cpu_count()} CPUs, load {load} at the start"
              + (", a CPU burner (0.25 s on / 0.35 s off) beside every comparison" if args.burner else ""))
        if "detection" in sections:
            print("\nDetection (hot function made N % slower; default settings: --threshold 5% --runs 10 "
                  "--max-runs 60 --max-time 5m)")
            print(f"{'slowdown':>9} {'runs':>5} {'verdict':>13} {'which':>12} {'cpu ratio [CI]':>24} "
                  f"{'wall time':>9}")
            for slow in (2, 5, 10, 20):
                doc, wall, _ = compare(f"env HOT_SLOW=0 {py} {hot}", f"env HOT_SLOW={slow} {py} {hot}",
                                       "--no-profile", cwd=d)
                cpu = next(m for m in doc["benchmarks"][0]["metrics"] if m["metric"] == "cpu")
                ci = f"{cpu['ratio']:.3f} [{cpu['ci_low']:.3f}, {cpu['ci_high']:.3f}]"
                print(f"{slow:>8}% {doc['rounds']:>5} {verdict(doc):>13} {which(doc, verdict(doc)):>12} {ci:>24} "
                      f"{wall:>8.1f}s", flush=True)

        if "aa" in sections:
            print(f"\nFalse positives: {args.aa} A/A comparisons (the same command on both sides, HOT_N={args.aa_hot_n})")
            tally: dict[str, int] = {}
            aa_wall, aa_runs = 0.0, 0
            for _ in range(args.aa):
                aa = f"env HOT_SLOW=0 HOT_N={args.aa_hot_n} {py} {hot}"
                doc, wall, rc = compare(aa, aa, cwd=d)
                v = verdict(doc)
                tally[v] = tally.get(v, 0) + 1
                fp += v == "regressed"
                aa_wall += wall
                aa_runs += doc["rounds"]
                assert (rc == 3) == (v == "regressed")
                print(f"  {v:>13} after {doc['rounds']:>2} runs ({wall:.0f}s)", flush=True)
            print(f"  verdicts: {tally}; regressed {fp}/{args.aa} (goal <= 1); "
                  f"mean {aa_runs / args.aa:.1f} runs, {aa_wall / args.aa:.1f}s each")

        if "power" in sections:
            print(f"\nPower: {args.power} comparisons of a 10 % slower hot function (with where-the-time-went)")
            hits, first, p_wall, p_runs = 0, 0, 0.0, 0
            for _ in range(args.power):
                doc, wall, _ = compare(f"env HOT_SLOW=0 {py} {hot}", f"env HOT_SLOW=10 {py} {hot}", cwd=d)
                hits += verdict(doc) == "regressed"
                grown = (doc.get("where") or {}).get("grown") or []
                first += bool(grown) and grown[0]["name"] == "hot"
                p_wall += wall
                p_runs += doc["rounds"]
                print(f"  {verdict(doc):>13} after {doc['rounds']:>2} runs ({wall:.0f}s); first grown: "
                      f"{grown[0]['name'] if grown else '-'}", flush=True)
            print(f"  regressed {hits}/{args.power} (goal >= {max(1, args.power - 1)}); slowed function named "
                  f"first {first}/{args.power}; mean {p_runs / args.power:.1f} runs, {p_wall / args.power:.1f}s each")

        if "mem" in sections:
            print(f"\nPower: {args.power} comparisons of 25 % more memory")
            mhits, m_wall = 0, 0.0
            method = "-"
            for _ in range(args.power):
                doc, wall, _ = compare(f"env MEM_GROW=0 {py} {mem}", f"env MEM_GROW=25 {py} {mem}", "--no-profile",
                                       cwd=d)
                rss = next(m for m in doc["benchmarks"][0]["metrics"] if m["metric"] == "rss")
                mhits += rss["verdict"] == "regressed"
                m_wall += wall
                method = doc["settings"]["method"]
            print(f"  peak memory regressed {mhits}/{args.power} (goal >= {max(1, args.power - 1)}); "
                  f"{m_wall / args.power:.1f}s each; method {method}")
    ok = fp <= 1 and hits >= args.power - 1 and mhits >= args.power - 1
    print("\nresult:", "all goals met" if ok else "GOALS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
