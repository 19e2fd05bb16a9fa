"""How long `obskit ps` takes to read every process, against `ps` and psutil on the same box, same run.

Usage: python benchmarks/ps_bench.py [EXTRA_PROCESSES] [ROUNDS]

Starts EXTRA_PROCESSES helpers (a fifth of them Python, the rest `sleep`) so the box has
hundreds of processes, then times, interleaved, ROUNDS times each:
  * obskit's collector (/proc facts for every process, Python version from exe/maps, roles)
    with the CPU interval off, so only the reading cost is measured;
  * `ps -eo pid,ppid,rss,nlwp,etimes,args` (procps, a subprocess: its start-up included);
  * psutil.process_iter over the same fields, plus exe and memory_maps for the Python check
    (what a psutil-based tool needs to find Python without attaching).
Prints medians and ratios; the machine is shared and noisy, so read ratios, not absolutes.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _time(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def obskit_ps() -> None:
    from obskit.ps import collect

    collect(interval=0)


def procps() -> None:
    subprocess.run(["ps", "-eo", "pid,ppid,rss,nlwp,etimes,args"], capture_output=True, check=True)


def psutil_iter() -> None:
    import psutil

    for p in psutil.process_iter(["pid", "ppid", "name", "cmdline", "exe", "memory_info", "num_threads", "create_time"]):
        if "python" not in (p.info["name"] or ""):
            _maps_have_python(p)


def _maps_have_python(p: object) -> bool:
    import psutil

    try:
        return any("libpython" in m.path for m in p.memory_maps())  # type: ignore[attr-defined]
    except (psutil.Error, OSError):
        return False


def main() -> int:
    extra = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(extra):
            cmd = [sys.executable, "-c", "import time; time.sleep(600)"] if i % 5 == 0 else ["sleep", "600"]
            helpers.append(subprocess.Popen(cmd))
        time.sleep(1.0)  # let the Python helpers map their libraries
        import psutil  # noqa: F401  (import cost outside the timed region, for every contender)

        from obskit.ps import collect

        n = len(collect(interval=0, include_all=True).processes)
        timings: dict[str, list[float]] = {"obskit ps (collect)": [], "ps -eo (procps)": [], "psutil iter + maps": []}
        for _ in range(rounds):
            timings["obskit ps (collect)"].append(_time(obskit_ps))
            timings["ps -eo (procps)"].append(_time(procps))
            timings["psutil iter + maps"].append(_time(psutil_iter))
        base = statistics.median(timings["ps -eo (procps)"])
        print(f"processes visible: {n}; rounds: {rounds}")
        for name, values in timings.items():
            med = statistics.median(values)
            print(f"{name:22s} median {med * 1000:7.1f} ms  [{min(values) * 1000:.1f}-{max(values) * 1000:.1f}]  "
                  f"x{med / base:.2f} of procps")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "obskit", "ps", "--interval", "0.3"], capture_output=True, check=True)
        print(f"whole command `obskit ps` (incl. interpreter start-up and the 0.3 s CPU interval): "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")
    finally:
        for h in helpers:
            h.kill()
        for h in helpers:
            h.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
