"""The sink: finished spans to the collector (bounded), else to the spool; or to a file."""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import time
from pathlib import Path

from obskit.otel import encode, spool, transport
from obskit.otel.config import TraceConfig
from obskit.otel.model import ExportResult, SpanRecord

INTERRUPTED = "interrupted (Ctrl-C) before the collector answered"


def _send_bounded(cfg: TraceConfig, payload: bytes, budget: float) -> str:
    """ "" when delivered within ``budget`` seconds, else the reason it was not.

    The send runs in a daemon thread joined with a timeout: even DNS lookups or a
    collector that accepts and never answers cannot hold the command past its budget.
    """
    outcome: list[str] = []
    deadline = time.monotonic() + budget

    def run() -> None:
        try:
            transport.send(cfg, payload, deadline)
            outcome.append("")
        except transport.ExportFailed as e:
            outcome.append(str(e))
        except Exception as e:  # an exporter bug must never fail the command
            outcome.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=run, name="obskit-export", daemon=True)
    t.start()
    try:
        t.join(budget + 0.05)
    except KeyboardInterrupt:
        # Ctrl-C while a collector hangs: give up on the send, keep the spans (spooled).
        return INTERRUPTED
    if not outcome:
        return f"export timed out after {budget:g}s to {cfg.endpoint}"
    return outcome[0]


_SPAN_FILE_START = re.compile(rb'\s*\{\s*"resourceSpans"')


def write_file(path: str, payload: bytes, *, private_dir: bool = True) -> None:
    """Append one OTLP/JSON line to ``path`` (rotated to ``path.1`` past the size cap)."""
    line = (encode.bytes_to_json_line(payload) + "\n").encode()
    append_span_file(Path(path), line, private_dir=private_dir)


def append_span_file(p: Path, data: bytes, *, private_dir: bool = True) -> None:
    """Append ``data`` (b"" checks only) to the span file ``p``.

    ``private_dir`` is for obskit's own state directory only: a user's ``--output`` must not
    get its directory chmod-ed, and an existing file that is not a span file is never
    appended to or rotated (``--output /etc/passwd`` as root).
    """
    try:
        st = p.stat()
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size:
        with open(p, "rb") as f:
            head = f.read(64)
        if not _SPAN_FILE_START.match(head):
            raise OSError(errno.EEXIST, "it exists and is not an OTLP/JSON span file; refusing to append")
        if data and st.st_size + len(data) > spool.SPANS_FILE_MAX_BYTES:
            os.replace(p, p.with_name(p.name + ".1"))  # keep one generation, stay bounded
    if private_dir:
        spool.write_private(p, data, append=True)
        return
    if not p.parent.exists():
        p.parent.mkdir(parents=True, mode=0o700)
    from obskit.errors import ObskitError
    from obskit.safefile import resolve

    try:
        target, _ = resolve(p)  # a link or FIFO planted by another user is refused
    except ObskitError as e:
        raise OSError(errno.EPERM, e.message) from None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def own_file(cfg: TraceConfig) -> bool:
    """True when the span file is the default one inside obskit's private state directory."""
    return Path(cfg.output).parent == Path(cfg.state_dir)


def deliver(cfg: TraceConfig, spans: list[SpanRecord], budget: float | None = None) -> ExportResult:
    started = time.monotonic()
    result = ExportResult(destination=cfg.destination, spans=len(spans))
    sampled = [s for s in spans if s.flags & 1]
    result.not_sampled = len(spans) - len(sampled)
    if not sampled or cfg.sdk_disabled:
        result.not_sampled = len(spans)
        return result
    payload = encode.to_bytes(sampled, cfg.resource)
    if not cfg.endpoint:
        try:
            write_file(cfg.output, payload, private_dir=own_file(cfg))
            result.sent = len(sampled)
        except OSError as e:
            result.error = f"cannot write {cfg.output}: {e.strerror or e}"
        result.seconds = time.monotonic() - started
        return result
    error = _send_bounded(cfg, payload, cfg.timeout_s if budget is None else budget)
    store = spool.Spool(Path(cfg.state_dir))
    if not error:
        result.sent = len(sampled)
    else:
        result.error = error
        try:
            result.dropped = store.put(payload, len(sampled))
            result.spooled = len(sampled) - min(result.dropped, len(sampled))
            store.record_error(cfg.endpoint, error, len(sampled))
        except OSError as e:
            result.dropped = len(sampled)
            result.error += f"; spool not writable: {e.strerror or e}"
    result.seconds = time.monotonic() - started
    return result


def flush(cfg: TraceConfig, budget: float) -> ExportResult:
    """Send the spool to the configured destination; delete each batch once delivered."""
    started = time.monotonic()
    deadline = started + budget
    store = spool.Spool(Path(cfg.state_dir))
    store.recover_stale()
    result = ExportResult(destination=cfg.destination)
    for path in store.pending():
        claimed = store.claim(path)
        if claimed is None:
            continue
        try:
            payload = claimed.read_bytes()
        except OSError:
            continue
        n = spool._spans_in_name(path)
        result.spans += n
        left = deadline - time.monotonic()
        if cfg.endpoint:
            error = _send_bounded(cfg, payload, left) if left > 0.02 else "flush budget used up"
        else:
            try:
                write_file(cfg.output, payload, private_dir=own_file(cfg))
                error = ""
            except OSError as e:
                error = f"cannot write {cfg.output}: {e.strerror or e}"
        if error:
            store.release(claimed)
            result.spooled += n
            result.error = error
            store.record_error(cfg.destination, error, n)
            for rest in store.pending():
                if rest != path:
                    result.spooled += spool._spans_in_name(rest)
                    result.spans += spool._spans_in_name(rest)
            break
        claimed.unlink()
        result.sent += n
    result.seconds = time.monotonic() - started
    return result
