"""Render time and size of every profile format for a large synthetic profile.

The profile has 1,000,000 samples over 50,000 distinct stacks (depth 8-40, 2,000
functions in 200 files, Zipf-distributed counts over 4 processes x 4 threads), the
size the HTML target is stated for (<= 2 s, <= 10 MB).  Figures are printed, not
asserted: run it on a quiet machine for numbers to compare.

    python benchmarks/render_bench.py [--samples N] [--stacks N] [--repeat N] [--huge-only]

It then runs `obskit profile show FILE -o FILE.html --json` as a separate process on two
generated folded-stack files and prints its wall time, peak RSS and page size (targets for
1M samples / 1M distinct stacks: <= 500 MB peak RSS, <= 10 MB HTML):

- "1M stacks": 1,000,000 lines, each a distinct stack (count 1) of depth 3-12 over 100,000
  functions, the shape the target is stated for;
- "unique leaves": 1,000,000 distinct stacks where every line also has its own leaf function
  (and 60 % their own caller): 1.6 M distinct functions, the shape of the file in which the
  problem was found.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import sys
import tempfile
import time

from obskit.profile.formats import FORMATS, load_profile, render
from obskit.profile.html import render_diff_html, render_html
from obskit.profile.model import Frame, Profile
from obskit.safefile import write_bytes


def synthetic(samples: int = 1_000_000, stacks: int = 50_000, seed: int = 7) -> Profile:
    rnd = random.Random(seed)
    files = [f"/srv/app/pkg{i // 20}/mod{i}.py" for i in range(150)] + [
        f"/usr/lib/python3.11/site-packages/lib{i}/core.py" for i in range(50)]
    funcs = [Frame(f"func_{i}", files[i % len(files)], 10 + (i * 7) % 400) for i in range(2000)]
    callees = {i: rnd.sample(range(2000), rnd.randint(2, 6)) for i in range(2000)}
    prof = Profile()
    prof.metadata.requested_rate = 100
    prof.metadata.duration_s = samples / 100 / 16
    for pid in range(4):
        prof.ensure_process(1000 + pid, cmdline=f"gunicorn: worker {pid}", role="gunicorn-worker")
        for t in range(4):
            prof.ensure_thread(1000 + pid, 2000 + pid * 10 + t, f"thread-{t}")
    seen: set[tuple[int, tuple[int, ...]]] = set()
    weights = [1.0 / (k + 1) ** 0.9 for k in range(stacks)]
    scale = samples / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    counts[0] += samples - sum(counts)
    k = 0
    while k < stacks:
        depth = rnd.randint(8, 40)
        cur = rnd.randrange(20)  # a few entry points, so stacks share prefixes as real ones do
        path = [cur]
        for _ in range(depth - 1):
            cur = rnd.choice(callees[cur])
            path.append(cur)
        thread = rnd.randrange(16)
        key = (thread, tuple(path))
        if key in seen:
            continue
        seen.add(key)
        pid, tid = 1000 + thread // 4, 2000 + (thread // 4) * 10 + thread % 4
        prof.add_stack(pid, tid, [funcs[i] for i in path], counts[k])
        k += 1
    return prof


def write_folded(path: str, lines: int, *, unique_leaves: bool, seed: int = 11) -> None:
    """Folded stacks, one distinct stack per line (count 1), 8 threads."""
    rnd = random.Random(seed)
    pool = 100_000 if not unique_leaves else 3_000
    common = [f"h{i} (app/m{i % 300}.py:{10 + i % 400})" for i in range(pool)]
    with open(path, "w", encoding="utf-8") as fh:
        for k in range(lines):
            parts = [common[rnd.randrange(20)]] + [common[rnd.randrange(pool)] for _ in range(rnd.randint(2, 11))]
            if unique_leaves:
                if k % 5 < 3:
                    parts.append(f"m{k} (g/g{k % 977}.py:{k % 613})")
                parts.append(f"l{k} (g/l{k % 991}.py:{k % 509})")
            else:
                parts.append(f"k{k % 7919} (app/leaf.py:{k % 7})")  # with the random path: distinct per line
            fh.write(f"thread ({10 + k % 8}): w{k % 8};" + ";".join(parts) + " 1\n")


# obskit's CLI in a process that reports its own peak RSS: VmHWM of its memory after exec. (ru_maxrss
# from wait4 would include the benchmark's own memory at fork time, which Linux carries over exec.)
_MEASURED = """
import sys
from obskit.commands import main
code = main(sys.argv[1:])
hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
sys.stderr.write("VMHWM " + hwm.split()[1] + chr(10))
sys.exit(code)
"""


def huge_case(tmp: str, name: str, lines: int, unique_leaves: bool) -> None:
    import json
    import subprocess

    src = os.path.join(tmp, f"{name.replace(' ', '-')}.collapsed")
    write_folded(src, lines, unique_leaves=unique_leaves)
    page = src + ".html"
    out_path, err_path = src + ".out", src + ".err"
    t = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", _MEASURED, "profile", "show", src, "-o", page, "--json",
                                 "-n", "5"], stdout=out, stderr=err)
        proc.wait()
    wall = time.perf_counter() - t
    stdout, stderr = open(out_path, encoding="utf-8").read(), open(err_path, encoding="utf-8").read()
    m_hwm = re.search(r"^VMHWM (\d+)$", stderr, re.M)
    if not m_hwm:
        raise SystemExit(f"{name}: no peak RSS reported: {stderr.strip()[-500:]}")
    peak = int(m_hwm.group(1))  # KiB
    if proc.returncode != 0:
        raise SystemExit(f"{name}: obskit failed ({proc.returncode}): {stderr.strip()[-500:]}")
    rep = json.loads(stdout)
    if rep["total_samples"] != lines or not os.path.exists(page):
        raise SystemExit(f"{name}: wrong result ({rep['total_samples']} samples, page exists: {os.path.exists(page)})")
    html = open(page, encoding="utf-8").read()
    m = re.search(r'"pruned":(\d+)', html)
    if not m or '"mode":"profile"' not in html:
        raise SystemExit(f"{name}: the page has no flame-graph data")
    pruned = int(m.group(1)) / lines
    warned = "[other]" in stderr or any("[other]" in w for w in rep["metadata"]["warnings"]) or \
        any("[other]" in n for o in rep["outputs"] for n in o.get("notes", []))
    if pruned > 0.01 and not warned:
        raise SystemExit(f"{name}: {pruned:.1%} pruned without a warning")
    print(f"{name:<14} {os.path.getsize(src) / 1e6:>7.0f} MB in  {wall:>6.1f} s  peak RSS {peak / 1024:>6.0f} MB  "
          f"html {os.path.getsize(page) / 1e6:>5.2f} MB  pruned {pruned:.1%} (warned: {warned})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--stacks", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--huge-only", action="store_true", help="only the `profile show` runs on generated files")
    args = ap.parse_args(argv)
    huge(args.samples)
    if args.huge_only:
        return 0
    t0 = time.perf_counter()
    prof = synthetic(args.samples, args.stacks)
    print(f"synthetic profile: {prof.total_samples:,} samples, {len(prof.samples):,} distinct stacks, "
          f"{len(prof.frames):,} frames (built in {time.perf_counter() - t0:.2f} s); best of {args.repeat}")
    print(f"{'format':<11} {'render s':>9} {'size MB':>9} {'gzip MB':>8} {'load s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in FORMATS:
            best, data = float("inf"), b""
            for _ in range(args.repeat):
                t = time.perf_counter()
                data = render(prof, fmt)
                best = min(best, time.perf_counter() - t)
            path = os.path.join(tmp, "p." + {"speedscope": "speedscope.json", "pprof": "pb.gz",
                                                "trace-event": "trace.json"}.get(fmt, fmt))
            write_bytes(path, data)
            load = ""
            if fmt != "html":
                t = time.perf_counter()
                back = load_profile(path)
                load = f"{time.perf_counter() - t:.2f}"
                assert back.total_samples == prof.total_samples, (fmt, back.total_samples)
            gz = len(gzip.compress(data, 6)) if fmt != "pprof" else len(data)
            print(f"{fmt:<11} {best:>9.2f} {len(data) / 1e6:>9.2f} {gz / 1e6:>8.2f} {load:>7}")
        for share in (0.0, 0.001):
            t = time.perf_counter()
            data = render_html(prof, min_share=share, max_nodes=10**9 if share == 0 else 120_000)
            print(f"html min_share={share:g}: {time.perf_counter() - t:.2f} s, {len(data) / 1e6:.2f} MB")
        other = synthetic(args.samples, args.stacks, seed=8)
        t = time.perf_counter()
        data = render_diff_html(prof, other)
        print(f"diff html (two such profiles): {time.perf_counter() - t:.2f} s, {len(data) / 1e6:.2f} MB")
    print("targets: html <= 2 s and <= 10 MB")
    return 0


def huge(lines: int) -> None:
    print(f"obskit profile show of {lines:,} distinct stacks (one process each; targets: <= 500 MB, <= 10 MB html)")
    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as tmp:
        huge_case(tmp, "1M stacks", lines, unique_leaves=False)
        huge_case(tmp, "unique leaves", lines, unique_leaves=True)


if __name__ == "__main__":
    sys.exit(main())
