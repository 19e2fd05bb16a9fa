"""Reading OTLP/JSON span files back into traces, and the span tree people read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obskit.errors import InputError
from obskit.tracing.encode import spans_from_json
from obskit.tracing.model import SpanRecord


@dataclass
class ShownSpan:
    name: str
    span_id: str
    parent_span_id: str
    depth: int
    start_ns: int
    duration_s: float
    status: str
    status_message: str
    kind: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    service: str


@dataclass
class ShownTrace:
    trace_id: str
    start_ns: int
    duration_s: float
    spans: list[ShownSpan] = field(default_factory=list)
    errors: int = 0


@dataclass
class TraceView:
    SCHEMA = "obskit.trace.show/1"

    source: str
    traces: list[ShownTrace]
    total_traces: int
    skipped_lines: int = 0


def load(path: Path) -> tuple[list[tuple[dict[str, Any], SpanRecord]], int]:
    """All spans in an OTLP/JSON file (one request per line, or one JSON document)."""
    from obskit.safefile import read_input

    if not path.exists() and not path.is_symlink():
        raise InputError(f"no span file at {path}", "run `obskit trace exec -- CMD` first, or pass a FILE")
    # Bounded: the span file rotates at 64 MiB; /dev/zero or a FIFO is an input error, not a hang.
    text = read_input(path, limit=4 * 64 * 1024 * 1024).decode("utf-8", "replace")

    out: list[tuple[dict[str, Any], SpanRecord]] = []
    skipped = 0
    stripped = text.strip()
    docs: list[Any] = []
    if stripped.startswith("{") and "\n" in stripped:
        try:
            docs = [json.loads(stripped)]
        except (ValueError, RecursionError):
            docs = []
    if not docs:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except (ValueError, RecursionError):
                skipped += 1  # a line cut by a crash or a full disk
    otlp = 0
    for doc in docs:
        if isinstance(doc, dict):
            otlp += "resourceSpans" in doc
            try:
                out.extend(spans_from_json(doc))
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
                skipped += 1  # a damaged or hostile document: counted, never an internal error
        else:
            skipped += 1
    if not otlp and (skipped or docs):
        # Nothing in it is OTLP: a wrong path, not an empty span file.
        raise InputError(
            f"{path} is not an OTLP/JSON span file", "pass a file written by obskit trace or an OTLP file exporter"
        )
    return out, skipped


def view_file(file: str | None, default: str, *, trace_id: str | None = None, last: int = 10) -> TraceView:
    """`trace show [FILE]`: the traces of FILE (else the local span file ``default``).

    A FILE given by name that holds nothing is an input error (a wrong path or an export that
    never happened); the local span file being empty just means no spans yet.
    """
    path = Path(file) if file else Path(default)
    items, skipped = load(path)
    if file is not None and not items and not skipped and _blank(path):
        raise InputError(f"{path} is empty: no spans in it", "pass a file written by obskit trace or an OTLP file exporter")
    return build(str(path), items, trace_id=trace_id, last=last, skipped=skipped)


def _blank(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return not f.read(65536).strip()
    except OSError:
        return False


def build(
    source: str,
    items: list[tuple[dict[str, Any], SpanRecord]],
    trace_id: str | None = None,
    last: int = 10,
    skipped: int = 0,
) -> TraceView:
    by_trace: dict[str, list[tuple[dict[str, Any], SpanRecord]]] = {}
    for res, s in items:
        if trace_id and not s.trace_id.startswith(trace_id.lower()):
            continue
        by_trace.setdefault(s.trace_id, []).append((res, s))
    ordered = sorted(by_trace.items(), key=lambda kv: min(s.start_ns for _, s in kv[1]))
    chosen = ordered[-last:] if last > 0 else ordered
    traces = [_tree(tid, spans) for tid, spans in chosen]
    return TraceView(source=source, traces=traces, total_traces=len(ordered), skipped_lines=skipped)


def _tree(trace_id: str, items: list[tuple[dict[str, Any], SpanRecord]]) -> ShownTrace:
    ids = {s.span_id for _, s in items}
    children: dict[str, list[tuple[dict[str, Any], SpanRecord]]] = {}
    roots: list[tuple[dict[str, Any], SpanRecord]] = []
    for res, s in items:
        # A parent outside this file (remote caller) makes the span a root here.
        if s.parent_span_id and s.parent_span_id in ids and s.parent_span_id != s.span_id:
            children.setdefault(s.parent_span_id, []).append((res, s))
        else:
            roots.append((res, s))
    start = min(s.start_ns for _, s in items)
    end = max(s.end_ns for _, s in items)
    out = ShownTrace(trace_id, start, max(0, end - start) / 1e9)
    seen: set[str] = set()

    def walk(res: dict[str, Any], s: SpanRecord, depth: int) -> None:
        if s.span_id in seen:
            return
        seen.add(s.span_id)
        out.spans.append(
            ShownSpan(
                name=s.name,
                span_id=s.span_id,
                parent_span_id=s.parent_span_id,
                depth=depth,
                start_ns=s.start_ns,
                duration_s=s.duration_s,
                status=s.status,
                status_message=s.status_message,
                kind=s.kind,
                attributes=s.attributes,
                events=[{"name": e.name, "time_ns": e.time_ns, "attributes": e.attributes} for e in s.events],
                service=str(res.get("service.name", "")),
            )
        )
        if s.status == "error":
            out.errors += 1
        for r2, c in sorted(children.get(s.span_id, []), key=lambda x: x[1].start_ns):
            walk(r2, c, depth + 1)

    for res, s in sorted(roots, key=lambda x: x[1].start_ns):
        walk(res, s, 0)
    return out


_SHOWN_ATTRS = 6


def render(view: TraceView) -> None:
    from datetime import datetime

    from obskit.output import console, escape, human_seconds

    con = console()
    if not view.traces:
        con.print(f"no spans in {escape(view.source)}")
        return
    for t in view.traces:
        when = datetime.fromtimestamp(t.start_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        status = f"[red]{t.errors} error(s)[/red]" if t.errors else "[green]ok[/green]"
        con.print(f"[bold]trace {t.trace_id}[/bold]  {when}  {human_seconds(t.duration_s)}  {status}")
        for s in t.spans:
            offset = (s.start_ns - t.start_ns) / 1e9
            mark = {"error": "[red]✗[/red]", "ok": "[green]✓[/green]"}.get(s.status, "·")
            indent = "  " * (s.depth + 1)
            line = (
                f"{indent}{mark} [bold]{escape(s.name)}[/bold]  {human_seconds(s.duration_s)}"
                f"  [dim]+{offset:.3f}s {s.kind} {s.span_id}[/dim]"
            )
            if s.status == "error" and s.status_message:
                line += f"  [red]{escape(s.status_message)}[/red]"
            con.print(line, highlight=False)
            attrs = list(s.attributes.items())
            for k, v in attrs[:_SHOWN_ATTRS]:
                con.print(f"{indent}    [dim]{escape(str(k))}[/dim] = {escape(_short(v))}", highlight=False)
            if len(attrs) > _SHOWN_ATTRS:
                con.print(f"{indent}    [dim]… {len(attrs) - _SHOWN_ATTRS} more (--json)[/dim]")
            for e in s.events:
                eoff = (e["time_ns"] - t.start_ns) / 1e9
                extra = " ".join(f"{k}={_short(v)}" for k, v in list(e["attributes"].items())[:4])
                con.print(
                    f"{indent}    [cyan]event[/cyan] +{eoff:.3f}s {escape(e['name'])} {escape(extra)}", highlight=False
                )
        con.print()
    if view.total_traces > len(view.traces):
        con.print(f"[dim]{view.total_traces - len(view.traces)} older trace(s) not shown (--last N, --trace ID)[/dim]")
    if view.skipped_lines:
        con.print(f"[yellow]{view.skipped_lines} unreadable line(s) skipped[/yellow]")


def _short(v: Any, limit: int = 100) -> str:
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return text if len(text) <= limit else text[: limit - 1] + "…"
