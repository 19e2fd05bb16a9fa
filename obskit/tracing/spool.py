"""The per-user trace state directory: spool of unsent spans, open spans, export errors.

Layout (directory 0700, files 0600)::

    spool/<time>-<pid>-<rand>.pb   ExportTraceServiceRequest bytes not yet delivered
    open/<span_id>.json            spans started by `trace span start`, not yet ended
    errors.jsonl                   the last export errors (bounded)
    counters.json                  spans dropped because the spool was full
    spans.otlp.jsonl               the local OTLP/JSON span file (no endpoint configured)

A spool file is claimed by an atomic rename before it is sent and deleted only once
delivered, so two concurrent flushes never send the same batch twice.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: importing typing costs trace exec a few ms)
if TYPE_CHECKING:
    from typing import Any

SPOOL_MAX_BYTES = 16 * 1024 * 1024
SPOOL_MAX_FILES = 1000
ERRORS_KEPT = 20
SPANS_FILE_MAX_BYTES = 64 * 1024 * 1024
OPEN_SPAN_MAX_AGE_S = 7 * 86400


def ensure_dir(path: Path) -> Path:
    """Create ``path`` private to this user; refuse one that another user owns or a symlink."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        # /tmp fallbacks are shared: another user's directory must not receive our spans.
        raise PermissionError(f"{path} is not a directory owned by this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes, append: bool = False) -> None:
    ensure_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_private(tmp, data)
    os.replace(tmp, path)


class Spool:
    """The state directory: unsent batches, open spans, export errors."""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"Spool({self.root!r})"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def open_dir(self) -> Path:
        return self.root / "open"

    # --- unsent batches -------------------------------------------------------------
    def pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.spool_dir.iterdir() if p.suffix == ".pb")
        except OSError:
            return []

    def pending_bytes(self) -> int:
        return sum(_size(p) for p in self.pending())

    def put(self, payload: bytes, spans: int) -> int:
        """Spool one batch; return how many spans had to be dropped to stay bounded."""
        dropped = 0
        if len(payload) > SPOOL_MAX_BYTES:
            self.count_dropped(spans)
            return spans
        files = self.pending()
        total = sum(_size(p) for p in files)
        while files and (total + len(payload) > SPOOL_MAX_BYTES or len(files) >= SPOOL_MAX_FILES):
            oldest = files.pop(0)
            total -= _size(oldest)
            dropped += _spans_in_name(oldest)
            try:
                oldest.unlink()
            except OSError:
                pass
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(3).hex()}-n{spans}.pb"
        write_atomic(ensure_dir(self.spool_dir) / name, payload)
        if dropped:
            self.count_dropped(dropped)
        return dropped

    def claim(self, path: Path) -> Path | None:
        """Take a spooled batch for sending (atomic; None if another flush has it)."""
        claimed = path.with_suffix(f".sending-{os.getpid()}")
        try:
            os.rename(path, claimed)
        except OSError:
            return None
        return claimed

    def release(self, claimed: Path) -> None:
        """Put a claimed batch back (delivery failed)."""
        os.rename(claimed, claimed.with_suffix(".pb"))

    def recover_stale(self, older_than_s: float = 300) -> None:
        """Batches claimed by a flush that died: back into the spool."""
        try:
            entries = list(self.spool_dir.iterdir())
        except OSError:
            return
        for p in entries:
            if ".sending-" in p.name:
                pid = p.name.rsplit("-", 1)[-1]
                if (pid.isdigit() and not Path(f"/proc/{pid}").exists()) or time.time() - _mtime(p) > older_than_s:
                    try:
                        self.release(p)
                    except OSError:
                        pass

    # --- counters and errors --------------------------------------------------------
    def counters(self) -> dict[str, int]:
        try:
            import json  # here, not at the top: `trace exec` to a collector never needs it
            data = json.loads((self.root / "counters.json").read_text())
            return {k: int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def count_dropped(self, n: int) -> None:
        c = self.counters()
        c["dropped_spans"] = c.get("dropped_spans", 0) + n
        import json
        write_atomic(ensure_dir(self.root) / "counters.json", json.dumps(c).encode())

    def record_error(self, destination: str, error: str, spans: int) -> None:
        path = ensure_dir(self.root) / "errors.jsonl"
        entries = self.errors()[-(ERRORS_KEPT - 1) :]
        from obskit.redact import redact_text

        # What is stored is what `trace status` prints: no password or token from an endpoint.
        entries.append(
            {"time": time.time(), "destination": redact_text(destination), "error": redact_text(error), "spans": spans}
        )
        import json
        write_atomic(path, "".join(json.dumps(e) + "\n" for e in entries).encode())

    def errors(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / "errors.jsonl").read_text().splitlines()
        except OSError:
            return []
        return [e for e in (_json_or_none(line) for line in lines) if isinstance(e, dict)]

    # --- open spans (trace span start / end) -----------------------------------------
    def save_open(self, span_id: str, state: dict[str, Any]) -> None:
        self.prune_open()
        import json
        write_atomic(ensure_dir(self.open_dir) / f"{span_id}.json", json.dumps(state).encode())

    def load_open(self, span_id: str) -> dict[str, Any] | None:
        """The saved state of an open span; None when missing or damaged (a half-written or edited file)."""
        try:
            import json
            data = json.loads((self.open_dir / f"{span_id}.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("name", "trace_id", "span_id")):
            return None
        if not isinstance(data.get("start_ns"), int) or not isinstance(data.get("attributes", {}), dict):
            return None
        events = data.get("events", [])
        if not isinstance(events, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("time_ns"), int)
            and isinstance(e.get("attributes", {}), dict)
            for e in events
        ):
            return None
        if not isinstance(data.get("flags", 1), int):
            return None
        return data

    def prune_open(self, max_age_s: float = OPEN_SPAN_MAX_AGE_S) -> None:
        """Forget spans a script opened and never ended (it crashed, or was killed)."""
        try:
            paths = list(self.open_dir.glob("*.json"))
        except OSError:
            return
        now = time.time()
        for p in paths:
            if now - _mtime(p) > max_age_s:
                try:
                    p.unlink()
                except OSError:
                    pass

    def drop_open(self, span_id: str) -> None:
        try:
            (self.open_dir / f"{span_id}.json").unlink()
        except OSError:
            pass

    def open_spans(self) -> list[dict[str, Any]]:
        try:
            paths = sorted(self.open_dir.glob("*.json"), key=_mtime)
        except OSError:
            return []
        out = []
        for p in paths:
            s = self.load_open(p.stem)
            if s is not None:
                out.append(s)
        return out


def _json_or_none(line: str) -> Any:
    try:
        import json
        return json.loads(line)
    except ValueError:
        return None


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _spans_in_name(p: Path) -> int:
    tail = p.stem.rsplit("-n", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0
