"""The sink: finished spans to the collector (bounded), else to the spool; or to a file."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path

from obskit.errors import ObskitError
from obskit.tracing import encode, spool, transport
from obskit.tracing.config import TraceConfig
from obskit.tracing.model import SpanRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from obskit.tracing.results import ExportResult

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
        return f"export timed out after {budget:g}s to {cfg.shown_endpoint}"
    return outcome[0]


def _is_span_file_start(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts like an OTLP/JSON span request."""
    return head.lstrip().startswith(b"{") and head.lstrip()[1:].lstrip().startswith(b'"resourceSpans"')


def write_file(path: str, payload: bytes, *, private_dir: bool = True) -> None:
    """Append one OTLP/JSON line (from request bytes) to ``path`` (rotated past the size cap)."""
    line = (encode.bytes_to_json_line(payload) + "\n").encode()
    append_span_file(Path(path), line, private_dir=private_dir)


def append_span_file(p: Path, data: bytes, *, private_dir: bool = True) -> None:
    """Append ``data`` (b"" checks only) to the span file ``p``.

    ``private_dir`` is for obskit's own state directory only: a user's ``--output`` must not
    get its directory chmod-ed, and an existing file that is not a span file is never
    appended to or rotated (``--output /etc/passwd`` as root).  A user's ``--output`` goes
    by :mod:`obskit.safefile`'s rules: no link or FIFO planted by another user, and a FIFO
    or device is opened without blocking (a FIFO with no reader is an error, never a hang).
    Raises OSError or :class:`~obskit.errors.ObskitError` with the reason.
    """
    if private_dir:
        _check_and_rotate(p, data)
        spool.write_private(p, data, append=True)
        return
    from obskit import safefile

    target, st = safefile.resolve(p)
    if st is not None and not stat.S_ISREG(st.st_mode):
        _append_in_place(target, st, data)
        return
    _check_and_rotate(target, data)
    if not target.parent.exists():
        target.parent.mkdir(parents=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _check_and_rotate(p: Path, data: bytes) -> None:
    try:
        st = os.lstat(p)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_size:
        with open(p, "rb") as f:
            head = f.read(64)
        if not _is_span_file_start(head):
            raise OSError(errno.EEXIST, "it exists and is not an OTLP/JSON span file; refusing to append")
        if data and st.st_size + len(data) > spool.SPANS_FILE_MAX_BYTES:
            os.replace(p, p.with_name(p.name + ".1"))  # keep one generation, stay bounded


def _append_in_place(p: Path, st: os.stat_result, data: bytes) -> None:
    """A FIFO or device (``-o /dev/stdout``, a named pipe): open without blocking."""
    try:
        fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "it is a FIFO with no reader") from None
        raise
    try:
        if not data:
            return
        if stat.S_ISFIFO(st.st_mode):
            # A reader is there; a reader that stops reading must still not hold us forever.
            _write_all(fd, data, deadline=time.monotonic() + 2.0)
        else:
            os.set_blocking(fd, True)
            _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    import select

    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            n = 0
        view = view[n:]
        if view and n == 0:
            left = (deadline - time.monotonic()) if deadline is not None else None
            if left is not None and left <= 0:
                raise OSError(errno.EAGAIN, "the reader of the FIFO stopped reading")
            select.select([], [fd], [], left)


def _file_error(cfg: TraceConfig, e: BaseException) -> str:
    if isinstance(e, ObskitError):
        return e.message
    return f"cannot write {cfg.output}: {getattr(e, 'strerror', None) or e}"


def own_file(cfg: TraceConfig) -> bool:
    """True when the span file is the default one inside obskit's private state directory."""
    return Path(cfg.output).parent == Path(cfg.state_dir)


class Delivery:
    """What :func:`send_spans` did; :class:`~obskit.tracing.results.ExportResult` is its JSON form
    (a plain class, so ``trace exec`` does not import dataclasses for it)."""

    __slots__ = ("destination", "dropped", "error", "not_sampled", "seconds", "sent", "spans", "spooled")

    def __init__(self, destination: str, spans: int = 0) -> None:
        self.destination = destination
        self.spans = spans
        self.sent = self.spooled = self.dropped = self.not_sampled = 0
        self.error = ""
        self.seconds = 0.0

    def result(self) -> ExportResult:
        from obskit.tracing.results import ExportResult

        return ExportResult(**{k: getattr(self, k) for k in self.__slots__})


def deliver(cfg: TraceConfig, spans: list[SpanRecord], budget: float | None = None) -> ExportResult:
    """Export ``spans`` (within ``budget``, else the config's timeout); spool what is not delivered."""
    return send_spans(cfg, spans, budget).result()


def send_spans(cfg: TraceConfig, spans: list[SpanRecord], budget: float | None = None) -> Delivery:
    started = time.monotonic()
    result = Delivery(destination=cfg.destination, spans=len(spans))
    sampled = [s for s in spans if s.flags & 1]
    result.not_sampled = len(spans) - len(sampled)
    if not sampled or cfg.sdk_disabled:
        result.not_sampled = len(spans)
        return result
    payload = encode.to_bytes(sampled, cfg.resource)
    if not cfg.endpoint:
        # The local file: a refused or unwritable file is reported, and the spans are dropped
        # (the spool is for a collector that is down; flushing would meet the same file).
        try:
            line = (encode.to_json_line(sampled, cfg.resource) + "\n").encode()
            append_span_file(Path(cfg.output), line, private_dir=own_file(cfg))
            result.sent = len(sampled)
        except (OSError, ObskitError) as e:
            result.error = _file_error(cfg, e)
            result.dropped = len(sampled)
        result.seconds = time.monotonic() - started
        return result
    error = cfg.endpoint_problem() or _send_bounded(cfg, payload, cfg.timeout_s if budget is None else budget)
    if not error:
        result.sent = len(sampled)
    else:
        # Not delivered: kept in the spool (nothing lost), `obskit trace flush` sends it later.
        result.error = error
        store = spool.Spool(Path(cfg.state_dir))
        try:
            result.dropped = store.put(payload, len(sampled))
            result.spooled = len(sampled) - min(result.dropped, len(sampled))
            store.record_error(cfg.destination, error, len(sampled))
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
    from obskit.tracing.results import ExportResult

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
            error = cfg.endpoint_problem() or (
                _send_bounded(cfg, payload, left) if left > 0.02 else "flush budget used up"
            )
        else:
            try:
                write_file(cfg.output, payload, private_dir=own_file(cfg))
                error = ""
            except (OSError, ObskitError) as e:
                error = _file_error(cfg, e)
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
