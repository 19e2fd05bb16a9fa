"""How much sampling costs the target, and whether it tells the truth: obskit's default on a quiet and a loaded machine.

Workloads (each a fresh Python process that times its own loop over a window opened by
SIGUSR1 once the sampler samples, so start-up and output writing are excluded):

* ``shallow``: one thread, a 2-call stack;
* ``deep``: one thread, recursion 300-800 frames deep (a different depth every call);
* ``mixed``: one spinning thread and seven threads blocked for good (a lock, two socket
  reads, sleeps): every sample outside the spinner is a blocked thread counted as CPU.

Each runs *quiet* and *loaded* (three CPU burners started by this script beside it, on
this 2-core machine).  Runs are interleaved alone / sampled / alone ...; the target's speed
is its sampled calls/s over the mean of the runs alone just before and after.

The **measured pause** is the share of the window the target's working thread was neither
running nor waiting for a CPU: from ``/proc/self/task/TID/schedstat`` (run time and run-queue
wait, ns) read by the target itself at both ends of the window, stopped = wall - run - wait.
A thread stopped by ptrace is in neither, so this is what blocking sampling costs it; the
same figure for the runs alone is the noise floor (printed).  The **estimated pause** is
obskit's own ``pause_share``.

Goals (printed PASS/MISS): shallow >= 80 Hz effective quiet and >= 50 Hz loaded; deep keeps
>= 0.95x speed with >= 90 % valid samples; blocked-thread share <= 5 %; estimated pause
within 2x of measured (or both under 0.5 %).

Usage: python benchmarks/overhead.py [--quick] [--reps N] [--seconds S] [--workloads shallow,deep,mixed]
       [--loads quiet,loaded] [--pyspy] (adds py-spy 100 Hz blocking/nonblocking rows)
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
from typing import Any

TARGET = r"""
import os, socket, sys, threading, time, signal
sys.setrecursionlimit(5000)
kind, seconds = sys.argv[1], float(sys.argv[2])
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
def spin_hot():
    return leaf()
def lock_waiter(lock):
    with lock:
        pass
def socket_reader(s):
    s.recv(1)
def long_sleeper():
    time.sleep(100000)
n = [0]
def deep():
    n[0] += 1
    return a(300 + (n[0] * 37) % 500)
work = {"shallow": shallow, "deep": deep, "mixed": spin_hot}[kind]
if kind == "mixed":
    lock = threading.Lock(); lock.acquire()
    pairs = [socket.socketpair() for _ in range(2)]
    ts = [threading.Thread(target=lock_waiter, args=(lock,), daemon=True) for _ in range(3)]
    ts += [threading.Thread(target=socket_reader, args=(p,), daemon=True) for p, _ in pairs]
    ts += [threading.Thread(target=long_sleeper, daemon=True) for _ in range(2)]
    for t in ts:
        t.start()
tid = threading.get_native_id()
def sched():
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        run, wait = f.read().split()[:2]
    return time.perf_counter(), int(run) / 1e9, int(wait) / 1e9
state = {"t0": None, "calls": 0}
def go(*_):
    state["t0"] = sched(); state["calls"] = 0
signal.signal(signal.SIGUSR1, go)
print("ready", flush=True)
while True:
    work()
    state["calls"] += 1
    t0 = state["t0"]
    if t0 is not None and time.perf_counter() - t0[0] >= seconds:
        break
w1, r1, q1 = sched()
w0, r0, q0 = t0
wall = w1 - w0
print(f"calls_per_s={state['calls'] / wall:.2f} stopped={max(0.0, wall - (r1 - r0) - (q1 - q0)) / wall:.5f}", flush=True)
"""

PYSPY = os.path.join(os.path.dirname(sys.executable), "py-spy")
BLOCKED = ("lock_waiter", "socket_reader", "long_sleeper")


def _run(kind: str, seconds: float, variant: str, tmp: str) -> dict[str, Any]:
    t = subprocess.Popen([sys.executable, "-c", TARGET, kind, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert t.stdout is not None
    assert t.stdout.readline().startswith("ready"), "the target did not start"
    time.sleep(0.2)
    prof = None
    out = os.path.join(tmp, "out.json" if variant == "obskit" else "out.txt")
    if variant == "obskit":
        prof = subprocess.Popen([sys.executable, "-m", "obskit", "profile", "record", "--pid", str(t.pid), "-d",
                                 str(seconds + 60), "-n", "60", "--json", "-o", out], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    elif variant.startswith("py-spy"):
        cmd = [PYSPY, "record", "-r", "100", "-f", "raw", "--threads", "-o", out, "--pid", str(t.pid)]
        if "nonblocking" in variant:
            cmd.append("--nonblocking")
        prof = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if prof is not None:
        stream = prof.stderr if variant == "obskit" else prof.stdout
        assert stream is not None
        for text in stream:
            if "recording process" in text or "Sampling process" in text:
                break
    os.kill(t.pid, signal.SIGUSR1)
    line = t.stdout.read()
    t.wait()
    m = re.search(r"calls_per_s=([\d.]+) stopped=([\d.]+)", line)
    if m is None:
        raise SystemExit(f"{kind}/{variant}: the target printed no figures: {line!r}")
    rec: dict[str, Any] = {"calls_per_s": float(m.group(1)), "stopped": float(m.group(2))}
    if prof is None:
        return rec
    if prof.poll() is None:
        prof.send_signal(signal.SIGINT)
    stdout = prof.communicate(timeout=120)[0] or ""
    if variant == "obskit":
        try:
            data = json.loads(stdout)
        except ValueError:
            raise SystemExit(f"{kind}/obskit: no report (exit {prof.returncode})") from None
        md = data["metadata"]
        if not md["samples_attempted"]:
            raise SystemExit(f"{kind}/obskit: no samples")
        rec.update(valid=md["samples_valid"], attempted=md["samples_attempted"], rate=md["effective_rate"] or 0.0,
                   pause=md["pause_share"] or 0.0, mode=md["mode"])
        shares = {f["name"]: f["total_share"] for f in data["top_functions"]}
        rec["blocked"] = sum(shares.get(b, 0.0) for b in BLOCKED)
    else:
        mm = re.search(r"Samples: (\d+) Errors: (\d+)", stdout)
        if mm is None:
            raise SystemExit(f"{kind}/{variant}: py-spy wrote no summary")
        rec.update(valid=int(mm.group(1)), attempted=int(mm.group(1)) + int(mm.group(2)))
        total = blocked = 0
        with open(out) as f:
            for ln in f:
                stack, _, cnt = ln.rpartition(" ")
                if cnt.strip().isdigit():
                    total += int(cnt)
                    blocked += int(cnt) if any(b in stack for b in BLOCKED) else 0
        rec["blocked"] = blocked / total if total else 0.0
    return rec


def _burners(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _goal(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--quick", action="store_true", help="3 reps of 4 s (figures are rough)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--workloads", default="shallow,deep,mixed")
    ap.add_argument("--loads", default="quiet,loaded")
    ap.add_argument("--pyspy", action="store_true", help="also py-spy 100 Hz blocking and nonblocking")
    ap.add_argument("--verbose", action="store_true", help="print every run")
    args = ap.parse_args()
    reps, seconds = (3, 4.0) if args.quick else (args.reps, args.seconds)
    variants = ["obskit"] + (["py-spy-100-blocking", "py-spy-100-nonblocking"] if args.pyspy else [])
    print(f"{reps} interleaved reps of {seconds:g} s per variant; py-spy {PYSPY}; {os.cpu_count()} CPUs")
    header = (f"{'workload':8s} {'load':6s} {'variant':23s} {'mode':11s} {'eff. Hz':>7s} {'valid':>6s} "
              f"{'speed':>17s} {'blocked':>7s} {'pause est.':>10s} {'measured':>8s} {'floor':>6s}")
    rows: list[str] = []
    goals: list[str] = []
    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as tmp:
        for load in args.loads.split(","):
            burners = _burners(3) if load == "loaded" else []
            try:
                time.sleep(0.5)
                for kind in args.workloads.split(","):
                    ratios: dict[str, list[float]] = {v: [] for v in variants}
                    recs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
                    alone_stopped: list[float] = []
                    first = _run(kind, seconds, "alone", tmp)
                    prev = first["calls_per_s"]
                    alone_stopped.append(first["stopped"])
                    for _ in range(reps):
                        for v in variants:
                            rec = _run(kind, seconds, v, tmp)
                            nxt_rec = _run(kind, seconds, "alone", tmp)
                            nxt = nxt_rec["calls_per_s"]
                            alone_stopped.append(nxt_rec["stopped"])
                            if args.verbose:
                                print(f"  {kind}/{load} {v}: {rec} between alone {prev:.0f} and {nxt:.0f}", flush=True)
                            ratios[v].append(rec["calls_per_s"] / ((prev + nxt) / 2))
                            recs[v].append(rec)
                            prev = nxt
                    floor = statistics.median(alone_stopped)
                    for v in variants:
                        rs, rc = ratios[v], recs[v]
                        att = sum(x["attempted"] for x in rc)
                        val = sum(x["valid"] for x in rc)
                        speed = statistics.median(rs)
                        blocked = statistics.median(x["blocked"] for x in rc)
                        measured = max(0.0, statistics.median(x["stopped"] for x in rc) - floor)
                        if v == "obskit":
                            rate = statistics.median(x["rate"] for x in rc)
                            est = statistics.median(x["pause"] for x in rc)
                            mode = "/".join(sorted({x["mode"] for x in rc}))
                            est_s, rate_s = f"{est:.2%}", f"{rate:.0f}"
                        else:
                            est_s, rate_s, mode = "-", "-", "blocking" if "-blocking" in v else "nonblocking"
                        rows.append(f"{kind:8s} {load:6s} {v:23s} {mode:11s} {rate_s:>7s} {val / att:>6.0%} "
                                    f"{speed:>5.2f}x [{min(rs):.2f}-{max(rs):.2f}] "
                                    f"{blocked if kind == 'mixed' else 0:>7.1%} {est_s:>10s} {measured:>8.2%} "
                                    f"{floor:>6.2%}")
                        print(rows[-1], flush=True)
                        if v != "obskit":
                            continue
                        if kind == "shallow":
                            need = 80 if load == "quiet" else 50
                            goals.append(f"{_goal(rate >= need)} shallow {load}: {rate:.0f} Hz effective (goal >= {need})")
                        if kind == "deep":
                            goals.append(f"{_goal(speed >= 0.95 and val / att >= 0.9)} deep {load}: speed {speed:.2f}x, "
                                         f"{val / att:.0%} valid (goal >= 0.95x, >= 90 %)")
                        if kind == "mixed":
                            goals.append(f"{_goal(blocked <= 0.05)} mixed {load}: blocked threads {blocked:.1%} of "
                                         "samples (goal <= 5 %)")
                        close = (max(est, measured) < 0.005) or (measured > 0 and 0.5 <= est / measured <= 2.0)
                        goals.append(f"{_goal(close)} {kind} {load}: pause estimated {est:.2%}, measured {measured:.2%} "
                                     "(goal within 2x, or both < 0.5 %)")
            finally:
                for b in burners:
                    b.kill()
                for b in burners:
                    b.wait()
    print()
    print(header)
    for r in rows:
        print(r)
    print()
    for g in goals:
        print(g)
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print(f"total {time.monotonic() - started:.0f} s")
    sys.exit(rc)
