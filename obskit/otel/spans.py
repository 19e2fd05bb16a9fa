"""Creating spans: around a child command, one finished span, and spans a shell opens and closes.

What ``trace exec`` runs before its child is stdlib only and small (no rich, typer or
protobuf): :func:`run_traced` is called both by the CLI and by the fast entry
(:mod:`obskit.otel.fastexec`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from obskit.errors import InputError, UsageError
from obskit.otel.exec import ChildResult
from obskit.redact import redact_argv
from obskit.tracing.config import TraceConfig
from obskit.tracing.model import KINDS, SpanEvent, SpanRecord
from obskit.tracing.propagation import SpanContext, parse_traceparent
from obskit.tracing.spool import Spool
from obskit.tracing.tracer import context_of, new_span, notice

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: importing typing costs trace exec a few ms)
if TYPE_CHECKING:
    from typing import Any

    from obskit.tracing.results import ExportResult, OpenedSpan


def parse_attrs(items: list[str] | None) -> dict[str, Any]:
    """``k=v`` pairs; values that look like ints, floats or booleans are typed."""
    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"bad attribute {item[:40]!r}", "use --attr key=value")
        out[k.strip()] = typed(v)
    return out


def typed(v: str) -> Any:
    if v in ("true", "false"):
        return v == "true"
    if re.fullmatch(r"-?\d{1,18}", v):
        return int(v)
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", v):
        return float(v)
    return v


def check_kind(kind: str) -> str:
    k = kind.strip().lower()
    if k not in KINDS:
        raise UsageError(f"unknown span kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    return k


def parse_time(text: str, now_ns: int | None = None) -> int:
    """Epoch seconds (or ms, us, ns), RFC 3339, ``now``, or relative to now in the one
    duration grammar (:mod:`obskit.durations`: ``-5s``, ``-2m``, ``+250ms``) -> ns."""
    ns = _parse_time(text, time.time_ns() if now_ns is None else now_ns)
    if not 0 <= ns < 2**63:  # OTLP times are unsigned 64-bit ns; collectors read them as int64
        raise InputError(
            f"the time {text[:40]!r} is outside 1970 to 2262", "use a time near now, e.g. --start -5m"
        )
    return ns


_EPOCH = r"\d+(\.\d+)?"
_RELATIVE = r"[+-]?\s*(\d+(\.\d*)?|\.\d+)\s*[a-zµ]+"


def _parse_time(text: str, now_ns: int) -> int:
    from decimal import Decimal

    t = text.strip()
    if t.lower() == "now":
        return now_ns
    if re.fullmatch(_RELATIVE, t, re.IGNORECASE) or (t[:1] in "+-" and re.fullmatch(_EPOCH, t[1:].strip())):
        from obskit.durations import parse_duration_ns

        try:
            return now_ns + parse_duration_ns(t, option="time", signed=True)
        except UsageError as e:
            raise InputError(e.message, "use epoch seconds, RFC 3339 (2026-01-02T03:04:05Z) or -5s") from None
    if re.fullmatch(_EPOCH, t):
        value = Decimal(t)
        if value > 10**17:  # already nanoseconds
            return int(value)
        if value > 10**14:  # microseconds
            return int(value * 10**3)
        if value > 10**11:  # milliseconds
            return int(value * 10**6)
        return int(value * 10**9)
    from datetime import datetime

    iso = t.replace("Z", "+00:00").replace("z", "+00:00")
    frac_ns = 0
    frac = re.search(r"\.(\d+)", iso)
    if frac:  # fromisoformat stops at microseconds; keep the nanoseconds exactly
        frac_ns = int(frac.group(1)[:9].ljust(9, "0"))
        iso = iso.replace(frac.group(0), "", 1)
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise InputError(
            f"cannot read the time {text[:40]!r}", "use epoch seconds, RFC 3339 (2026-01-02T03:04:05Z) or -5s"
        ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return int(dt.timestamp()) * 10**9 + frac_ns


def finish_exec(span: SpanRecord, child: ChildResult) -> SpanRecord:
    """Fill in the exec span from the child's outcome (semantic-convention attributes)."""
    span.start_ns = child.start_ns or span.start_ns
    span.end_ns = child.end_ns or time.time_ns()
    argv = redact_argv(child.argv)
    span.attributes.setdefault("process.command", argv[0] if argv else "")
    span.attributes.setdefault("process.command_args", argv)
    span.attributes.setdefault("process.executable.name", os.path.basename(argv[0]) if argv else "")
    if child.pid is not None:
        span.attributes["process.pid"] = child.pid
    span.attributes["process.parent_pid"] = os.getpid()
    span.attributes["process.exit.code"] = child.exit_code
    if child.signal:
        import signal as _signal

        try:
            span.attributes["process.exit.signal"] = _signal.Signals(child.signal).name
        except ValueError:
            span.attributes["process.exit.signal"] = str(child.signal)
    if child.forwarded:
        span.attributes["obskit.signals_forwarded"] = child.forwarded
    if child.exit_code == 0:
        span.status = "ok"
    else:
        span.status = "error"
        span.status_message = child.error or (
            f"killed by signal {span.attributes.get('process.exit.signal')}"
            if child.signal
            else f"exit code {child.exit_code}"
        )
        if child.error:
            span.add_event("exception", {"exception.type": "OSError", "exception.message": child.error}, span.end_ns)
    return span


# --- spans opened by one shell command and closed by another ---------------------------


def save_open(store: Spool, span: SpanRecord) -> None:
    store.save_open(
        span.span_id,
        {
            "name": span.name,
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "kind": span.kind,
            "start_ns": span.start_ns,
            "attributes": span.attributes,
            "events": [{"name": e.name, "time_ns": e.time_ns, "attributes": e.attributes} for e in span.events],
            "tracestate": span.tracestate,
            "flags": span.flags,
            "remote_parent": span.remote_parent,
            "owner_pid": os.getppid(),
        },
    )


def load_open(store: Spool, traceparent: str | None) -> SpanRecord:
    """The open span named by ``traceparent`` (or TRACEPARENT, or the only open one)."""
    if traceparent:
        ctx = parse_traceparent(traceparent)
        if ctx is None:
            raise InputError(f"not a traceparent: {traceparent[:60]!r}", "expected 00-<32 hex>-<16 hex>-<2 hex>")
        state = store.load_open(ctx.span_id)
        if state is None:
            raise InputError(
                f"no open span {ctx.span_id}", "start one with `obskit trace span start --name N` (see `trace status`)"
            )
    else:
        candidates = store.open_spans()
        if len(candidates) != 1:
            raise InputError(
                "no open span given" if not candidates else f"{len(candidates)} spans are open",
                "pass the traceparent printed by `obskit trace span start`, or export TRACEPARENT",
            )
        state = candidates[0]
    return SpanRecord(
        name=str(state["name"]),
        trace_id=str(state["trace_id"]),
        span_id=str(state["span_id"]),
        parent_span_id=str(state.get("parent_span_id", "")),
        kind=str(state.get("kind", "internal")),
        start_ns=int(state["start_ns"]),
        attributes=dict(state.get("attributes", {})),
        events=[
            SpanEvent(e["name"], int(e["time_ns"]), dict(e.get("attributes", {}))) for e in state.get("events", [])
        ],
        tracestate=str(state.get("tracestate", "")),
        flags=int(state.get("flags", 1)),
        remote_parent=bool(state.get("remote_parent", False)),
    )


def open_span_for(store: Spool, ctx: SpanContext | None) -> SpanRecord | None:
    if ctx is None:
        return None
    if store.load_open(ctx.span_id) is None:
        return None
    return load_open(store, ctx.traceparent())


# --- trace exec --------------------------------------------------------------------------


def run_traced(
    cfg: TraceConfig,
    command: Sequence[str],
    *,
    name: str | None = None,
    attrs: list[str] | None = None,
    kind: str = "internal",
    template: bool = True,
) -> int:
    """Run ``command`` as a child inside a span, export the span, return the exit code.

    Everything before the child is checked first (a bad option never runs it), the child
    starts before any export code runs, and the export after it is bounded by the config's
    timeout; what cannot be sent is spooled.  Stderr is written only after the child ends.
    """
    from obskit.otel import exec as child_exec
    from obskit.tracing import propagation

    span_kind = check_kind(kind)
    attributes = parse_attrs(attrs)
    span = new_span(cfg, name or command[0], propagation.from_env(), span_kind)
    tp = context_of(span).traceparent()
    # Not recording (OTEL_SDK_DISABLED): the caller's context passes through untouched.
    env = propagation.child_env(None if cfg.sdk_disabled else context_of(span))
    argv = [a.replace("{{traceparent}}", tp) for a in command] if template else list(command)
    child = child_exec.run(argv, env)
    lines = [child.error] if child.error else []
    span.attributes.update(attributes)
    finish_exec(span, child)
    lines.extend(cfg.warnings)
    if lines:
        from obskit.output import warn

        for line in lines:
            warn(line)
    try:
        from obskit.tracing import export

        notice(export.send_spans(cfg, [span]))
    except Exception as e:  # the command's exit code matters more than its span
        from obskit.output import warn

        warn(f"trace export failed: {type(e).__name__}: {e}")
    return child.exit_code


# --- the other `trace` commands: one function each, called by commands/trace.py ----------


def check_status(value: str) -> str:
    v = value.strip().lower()
    if v not in ("ok", "error", "unset"):
        raise UsageError(f"unknown status {value!r}", "use ok, error or unset")
    return v


def end_with(record: SpanRecord, status: str, message: str, attrs: list[str] | None) -> None:
    """--status, --message and --attr of a span being ended (`span --start` and `span end`)."""
    record.status = check_status(status)
    record.status_message = message if record.status == "error" else ""
    record.attributes.update(parse_attrs(attrs))


def deliver_one(cfg: TraceConfig, record: SpanRecord) -> ExportResult:
    """Export one ended span; the result names it, traceparent included."""
    from obskit.tracing import export

    result = export.deliver(cfg, [record])
    result.trace_id, result.span_id = record.trace_id, record.span_id
    result.traceparent = context_of(record).traceparent()
    return result


def record_finished(
    cfg: TraceConfig,
    name: str | None,
    start: str | None,
    end: str | None,
    *,
    status: str = "ok",
    message: str = "",
    attrs: list[str] | None = None,
    kind: str = "internal",
) -> ExportResult:
    """`trace span --name N --start T [--end T]`: one finished span, exported."""
    from obskit.tracing import propagation

    if not name or not start:
        raise UsageError(
            "`trace span` needs --name and --start (or a subcommand: start, end)",
            "e.g. obskit trace span --name build --start -30s --end now",
        )
    record = new_span(cfg, name, propagation.from_env(), check_kind(kind))
    record.start_ns = parse_time(start)
    record.end_ns = parse_time(end or "now")
    if record.end_ns < record.start_ns:
        raise UsageError("--end is before --start", "swap them, or use relative times like --start -5s")
    end_with(record, status, message, attrs)
    return deliver_one(cfg, record)


def start_open(cfg: TraceConfig, name: str, *, attrs: list[str] | None = None, kind: str = "internal") -> OpenedSpan:
    """`trace span start`: a span kept open in the state directory until `span end`."""
    from obskit.errors import Unavailable
    from obskit.tracing import propagation
    from obskit.tracing.results import OpenedSpan

    record = new_span(cfg, name, propagation.from_env(), check_kind(kind))
    record.attributes.update(parse_attrs(attrs))
    try:
        save_open(Spool(Path(cfg.state_dir)), record)
    except OSError as e:
        raise Unavailable(
            f"cannot keep the open span in {cfg.state_dir}: {e}",
            "set OBSKIT_TRACE_DIR to a writable directory of yours",
        ) from None
    return OpenedSpan(
        traceparent=context_of(record).traceparent(),
        trace_id=record.trace_id,
        span_id=record.span_id,
        sampled=bool(record.flags & 1),
        name=name,
    )


def end_open(
    cfg: TraceConfig, traceparent: str | None, *, status: str = "ok", message: str = "", attrs: list[str] | None = None
) -> ExportResult:
    """`trace span end`: end the open span named by ``traceparent`` (else $TRACEPARENT) and export it."""
    store = Spool(Path(cfg.state_dir))
    record = load_open(store, traceparent or os.environ.get("TRACEPARENT"))
    record.end_ns = time.time_ns()
    end_with(record, status, message, attrs)
    result = deliver_one(cfg, record)
    store.drop_open(record.span_id)
    return result


def add_event(cfg: TraceConfig, name: str, *, traceparent: str | None = None, attrs: list[str] | None = None) -> ExportResult:
    """`trace event`: an event on the open span named by TRACEPARENT, else a zero-length span."""
    from obskit.tracing import export, propagation

    store = Spool(Path(cfg.state_dir))
    raw = traceparent or os.environ.get("TRACEPARENT")
    ctx = propagation.parse_traceparent(raw)
    if raw and ctx is None and traceparent:
        raise InputError(f"not a traceparent: {traceparent[:60]!r}", "expected 00-<32 hex>-<16 hex>-<2 hex>")
    attributes = parse_attrs(attrs)
    open_span = open_span_for(store, ctx)
    if open_span is not None:
        from obskit.tracing.results import ExportResult

        open_span.add_event(name, attributes)
        save_open(store, open_span)
        result = ExportResult(destination=f"open span {open_span.span_id}", spans=0)
        result.trace_id, result.span_id = open_span.trace_id, open_span.span_id
        return result
    record = new_span(cfg, name, ctx)
    record.end_ns = record.start_ns = time.time_ns()
    record.attributes.update(attributes)
    record.attributes["obskit.event"] = True
    record.status = "ok"
    result = export.deliver(cfg, [record])
    result.trace_id, result.span_id = record.trace_id, record.span_id
    return result
