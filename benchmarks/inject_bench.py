"""How long `--inject` stops the target, per attach (median and max), against a bare gdb attach.

For each Python build found here (pyenv shared-library builds, Debian's static build), a target
serving HTTP on loopback is attached and detached ``--cycles`` times with
:func:`obskit.agent.inject.inject` (gdb path); every attach must end with the agent answering
``hello``, every detach with its socket gone.  The stop is what gdb measures between its
``attach`` and its ``detach`` (the target is stopped for at most that long).  The peer, measured
interleaved in the same run, is gdb attaching and detaching with the same settings and doing
nothing else: the ratio is what the mmap, the copy and the Py_AddPendingCall add to the stop.
A client requests the target throughout; lost requests are counted.

    python benchmarks/inject_bench.py [--cycles 20]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from obskit.agent.client import find_socket  # noqa: E402
from obskit.agent.inject import detach, inject  # noqa: E402

SERVER = r"""
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print("ready", s.server_address[1], flush=True)
s.serve_forever()
"""


def builds() -> list[str]:
    others = ("/usr/bin/python3.11", "/root/.pyenv/versions/3.9.18/bin/python3", "/root/.pyenv/versions/3.13.0/bin/python3")
    return [sys.executable, *(exe for exe in others if Path(exe).exists())]


def bare_gdb_stop(pid: int) -> float:
    """The peer: gdb attach + detach with the same settings, nothing else."""
    out = subprocess.run(
        ["gdb", "-nx", "-batch", "-q", "-iex", "set debuginfod enabled off", "-iex", "set auto-solib-add off",
         "-iex", "set auto-load off", "-iex", "set sysroot /nonexistent",
         "-ex", "python import time; _t0 = time.monotonic()", "-ex", f"attach {pid}", "-ex", "detach",
         "-ex", "python print('STOP %.6f' % (time.monotonic() - _t0))"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL).stdout
    m = re.search(r"^STOP ([\d.]+)$", out, re.M)
    assert m, out
    return float(m.group(1))


def run(exe: str, cycles: int) -> tuple[list[float], list[float], int, int]:
    proc = subprocess.Popen([exe, "-u", "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    stop = threading.Event()
    counts = {"ok": 0, "lost": 0}

    def one() -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                counts["ok" if r.read() == b"ok" else "lost"] += 1
        except OSError:
            counts["lost"] += 1

    def load() -> None:
        while not stop.is_set():
            one()

    t = threading.Thread(target=load)
    t.start()
    ours: list[float] = []
    peer: list[float] = []
    try:
        for i in range(cycles):
            if i % 2:
                peer.append(bare_gdb_stop(proc.pid))
            res = inject(proc.pid)
            assert res.method == "gdb" and res.paused_s is not None and not res.paused_at_most, res
            ours.append(res.paused_s)
            detach(proc.pid)
            assert find_socket(proc.pid) is None
            if not i % 2:
                peer.append(bare_gdb_stop(proc.pid))
    finally:
        stop.set()
        t.join(30)
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(10)
    assert alive, "the target died"
    return ours, peer, counts["ok"], counts["lost"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20)
    args = ap.parse_args()
    if shutil.which("gdb") is None:
        sys.exit("gdb is not installed")
    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as d:
        os.environ["OBSKIT_AGENT_DIR"] = str(Path(d) / "agent")
        print(f"{'target':44} {'stop median':>12} {'stop max':>9} {'bare gdb median':>16} {'ratio':>6} {'requests':>9} {'lost':>5}")
        for exe in builds():
            t0 = time.monotonic()
            ours, peer, ok, lost = run(exe, args.cycles)
            ver = subprocess.run([exe, "-c", "import platform; print(platform.python_version())"], capture_output=True,
                                 text=True).stdout.strip()
            name = f"{exe} ({ver})"
            med, pmed = statistics.median(ours), statistics.median(peer)
            print(f"{name[:44]:44} {med * 1e3:10.1f}ms {max(ours) * 1e3:7.1f}ms {pmed * 1e3:14.1f}ms "
                  f"{med / pmed:6.2f} {ok:9d} {lost:5d}   ({args.cycles} attaches, {time.monotonic() - t0:.0f}s)")


if __name__ == "__main__":
    main()
