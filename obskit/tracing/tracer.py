"""Starting spans and telling the user when they could not be delivered."""

from __future__ import annotations

import time

from obskit.tracing.config import TraceConfig
from obskit.tracing.model import SpanRecord
from obskit.tracing.propagation import SpanContext, new_span_id, new_trace_id

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: importing typing costs trace exec a few ms)
if TYPE_CHECKING:
    from obskit.tracing.export import Delivery
    from obskit.tracing.results import ExportResult


def new_span(cfg: TraceConfig, name: str, parent: SpanContext | None, kind: str = "internal") -> SpanRecord:
    """A span with fresh ids, child of ``parent``; the sampler decides its flag."""
    trace_id = parent.trace_id if parent else new_trace_id()
    sampled = cfg.sampler.should_sample(trace_id, parent)
    return SpanRecord(
        name=name,
        trace_id=trace_id,
        span_id=new_span_id(),
        parent_span_id=parent.span_id if parent else "",
        kind=kind,
        start_ns=time.time_ns(),
        tracestate=parent.tracestate if parent else "",
        flags=1 if sampled else 0,
        remote_parent=parent is not None,
    )


def context_of(s: SpanRecord) -> SpanContext:
    return SpanContext(s.trace_id, s.span_id, s.flags, s.tracestate)



def notice(result: ExportResult | Delivery) -> None:
    """One stderr line when spans could not be delivered (they are spooled, not lost)."""
    if not result.error:
        return
    from obskit.output import warn

    what = f"{result.spooled} span(s) spooled, `obskit trace flush` sends them" if result.spooled else "spans dropped"
    warn(f"trace: {result.error}; {what}")
