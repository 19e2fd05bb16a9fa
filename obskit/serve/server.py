"""Collect in the background, serve the last rendered bytes: a scrape never waits.

A ticker thread fires every ``interval``; a worker thread collects and renders.  When the worker
is still busy at a tick (a slow /proc read, a hung agent), the tick is skipped and counted, never
queued.  The worker swaps one reference to immutable bytes; the HTTP handler reads that
reference and appends a small health block (snapshot age, skips, errors) rendered at scrape
time, so the age keeps rising while a collection is stuck.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from obskit.errors import ObskitError, UsageError
from obskit.proc import ProcFS
from obskit.serve.collect import Snapshot
from obskit.serve.exposition import CONTENT_TYPE, Renderer, render_health

DEFAULT_LISTEN = "127.0.0.1:9464"
MAX_CONNECTIONS = 32


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` = loopback) → (host, port); UsageError on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise UsageError(f"--listen {text!r} is not HOST:PORT", f"e.g. --listen {DEFAULT_LISTEN}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        n = int(port)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise UsageError(f"--listen {text!r}: port must be 0-65535", f"e.g. --listen {DEFAULT_LISTEN}")
    return host, n


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Health:
    started: float = field(default_factory=time.time)
    collections: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_duration: float = 0.0
    last_snapshot: float | None = None
    extra: Callable[[], dict[str, tuple[str, str, Any]]] | None = None


class Loop:
    """The background collection: ticker + worker; ``body()`` is what a scrape returns."""

    def __init__(self, collect: Callable[[], Snapshot], renderer: Renderer, interval: float,
                 on_snapshot: Callable[[Snapshot], None] | None = None) -> None:
        self.collect_fn = collect
        self.renderer = renderer
        self.interval = interval
        self.on_snapshot = on_snapshot
        self.health = Health()
        self.snapshot: Snapshot | None = None
        self._bytes = b""
        self._busy = threading.Event()
        self._go = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, target in (("obskit-serve-collect", self._worker), ("obskit-serve-tick", self._ticker)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def _ticker(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self._busy.is_set():
                self.health.skipped += 1
            else:
                self._busy.set()
                self._go.set()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a suspended process): restart the schedule, do not catch up
                next_at, delay = time.monotonic(), 0.0
            self._stop.wait(delay)

    def _worker(self) -> None:
        while not self._stop.is_set():
            self._go.wait()
            self._go.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
            finally:
                self._busy.clear()

    def run_once(self) -> None:
        t0 = time.monotonic()
        try:
            snap = self.collect_fn()
            data = self.renderer.render(snap)
        except Exception as e:  # a collection that fails keeps the last good bytes and is counted
            kind = type(e).__name__
            self.health.errors[kind] = self.health.errors.get(kind, 0) + 1
            return
        finally:
            self.health.last_duration = time.monotonic() - t0
        for kind, n in snap.errors.items():
            self.health.errors[kind] = self.health.errors.get(kind, 0) + n
        self.snapshot = snap
        self._bytes = data  # one reference swap: readers see the old or the new bytes, whole
        self.health.collections += 1
        self.health.last_snapshot = snap.taken_at
        if self.on_snapshot is not None:
            self.on_snapshot(snap)

    def body(self) -> bytes:
        data = self._bytes
        h = self.health
        now = time.time()
        age = now - (h.last_snapshot if h.last_snapshot is not None else h.started)
        values: dict[str, tuple[str, str, Any]] = {
            "obskit_serve_snapshot_age_seconds": ("gauge", "Seconds since the snapshot served was taken.", age),
            "obskit_serve_snapshot_timestamp_seconds": ("gauge", "When the snapshot served was taken (0: none yet).",
                                                         h.last_snapshot or 0.0),
            "obskit_serve_collection_duration_seconds": ("gauge", "How long the latest collection took.",
                                                         h.last_duration),
            "obskit_serve_collections": ("counter", "Collections completed.", h.collections),
            "obskit_serve_collections_skipped": ("counter",
                                                 "Collections skipped because the previous one overran its interval.",
                                                 h.skipped),
            "obskit_serve_collection_errors": ("counter", "Reads that failed during collections, by kind.",
                                               dict(h.errors)),
        }
        if h.extra is not None:
            values.update(h.extra())
        return data + render_health(values)


class _Handler(BaseHTTPRequestHandler):
    server_version = "obskit-serve"
    sys_version = ""
    timeout = 10
    loop: Loop

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = self.server.loop.body()  # type: ignore[attr-defined]
            self._send(200, body, CONTENT_TYPE)
        elif path == "/":
            self._send(200, b"obskit serve: metrics at /metrics\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], loop: Loop) -> None:
        self.loop = loop
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # too many open connections: refuse, never pile up threads
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def bind(listen: str, loop: Loop) -> MetricsServer:
    host, port = parse_listen(listen)
    try:
        return MetricsServer((host, port), loop)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"cannot listen on {listen}: address already in use",
                             "stop what listens there or pick another --listen port") from None
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(e, socket.gaierror):
            raise UsageError(f"cannot listen on {listen}: {e.strerror or e}", "give an address of this host") from None
        if e.errno == errno.EACCES:
            raise UsageError(f"cannot listen on {listen}: permission denied",
                             "use a port above 1023 or run as root") from None
        raise


def own_usage() -> tuple[float, int | None]:
    """obskit's CPU seconds (itself and its reaped children, e.g. py-spy) and its RSS in bytes."""
    t = os.times()
    rss = None
    try:
        rss = int(ProcFS().read_text("self", "statm").split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (ObskitError, OSError, ValueError, IndexError):
        pass
    return t.user + t.system + t.children_user + t.children_system, rss
