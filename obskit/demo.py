"""The bundled demo service: ``python -m obskit.demo``.

A small, deterministic stand-in for a misbehaving Python service, used by the README
quick start and by the tests.  It has:

* a CPU hot path: ``compute_checksum`` (called from ``handle_request``) burns CPU;
* a lock that threads contend for: ``N`` workers take ``inventory_lock`` and hold it
  while they ``update_inventory`` (so most of them wait in ``acquire``);
* a slow leak: ``remember_session`` appends ~``--leak-kb`` KiB per second to a list
  that is never trimmed.

It prints ``ready PID`` on stdout once every thread runs, then serves for
``--seconds`` (forever by default).  SIGTERM and SIGINT end it cleanly.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import threading
import time

inventory_lock = threading.Lock()
_sessions: list[bytes] = []
_stop = threading.Event()


def compute_checksum(payload: bytes, rounds: int) -> int:
    """The CPU hot path: pure-Python arithmetic over the payload."""
    acc = 0
    for _ in range(rounds):
        for b in payload:
            acc = (acc * 31 + b) % 1_000_003
    return acc


def handle_request(i: int) -> int:
    payload = hashlib.sha256(str(i).encode()).digest()
    return compute_checksum(payload, 40)


def request_loop() -> None:
    i = 0
    while not _stop.is_set():
        handle_request(i)
        i += 1


def update_inventory(hold: float) -> None:
    # Holding the lock while sleeping stands for slow I/O done under a lock.
    time.sleep(hold)


def inventory_worker(hold: float) -> None:
    while not _stop.is_set():
        with inventory_lock:
            update_inventory(hold)


def remember_session(kib: int) -> None:
    _sessions.append(os.urandom(kib * 1024))


def leak_loop(kib_per_second: int) -> None:
    while not _stop.wait(0.1):
        if kib_per_second:
            remember_session(max(1, kib_per_second // 10))


def _allow_sibling_tracer() -> None:
    """Let the sampler obskit starts beside this demo attach to it under Yama's ptrace_scope=1 (the
    Debian and Ubuntu default, where only ancestors may attach): PR_SET_PTRACER_ANY.  Attaching still
    needs the same user; on kernels without Yama the call fails harmlessly."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(0x59616D61, ctypes.c_ulong(-1 & 0xFFFFFFFFFFFFFFFF), 0, 0, 0)  # PR_SET_PTRACER, _ANY
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m obskit.demo", description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--seconds", type=float, default=0.0, help="run this long, then exit (0: until stopped)")
    ap.add_argument("--lock-workers", type=int, default=4, help="threads contending for inventory_lock")
    ap.add_argument("--hold", type=float, default=0.05, help="seconds each worker holds the lock")
    ap.add_argument("--leak-kb", type=int, default=64, help="KiB leaked per second (0: no leak)")
    args = ap.parse_args(argv)

    def _on_signal(signum: int, frame: object) -> None:
        _stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    _allow_sibling_tracer()

    threads = [threading.Thread(target=request_loop, name="request-loop", daemon=True)]
    threads += [
        threading.Thread(target=inventory_worker, args=(args.hold,), name=f"inventory-{i}", daemon=True)
        for i in range(args.lock_workers)
    ]
    threads.append(threading.Thread(target=leak_loop, args=(args.leak_kb,), name="session-cache", daemon=True))
    for t in threads:
        t.start()
    print(f"ready {os.getpid()}", flush=True)
    deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
    while not _stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
        _stop.wait(0.2)
    _stop.set()
    for t in threads:
        t.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
