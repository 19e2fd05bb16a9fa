"""Cost of `obskit trace exec -- true` against bare `true` and `python -c pass`.

Runs interleaved (A B C D A B C D ...) so load changes hit every case alike, and
prints medians and ratios.  Cases: bare `true`, `python -c pass`, `obskit --version`
(the CLI's own floor), `trace exec -- true` writing the local span file, and
`trace exec -- true` with the collector down (connection refused -> spooled).

    python benchmarks/trace_bench.py [runs]
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 15
    state = tempfile.mkdtemp(prefix="obskit-trace-bench-")
    env = {**os.environ, "OBSKIT_TRACE_DIR": state}
    for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "TRACEPARENT"):
        env.pop(k, None)
    down = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}"}
    obskit = [sys.executable, "-m", "obskit"]
    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("true", ["true"], env),
        ("python -c pass", [sys.executable, "-c", "pass"], env),
        ("obskit --version", [*obskit, "--version"], env),
        ("trace exec -- true (file)", [*obskit, "trace", "exec", "--", "true"], env),
        ("trace exec -- true (collector down)", [*obskit, "trace", "exec", "--", "true"], down),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(runs):
        for name, cmd, e in cases:
            t0 = time.perf_counter()
            subprocess.run(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"runs per case: {runs} (interleaved); medians:")
    for name in times:
        print(
            f"  {name:38s} {med[name] * 1000:8.1f} ms   x{med[name] / med['true']:7.1f} vs true"
            f"   x{med[name] / med['python -c pass']:5.2f} vs python -c pass"
        )
    extra = med["trace exec -- true (file)"] - med["obskit --version"]
    print(f"trace exec over the CLI floor (obskit --version): {extra * 1000:+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
