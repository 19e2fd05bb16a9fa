"""Profiles to Pyroscope's ingest API, with a bounded on-disk spool while the server is down.

``POST {url}/ingest?name=APP.cpu{k=v,...}&from=UNIX&until=UNIX&format=pprof&sampleRate=HZ&spyName=pyspy``
with the pprof as multipart form data in a part named ``profile`` (as Pyroscope's server API
documents).  A push that fails is written to the spool (0700 directory, 0600 files) and replayed,
oldest first, when the server answers again.  Delivery is at-least-once: a push that timed out
after the server had taken it is sent again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from obskit.errors import InputError

SPYNAME = "pyspy"
_LABEL_KEY = re.compile(r"[^A-Za-z0-9_]")
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.:/@-]")
MAX_ENTRY = 16 * 1024 * 1024  # a spooled push larger than this is not replayed (not ours)


@dataclass
class Push:
    app: str
    labels: dict[str, str]
    start: float  # epoch seconds: the slice's real bounds
    end: float
    sample_rate: int
    pprof: bytes

    def name(self) -> str:
        app = _LABEL_VALUE.sub("_", self.app)[:100] or "python"
        labels = ",".join(f"{_LABEL_KEY.sub('_', k)}={_LABEL_VALUE.sub('_', v)[:120]}"
                          for k, v in sorted(self.labels.items()) if v)
        return f"{app}.cpu{{{labels}}}"

    def query(self) -> dict[str, str]:
        return {"name": self.name(), "from": str(int(self.start)), "until": str(int(-(-self.end // 1))),
                "format": "pprof", "sampleRate": str(self.sample_rate), "spyName": SPYNAME}


def multipart(pprof: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + pprof + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--profile-to {url!r} is not an http(s) URL", "e.g. --profile-to http://pyroscope:4040")
    return url.rstrip("/")


def send(url: str, query: dict[str, str], pprof: bytes, timeout: float) -> None:
    """One POST; raises OSError (urllib errors included) on anything but a 2xx answer."""
    body, ctype = multipart(pprof)
    req = urllib.request.Request(f"{url}/ingest?{urllib.parse.urlencode(query)}", data=body, method="POST",
                                 headers={"Content-Type": ctype, "User-Agent": "obskit-serve"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read(65536)
        if not 200 <= resp.status < 300:
            raise OSError(f"HTTP {resp.status}")


@dataclass
class Stats:
    pushed: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    last_error: str = ""


def _spool_dir(path: Path) -> Path:
    from obskit.state import private_dir

    try:
        return private_dir(path)
    except OSError as e:
        raise InputError(f"spool directory {path} is not a directory owned by this user ({e.strerror or e})",
                         "choose another --spool-dir") from None


class Pusher:
    """Push now, or spool; ``replay()`` sends what is spooled (oldest first) while the server answers."""

    def __init__(self, url: str, spool_dir: Path, *, max_bytes: int = 64 << 20, max_files: int = 2000,
                 timeout: float = 10.0) -> None:
        self.url = check_url(url)
        self.dir = _spool_dir(spool_dir)
        self.max_bytes, self.max_files = max_bytes, max_files
        self.timeout = timeout
        self.stats = Stats()

    def push(self, item: Push) -> bool:
        """True when the server took it now; False when it was spooled (or dropped, counted)."""
        query = item.query()
        if not self.spooled_files():
            try:
                send(self.url, query, item.pprof, self.timeout)
                self.stats.pushed += 1
                return True
            except (OSError, ValueError) as e:
                self._failed(e)
        self._spool(query, item.pprof)  # keep the order: behind what is already waiting
        return False

    def _failed(self, e: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = str(getattr(e, "reason", None) or e)[:200]

    def spooled_files(self) -> list[Path]:
        try:
            files = [p for p in self.dir.iterdir() if p.name.endswith(".push")]
        except OSError:
            return []
        return sorted(files)

    def _spool(self, query: dict[str, str], pprof: bytes) -> None:
        from obskit.safefile import write_bytes

        header = json.dumps(query, separators=(",", ":")).encode() + b"\n"
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.push"
        try:
            write_bytes(self.dir / name, header + pprof, private=True)
            self.stats.spooled += 1
        except Exception:
            self.stats.dropped["spool-write"] = self.stats.dropped.get("spool-write", 0) + 1
            return
        self._trim()

    def _trim(self) -> None:
        files = self.spooled_files()
        sizes = [_size(p) for p in files]
        total = sum(sizes)
        i = 0
        while i < len(files) and (len(files) - i > self.max_files or total > self.max_bytes):
            with contextlib.suppress(OSError):
                files[i].unlink()
            total -= sizes[i]
            i += 1
            self.stats.dropped["spool-full"] = self.stats.dropped.get("spool-full", 0) + 1

    def replay(self, deadline: float | None = None) -> int:
        """Send spooled pushes oldest first until one fails or ``deadline`` (monotonic); returns how many went."""
        sent = 0
        for path in self.spooled_files():
            if deadline is not None and time.monotonic() > deadline:
                break
            entry = read_entry(path)
            if entry is None:
                with contextlib.suppress(OSError):
                    path.unlink()
                self.stats.dropped["spool-unreadable"] = self.stats.dropped.get("spool-unreadable", 0) + 1
                continue
            query, pprof = entry
            try:
                send(self.url, query, pprof, self.timeout)
            except (OSError, ValueError) as e:
                self._failed(e)
                break
            with contextlib.suppress(OSError):
                path.unlink()
            sent += 1
            self.stats.replayed += 1
        return sent


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_entry(path: Path) -> tuple[dict[str, str], bytes] | None:
    """A spooled push, or None for a file that is not one (bounded read, no links followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY or st.st_uid != os.geteuid():
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_ENTRY + 1)
    finally:
        os.close(fd)
    head, sep, pprof = data.partition(b"\n")
    if not sep:
        return None
    try:
        query = json.loads(head)
    except ValueError:
        return None
    if not isinstance(query, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in query.items()):
        return None
    return query, pprof
