"""Spans of obskit's own work (``profile record``, ``stacks``, ``logs``, ``trace show`` ...).

Only :mod:`obskit.selftrace` comes here, when tracing is configured.  Spans are kept in
memory and exported when the outermost span ends (the end of the command), within the
export budget; what cannot be sent is spooled.
"""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from obskit.tracing.model import SpanRecord

_current: contextvars.ContextVar[SpanRecord | None] = contextvars.ContextVar("obskit_span", default=None)
_finished: list[SpanRecord] = []


class SelfSpan:
    """What ``selftrace.span`` yields when tracing is on."""

    def __init__(self, record: SpanRecord) -> None:
        self.record = record

    @property
    def trace_id(self) -> str:
        return self.record.trace_id

    @property
    def span_id(self) -> str:
        return self.record.span_id

    @property
    def traceparent(self) -> str:
        from obskit.tracing.propagation import format_traceparent

        return format_traceparent(self.record.trace_id, self.record.span_id, self.record.flags)

    def set_attribute(self, key: str, value: Any) -> None:
        self.record.attributes[key] = value

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        self.record.add_event(name, attributes)

    def record_error(self, exc: BaseException) -> None:
        self.record.status = "error"
        self.record.status_message = _message(exc)
        self.record.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": _message(exc)})


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(msg)[:500]


@contextmanager
def selfspan(name: str, attributes: dict[str, Any]) -> Iterator[SelfSpan]:
    """Record a span of obskit's own work; export everything when the outermost one ends."""
    from obskit.tracing import config, propagation, tracer

    parent_record = _current.get()
    parent: propagation.SpanContext | None
    if parent_record is not None:
        parent = tracer.context_of(parent_record)
        cfg = None
    else:
        cfg = config.load()
        parent = propagation.from_env()
    sampler_cfg = cfg if cfg is not None else _cfg_cache()
    record = tracer.new_span(sampler_cfg, name, parent)
    record.remote_parent = parent_record is None and parent is not None
    record.attributes.update({k: v for k, v in attributes.items() if v is not None})
    if parent_record is None:
        from obskit.redact import redact_argv

        record.attributes.setdefault("process.command_args", redact_argv(list(sys.argv)))
        _set_cfg(sampler_cfg)
    token = _current.set(record)
    handle = SelfSpan(record)
    try:
        yield handle
    except BaseException as exc:
        handle.record_error(exc if not isinstance(exc, KeyboardInterrupt) else KeyboardInterrupt("interrupted"))
        raise
    finally:
        _current.reset(token)
        record.end_ns = time.time_ns()
        if record.status == "unset":
            record.status = "ok"
        _finished.append(record)
        if parent_record is None:
            _export_finished()


_cfg: list[Any] = []


def _set_cfg(cfg: Any) -> None:
    _cfg[:] = [cfg]


def _cfg_cache() -> Any:
    from obskit.tracing import config

    if not _cfg:
        _cfg.append(config.load())
    return _cfg[0]


def _export_finished() -> None:
    from obskit.output import warn
    from obskit.tracing import export, tracer

    batch = list(_finished)
    _finished.clear()
    try:
        result = export.deliver(_cfg_cache(), batch)
    except Exception as e:  # tracing must never break the command it traces
        warn(f"trace export failed: {type(e).__name__}: {e}")
        return
    tracer.notice(result)
