"""Cost of `obskit trace exec -- true` against bare `true` and `python -c pass`.

Goal (issue "trace"): at most 100 ms added over running the bare command, with a collector up.

Cases, run interleaved (A B C ... A B C ...) so load changes hit every case alike:
bare `true`; `python -c pass` (the interpreter's own floor); `obskit --version` (the full
CLI's floor); `trace exec -- true` exporting to a loopback OTLP/HTTP receiver that decodes
every span; the same writing the local span file; the same with the collector down
(connection refused -> spooled).  Before printing, each case's output is checked: the
receiver got one span per run, the span file has one line per run, the spool one batch
per run — a case that silently did nothing would look fast.

Wall time is what a script feels; CPU time (user+sys of the child) is printed beside it
because it moves much less when other work shares the machine.  The installed `obskit`
entry point is used (the one next to this interpreter), as a user runs it; bytecode
caching is on, as in an installed package.

    python benchmarks/trace_bench.py [runs]
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


# `trace exec` as it ran before the fast entry: through the typer CLI (same core code).
FULL_CLI = "import sys; from obskit.commands import main; sys.exit(main(['trace', 'exec', '--', 'true']))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _obskit() -> list[str]:
    exe = Path(sys.executable).parent / "obskit"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("obskit")
    return [found] if found else [sys.executable, "-m", "obskit"]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu, rc


def main(argv: list[str]) -> int:
    from otlp_receiver import OtlpHttpReceiver

    runs = int(argv[0]) if argv else 15
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACE", "OBSKIT_"))}
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode cached
    base.pop("BAGGAGE", None)
    state = {name: tempfile.mkdtemp(prefix=f"obskit-trace-bench-{name}-") for name in ("up", "full", "file", "down")}
    obskit = _obskit()
    with OtlpHttpReceiver() as rx:
        envs = {
            "up": {**base, "OBSKIT_TRACE_DIR": state["up"], "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint},
            "full": {**base, "OBSKIT_TRACE_DIR": state["full"], "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint},
            "file": {**base, "OBSKIT_TRACE_DIR": state["file"]},
            "down": {
                **base,
                "OBSKIT_TRACE_DIR": state["down"],
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
            },
        }
        cases: list[tuple[str, list[str], dict[str, str]]] = [
            ("true", ["true"], base),
            ("python -c pass", [sys.executable, "-c", "pass"], base),
            ("obskit --version", [*obskit, "--version"], base),
            ("trace exec -- true (collector up)", [*obskit, "trace", "exec", "--", "true"], envs["up"]),
            ("  same, through the full CLI (typer)", [sys.executable, "-c", FULL_CLI], envs["full"]),
            ("trace exec -- true (span file)", [*obskit, "trace", "exec", "--", "true"], envs["file"]),
            ("trace exec -- true (collector down)", [*obskit, "trace", "exec", "--", "true"], envs["down"]),
        ]
        for _, cmd, env in cases:  # warm-up: bytecode written, page cache warm (not counted)
            _run(cmd, env)
        warm_spans = len(rx.wait_for_spans(2, timeout=30))
        wall: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _ in range(runs):
            for name, cmd, env in cases:
                w, c, rc = _run(cmd, env)
                if rc != 0:
                    print(f"FAILED: {name} exited {rc}", file=sys.stderr)
                    return 1
                wall[name].append(w)
                cpu[name].append(c)
        # Every case did its work: one span per run at the receiver, in the file, in the spool.
        got = len(rx.wait_for_spans(warm_spans + 2 * runs, timeout=60))
    problems = []
    if got != warm_spans + 2 * runs:
        problems.append(f"receiver got {got - warm_spans} spans for {2 * runs} runs")
    lines = [json.loads(line) for line in Path(state["file"], "spans.otlp.jsonl").read_text().splitlines()]
    if len(lines) != runs + 1:
        problems.append(f"span file has {len(lines)} lines for {runs + 1} runs")
    spooled = list(Path(state["down"], "spool").glob("*.pb"))
    if len(spooled) != runs + 1:
        problems.append(f"spool has {len(spooled)} batches for {runs + 1} runs")
    for d in state.values():
        shutil.rmtree(d, ignore_errors=True)
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    mw = {k: statistics.median(v) * 1000 for k, v in wall.items()}
    mc = {k: statistics.median(v) * 1000 for k, v in cpu.items()}
    print(f"obskit: {' '.join(obskit)}")
    print(f"runs per case: {runs} (interleaved), medians; every span checked at the receiver, file and spool")
    print(f"  {'case':38s} {'wall ms':>8s} {'cpu ms':>7s} {'added wall':>11s} {'x python -c pass':>17s}")
    for name in wall:
        print(
            f"  {name:38s} {mw[name]:8.1f} {mc[name]:7.1f} {mw[name] - mw['true']:+10.1f}"
            f" {mw[name] / mw['python -c pass']:17.2f}"
        )
    added = mw["trace exec -- true (collector up)"] - mw["true"]
    verdict = "within" if added <= 100 else "OVER"
    print(f"trace exec -- true, collector up: {added:+.1f} ms over bare `true` ({verdict} the 100 ms goal); "
          f"python -c pass alone costs {mw['python -c pass'] - mw['true']:+.1f} ms")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"note: load average {load:.1f} on {os.cpu_count()} CPUs while measuring; wall times are inflated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
