"""Start-up of `obskit --help` against `python -c "import typer"` (goal: at most 1.3x).

Interleaved A/B runs of whole processes; prints the medians and their ratio.
Usage: python benchmarks/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    # The console script is what users run (`python -m obskit` adds runpy's own cost).
    script = os.path.join(os.path.dirname(sys.executable), "obskit")
    entry = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "obskit"]
    obskit = [*entry, "--help"]
    typer = [sys.executable, "-c", "import typer"]
    sub = [*entry, "profile", "record", "--help"]
    for cmd in (obskit, typer, sub):
        _time(cmd)  # warm the page cache
    a: list[float] = []
    b: list[float] = []
    c: list[float] = []
    ratios: list[float] = []
    for i in range(args.runs):
        order = [(obskit, a), (typer, b), (sub, c)] if i % 2 == 0 else [(sub, c), (typer, b), (obskit, a)]
        for cmd, bucket in order:
            bucket.append(_time(cmd))
        ratios.append(a[-1] / b[-1])
    print(f"obskit --help                 median {statistics.median(a) * 1e3:7.1f} ms")
    print(f"obskit profile record --help  median {statistics.median(c) * 1e3:7.1f} ms")
    print(f"python -c 'import typer'      median {statistics.median(b) * 1e3:7.1f} ms")
    print(f"ratio obskit --help / import typer: median of {len(ratios)} paired ratios "
          f"{statistics.median(ratios):.2f}x (goal <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
