"""`obskit trace status`: the configuration in effect, a test span, the spool and last errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obskit.errors import ObskitError
from obskit.tracing import export, propagation, tracer
from obskit.tracing.config import TraceConfig
from obskit.tracing.results import ExportResult
from obskit.tracing.spool import Spool


@dataclass
class TraceStatus:
    SCHEMA = "obskit.trace.status/1"

    config: dict[str, Any]
    test_span: ExportResult
    spooled_batches: int
    spooled_bytes: int
    dropped_spans: int
    open_spans: list[dict[str, Any]] = field(default_factory=list)
    last_errors: list[dict[str, Any]] = field(default_factory=list)


def check(cfg: TraceConfig) -> TraceStatus:
    record = tracer.new_span(cfg, "obskit.trace.status", propagation.from_env())
    record.flags |= 1  # a test span is always sent, whatever the sampler says
    record.attributes["obskit.test_span"] = True
    record.end_ns = time.time_ns()
    record.status = "ok"
    # A test span that fails is reported, not spooled: it exists only to test the path.
    result = ExportResult(destination=cfg.destination, spans=1)
    started = time.monotonic()
    if cfg.endpoint:
        error = cfg.endpoint_problem() or export._send_bounded(
            cfg, export.encode.to_bytes([record], cfg.resource), cfg.timeout_s
        )
        result.sent = 0 if error else 1
        result.error = error
        if error:
            Spool(Path(cfg.state_dir)).record_error(cfg.destination, error, 0)
    else:
        # The local file: check it can be written, without adding a test trace to it.
        try:
            export.append_span_file(Path(cfg.output), b"", private_dir=export.own_file(cfg))
            result.sent = 1
        except (OSError, ObskitError) as e:
            result.error = export._file_error(cfg, e)
    result.seconds = time.monotonic() - started
    result.trace_id, result.span_id = record.trace_id, record.span_id
    store = Spool(Path(cfg.state_dir))
    opened = [
        {
            "name": s.get("name"),
            "traceparent": propagation.format_traceparent(s["trace_id"], s["span_id"], int(s.get("flags", 1))),
            "age_s": round((time.time_ns() - int(s.get("start_ns", 0))) / 1e9, 1),
        }
        for s in store.open_spans()
    ]
    return TraceStatus(
        config=cfg.summary(),
        test_span=result,
        spooled_batches=len(store.pending()),
        spooled_bytes=store.pending_bytes(),
        dropped_spans=store.counters().get("dropped_spans", 0),
        open_spans=opened,
        last_errors=[_redacted_error(e) for e in store.errors()[-5:]],
    )


def render(st: TraceStatus) -> None:
    from datetime import datetime

    from obskit.output import console, escape, human_bytes, human_seconds

    con = console()
    c = st.config
    con.print("[bold]trace export[/bold]")
    dest = c["endpoint"] or f"{c['output']} (OTLP/JSON file; set OTEL_EXPORTER_OTLP_ENDPOINT to send)"
    con.print(f"  destination  {escape(str(dest))}")
    if c["endpoint"]:
        con.print(f"  protocol     {c['protocol']}" + (f", {c['compression']}" if c["compression"] else ""))
    if c["headers"]:
        con.print("  headers      " + escape(", ".join(f"{k}: {v}" for k, v in c["headers"].items())))
    con.print(f"  budget       {c['timeout_s']:g}s per export")
    con.print(f"  service      {escape(c['service_name'])}")
    con.print(f"  sampler      {c['sampler']}")
    shown = {k: v for k, v in c["resource"].items() if not k.startswith("telemetry.")}
    con.print("  resource     " + escape(", ".join(f"{k}={v}" for k, v in shown.items())))
    con.print(f"  state dir    {escape(c['state_dir'])}")
    if c["sdk_disabled"]:
        con.print("  [yellow]OTEL_SDK_DISABLED=true: nothing is exported[/yellow]")
    for w in c["warnings"]:
        con.print(f"  [yellow]warning: {escape(w)}[/yellow]")
    t = st.test_span
    if t.error:
        con.print(f"[red]✗ test span not delivered[/red] in {human_seconds(t.seconds)}: {escape(t.error)}")
    else:
        what = "test span delivered" if c["endpoint"] else "span file writable"
        con.print(
            f"[green]✓ {what}[/green] in {human_seconds(t.seconds)}"
            + (f"  [dim]trace {t.trace_id}[/dim]" if c["endpoint"] else "")
        )
    con.print(
        f"spool        {st.spooled_batches} batch(es), {human_bytes(st.spooled_bytes)}"
        + (f"; {st.dropped_spans} span(s) dropped (spool full)" if st.dropped_spans else "")
        + ("  → `obskit trace flush`" if st.spooled_batches else "")
    )
    for s in st.open_spans:
        con.print(f"open span    {escape(str(s['name']))}  {s['traceparent']}  {s['age_s']}s old")
    if st.last_errors:
        con.print("last export errors:")
        for e in st.last_errors:
            when = datetime.fromtimestamp(float(e.get("time", 0))).strftime("%Y-%m-%d %H:%M:%S")
            con.print(f"  {when}  {escape(str(e.get('error', '')))}")


def _redacted_error(entry: dict[str, Any]) -> dict[str, Any]:
    """An error-log entry safe to print (entries written before redaction may hold a password)."""
    from obskit.redact import redact_text

    return {k: redact_text(v) if isinstance(v, str) else v for k, v in entry.items()}
