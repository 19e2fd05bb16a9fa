"""The sink: finished spans to the collector (bounded), else to the spool; or to a file."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from obskit.otel import encode, spool, transport
from obskit.otel.config import TraceConfig
from obskit.otel.model import ExportResult, SpanRecord


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
    t.join(budget + 0.05)
    if not outcome:
        return f"export timed out after {budget:g}s to {cfg.endpoint}"
    return outcome[0]


def write_file(path: str, payload: bytes) -> None:
    p = Path(path)
    line = (encode.bytes_to_json_line(payload) + "\n").encode()
    try:
        if p.stat().st_size + len(line) > spool.SPANS_FILE_MAX_BYTES:
            os.replace(p, p.with_name(p.name + ".1"))  # keep one generation, stay bounded
    except OSError:
        pass
    spool.write_private(p, line, append=True)


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
            write_file(cfg.output, payload)
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
                write_file(cfg.output, payload)
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
