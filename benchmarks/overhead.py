"""How much sampling slows the target: obskit's default against bare py-spy, on shallow and deep stacks.

Targets time their own loops (calls/s over a window that opens, by SIGUSR1, once the sampler
samples), so start-up and output writing are excluded.  Runs are interleaved alone / sampled /
alone / ...; each ratio is the sampled speed over the mean of the runs alone just
before and after it (the machine's noise is about +-11 % between identical runs, see
the project's baselines).  Prints per target and variant the median ratio, its range,
and the valid-sample share.

Usage: python benchmarks/overhead.py [--quick] [--reps N] [--seconds S] [--targets shallow,50,200,800]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = r"""
import sys, time, signal
sys.setrecursionlimit(5000)
depth, seconds = int(sys.argv[1]), float(sys.argv[2])
def a(n): return b(n - 1) if n else leaf()
def b(n): return c(n - 1) if n else leaf()
def c(n): return a(n - 1) if n else leaf()
def leaf():
    s = 0
    for i in range(2000):
        s += i
    return s
def shallow():
    return leaf()
work = (lambda: a(depth)) if depth else shallow
state = {"t0": None, "calls": 0}
def go(*_):
    state["t0"] = time.perf_counter(); state["calls"] = 0
signal.signal(signal.SIGUSR1, go)
print("ready", flush=True)
while True:
    work()
    state["calls"] += 1
    t0 = state["t0"]
    if t0 is not None and time.perf_counter() - t0 >= seconds:
        break
print(f"calls_per_s={state['calls'] / (time.perf_counter() - t0):.2f}", flush=True)
"""

PYSPY = os.path.join(os.path.dirname(sys.executable), "py-spy")


def _run(depth: int, seconds: float, variant: str, tmp: str) -> dict[str, float]:
    t = subprocess.Popen([sys.executable, "-c", TARGET, str(depth), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert t.stdout is not None
    assert t.stdout.readline().startswith("ready")
    prof = None
    out = os.path.join(tmp, "out.json" if variant == "obskit" else "out.txt")
    if variant == "obskit":
        prof = subprocess.Popen([sys.executable, "-m", "obskit", "profile", "record", "--pid", str(t.pid), "-d",
                                 str(seconds + 60), "--json", "-o", out], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    elif variant.startswith("py-spy"):
        cmd = [PYSPY, "record", "-r", "100", "-f", "raw", "--threads", "-o", out, "--pid", str(t.pid)]
        if "nonblocking" in variant:
            cmd.append("--nonblocking")
        prof = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if prof is not None:
        # The measured window opens once the sampler samples: start-up costs of either tool are not counted.
        assert prof.stderr is not None or prof.stdout is not None
        stream = prof.stderr if variant == "obskit" else prof.stdout
        assert stream is not None
        for text in stream:
            if "recording process" in text or "Sampling process" in text:
                break
    os.kill(t.pid, signal.SIGUSR1)
    line = t.stdout.read()
    t.wait()
    rec = {"calls_per_s": float(re.search(r"calls_per_s=([\d.]+)", line).group(1))}  # type: ignore[union-attr]
    if prof is not None:
        if prof.poll() is None:
            prof.send_signal(signal.SIGINT)
        stdout = prof.communicate(timeout=120)[0] or ""
        if variant == "obskit":
            try:
                m = json.loads(stdout)["metadata"]
                rec["valid"], rec["attempted"] = m["samples_valid"], m["samples_attempted"]
                rec["rate"] = m["segments"][-1]["rate"] if m["segments"] else 0
                rec["pause"] = m["pause_share"] or 0.0
            except (ValueError, KeyError, TypeError):
                rec["valid"], rec["attempted"] = 0, 0
        else:
            mm = re.search(r"Samples: (\d+) Errors: (\d+)", stdout)
            if mm:
                rec["valid"], rec["attempted"] = int(mm.group(1)), int(mm.group(1)) + int(mm.group(2))
            else:
                rec["valid"], rec["attempted"] = 0, 0
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--quick", action="store_true", help="3 reps of 3 s (figures are rough)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--targets", default="shallow,50,200,800")
    ap.add_argument("--verbose", action="store_true", help="print every run")
    args = ap.parse_args()
    reps, seconds = (3, 3.0) if args.quick else (args.reps, args.seconds)
    variants = ["obskit", "py-spy-100-blocking", "py-spy-100-nonblocking"]
    print(f"{reps} interleaved reps of {seconds:g} s per variant; py-spy {PYSPY}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.targets.split(","):
            depth = 0 if name == "shallow" else int(name)
            ratios: dict[str, list[float]] = {v: [] for v in variants}
            recs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            prev = _run(depth, seconds, "alone", tmp)["calls_per_s"]
            for _ in range(reps):
                for v in variants:
                    rec = _run(depth, seconds, v, tmp)
                    nxt = _run(depth, seconds, "alone", tmp)["calls_per_s"]
                    if args.verbose:
                        print(f"  {name} {v}: {rec} between alone {prev:.0f} and {nxt:.0f}", flush=True)
                    ratios[v].append(rec["calls_per_s"] / ((prev + nxt) / 2))
                    recs[v].append(rec)
                    prev = nxt
            label = "shallow" if not depth else f"depth {depth}"
            for v in variants:
                r = ratios[v]
                att = sum(x.get("attempted", 0) for x in recs[v])
                val = sum(x.get("valid", 0) for x in recs[v])
                extra = ""
                if v == "obskit":
                    extra = (f"  chosen rate {statistics.median(x.get('rate', 0) for x in recs[v]):g} Hz, "
                             f"est. pause {statistics.median(x.get('pause', 0) for x in recs[v]):.1%}")
                print(f"{label:9s} {v:24s} speed {statistics.median(r):.3f}x [{min(r):.2f}-{max(r):.2f}]  "
                      f"valid {val / att:.0%} of {att}{extra}" if att else f"{label:9s} {v:24s} no samples", flush=True)
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print(f"total {time.monotonic() - started:.0f} s")
    sys.exit(rc)
