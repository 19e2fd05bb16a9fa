"""Peak memory of `obskit snapshot` (obskit itself plus every py-spy it runs) on a 10-process target.

The ceiling is 150 MB (an ephemeral debug container counts toward the pod's limit). The target
is a master with 9 workers, each burning CPU in a named function.  Every 20 ms the script adds up
the RSS of obskit and all its descendants (py-spy); the peak of that sum is the figure, beside
obskit's own peak from the archive's accounting.  Peer in the same run: a bare Python interpreter
(the floor any Python tool starts from).  Checks the archive holds the profile of all 10 processes
before printing.

    python benchmarks/snapshot_memory.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

TARGET = r"""
import multiprocessing as mp, time
def burn_in_worker():
    x = 0
    while True:
        for i in range(10000):
            x += i * i
if __name__ == "__main__":
    procs = [mp.Process(target=burn_in_worker, daemon=True) for _ in range(9)]
    for p in procs: p.start()
    print("ready", flush=True)
    time.sleep(600)
"""
MIB = 1 << 20
CEILING = 150 * 1000 * 1000


def tree_rss(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def peak_of(cmd: list[str]) -> tuple[int, int]:
    """(peak RSS of the command and its descendants, exit status)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    return peak, proc.returncode


def main() -> int:
    quick = "--quick" in sys.argv
    runs = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as d:
        script = Path(d) / "target.py"
        script.write_text(TARGET)
        target = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        try:
            assert target.stdout is not None and target.stdout.readline().strip() == "ready"
            peaks, own, floors = [], [], []
            for i in range(runs):
                floor, _ = peak_of([sys.executable, "-c", "import time; time.sleep(1)"])
                floors.append(floor)
                out = Path(d) / f"s{i}.tar.gz"
                peak, rc = peak_of([sys.executable, "-m", "obskit", "snapshot", "--pid", str(target.pid),
                                       "-d", "3" if quick else "10", "-o", str(out)])
                if rc != 0:
                    print(f"snapshot failed (exit {rc})")
                    return 1
                with tarfile.open(out) as tar:
                    members = {m.name.split("/", 1)[-1]: m for m in tar.getmembers()}
                    index = json.load(tar.extractfile(members["index.json"]))  # type: ignore[arg-type]
                    report = json.load(tar.extractfile(members["profile-report.json"]))  # type: ignore[arg-type]
                pids = {p["pid"] for p in report["processes"]}
                if len(pids) != 10 or report["top_functions"][0]["name"] != "burn_in_worker":
                    print(f"unexpected profile: {len(pids)} processes, top {report['top_functions'][:1]}")
                    return 1
                peaks.append(peak)
                own.append(index["accounting"]["peak_rss_bytes"])
        finally:
            target.kill()
            for p in os.popen(f"pgrep -P {target.pid}").read().split():
                os.kill(int(p), 9)
    peaks.sort()
    med = peaks[len(peaks) // 2]
    print(f"snapshot of a 10-process target, {runs} run(s): peak RSS obskit + py-spy "
          f"{med / 1e6:.0f} MB (max {max(peaks) / 1e6:.0f} MB; ceiling {CEILING / 1e6:.0f} MB), "
          f"obskit alone {sorted(own)[len(own) // 2] / 1e6:.0f} MB, bare python {sorted(floors)[len(floors) // 2] / 1e6:.0f} MB; "
          f"ratio to the ceiling {max(peaks) / CEILING:.2f}")
    return 0 if max(peaks) <= CEILING else 1


if __name__ == "__main__":
    sys.exit(main())
