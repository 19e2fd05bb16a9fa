"""`obskit quota`: a full check of a machine with 200 processes must take <= 1 s (window excluded).

Spawns 200 cheap processes (190 `sleep`s and 10 idle Pythons) in obskit's own cgroup, then times
`collect(window=0)` (every cgroup read, every /proc read, grouping and verdicts) against a peer
doing less: `psutil.process_iter` reading cmdline, environ, threads and memory_full_info (USS) of
every process.  Runs are interleaved (peer, obskit, peer, ...) and the median of the paired
ratios is printed.  Usage: python benchmarks/quota_bench.py [--quick]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def spawn(n_sleep: int, n_py: int) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen(["sleep", "300"]) for _ in range(n_sleep)]
    procs += [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]) for _ in range(n_py)]
    return procs


def peer() -> int:
    import psutil

    n = 0
    for p in psutil.process_iter(["cmdline", "environ", "num_threads", "memory_full_info"]):
        n += 1 if p.info.get("cmdline") is not None else 0
    return n


def main() -> None:
    quick = "--quick" in sys.argv
    rounds = 3 if quick else 7
    from obskit.quota.collect import collect

    procs = spawn(190, 10)
    try:
        time.sleep(1.0)  # let the Pythons finish starting (not measured)
        rows = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            peer()
            t_peer = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = collect(None, 0)
            t_obskit = time.perf_counter() - t0
            rows.append((t_obskit, t_peer, report.collect_seconds, len(report.processes)))
        ob = statistics.median(r[0] for r in rows)
        pe = statistics.median(r[1] for r in rows)
        ratio = statistics.median(r[0] / r[1] for r in rows)
        print(f"processes in the cgroup: {rows[-1][3]} (200 spawned)")
        print(f"obskit quota collect (window 0): median {ob * 1000:.0f} ms over {rounds} runs "
              f"(collector's own figure {statistics.median(r[2] for r in rows) * 1000:.0f} ms)")
        print(f"peer psutil.process_iter(cmdline, environ, num_threads, memory_full_info): median {pe * 1000:.0f} ms")
        print(f"ratio obskit/peer (median of paired runs): {ratio:.2f}")
        print(f"target <= 1000 ms: {'PASS' if ob <= 1.0 else 'FAIL'}")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
