"""`obskit trace`: OpenTelemetry traces from the terminal and from obskit's own work."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ._common import JsonOpt

EndpointOpt = Annotated[
    Optional[str],
    typer.Option(
        "--endpoint",
        help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT; none: local file).",
        show_default=False,
    ),
]
ProtocolOpt = Annotated[
    Optional[str],
    typer.Option(
        "--protocol",
        help="http/protobuf, http/json or grpc (default: OTEL_EXPORTER_OTLP_PROTOCOL).",
        show_default=False,
    ),
]
HeaderOpt = Annotated[
    Optional[list[str]], typer.Option("--header", help="Export header name=value (repeatable).", show_default=False)
]
TimeoutOpt = Annotated[
    Optional[float],
    typer.Option(
        "--export-timeout",
        help="Seconds the export may take in total (default 1; OTEL_EXPORTER_OTLP_TIMEOUT ms).",
        show_default=False,
    ),
]
ServiceOpt = Annotated[
    Optional[str],
    typer.Option("--service", help="service.name (default: OTEL_SERVICE_NAME, else obskit).", show_default=False),
]
SamplerOpt = Annotated[
    Optional[str],
    typer.Option("--sampler", help="always_on, always_off, traceidratio, parentbased_* .", show_default=False),
]
SamplerArgOpt = Annotated[
    Optional[str], typer.Option("--sampler-arg", help="Ratio for the traceidratio samplers.", show_default=False)
]
OutputOpt = Annotated[
    Optional[str],
    typer.Option("--output", "-o", help="Local OTLP/JSON span file used when no endpoint is set.", show_default=False),
]
AttrOpt = Annotated[
    Optional[list[str]], typer.Option("--attr", "-a", help="Span attribute key=value (repeatable).", show_default=False)
]
KindOpt = Annotated[str, typer.Option("--kind", help="internal, client, server, producer or consumer.")]


def _config(
    endpoint: str | None,
    protocol: str | None,
    header: list[str] | None,
    timeout: float | None,
    service: str | None,
    output: str | None,
    *,
    sampler: str | None = None,
    sampler_arg: str | None = None,
    warn: bool = True,
) -> Any:
    """The export configuration from the flags; its warnings printed unless `warn` is off."""
    from obskit.otel import config

    cfg = config.load(
        endpoint=endpoint,
        protocol=protocol,
        headers=header,
        timeout_s=timeout,
        service_name=service,
        sampler=sampler,
        sampler_arg=sampler_arg,
        output=output,
    )
    if warn:
        _warn_config(cfg)
    return cfg


def _warn_config(cfg: Any) -> None:
    from obskit.output import console, escape

    for w in cfg.warnings:
        # soft_wrap: one line each, whatever the width (stderr is often a log file).
        console(stderr=True).print(f"[yellow]obskit: warning:[/] {escape(w)}", soft_wrap=True)


def _report(result: Any, as_json: bool) -> None:
    from obskit.otel.spans import notice

    if as_json:
        from obskit.output import emit_json

        emit_json(result)
    notice(result)


def _end(record: Any, status: str, message: str, attr: list[str] | None) -> None:
    """--status, --message and --attr of a span being ended (`span --start` and `span end`)."""
    from obskit.otel import spans

    record.status = _status(status)
    record.status_message = message if record.status == "error" else ""
    record.attributes.update(spans.parse_attrs(attr))


def _with_ids(result: Any, record: Any) -> Any:
    result.trace_id, result.span_id = record.trace_id, record.span_id
    return result


def _deliver(cfg: Any, record: Any) -> Any:
    """Export one ended span; the result names it, traceparent included."""
    from obskit.otel import export, spans

    result = _with_ids(export.deliver(cfg, [record]), record)
    result.traceparent = spans.context_of(record).traceparent()
    return result


def register(app: typer.Typer) -> None:
    trace_app = typer.Typer(
        name="trace",
        help="OpenTelemetry traces from the terminal (exec, span, event) and of obskit's own work.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    app.add_typer(trace_app, name="trace")

    @trace_app.command(
        "exec",
        context_settings={"allow_interspersed_args": False},
    )
    def exec_cmd(
        command: Annotated[
            list[str], typer.Argument(help="The command and its arguments (after --).", show_default=False)
        ],
        name: Annotated[
            Optional[str], typer.Option("--name", "-n", help="Span name (default: the command).", show_default=False)
        ] = None,
        attr: AttrOpt = None,
        kind: KindOpt = "internal",
        endpoint: EndpointOpt = None,
        protocol: ProtocolOpt = None,
        header: HeaderOpt = None,
        export_timeout: TimeoutOpt = None,
        service: ServiceOpt = None,
        sampler: SamplerOpt = None,
        sampler_arg: SamplerArgOpt = None,
        output: OutputOpt = None,
        no_template: Annotated[
            bool, typer.Option("--no-template", help="Leave {{traceparent}} in arguments as is.")
        ] = False,
    ) -> None:
        """Run COMMAND as a child inside a span; exit with its exit code.

        The child gets TRACEPARENT/TRACESTATE/BAGGAGE; a TRACEPARENT in obskit's own
        environment becomes the parent.  The export starts after the child ends and takes
        at most --export-timeout; what cannot be sent is spooled for `obskit trace flush`.
        {{traceparent}} in an argument is replaced by the span's traceparent.
        """
        from obskit.otel import spans

        cfg = _config(
            endpoint, protocol, header, export_timeout, service, output, sampler=sampler, sampler_arg=sampler_arg, warn=False
        )
        code = spans.run_traced(cfg, command, name=name, attrs=attr, kind=kind, template=not no_template)
        raise typer.Exit(code)

    span_app = typer.Typer(
        name="span",
        help="Spans from a shell script: `span start`/`span end`, or one finished span with --start/--end.",
        invoke_without_command=True,
        rich_markup_mode=None,
    )
    trace_app.add_typer(span_app, name="span")

    @span_app.callback()
    def span_record(
        ctx: typer.Context,
        name: Annotated[Optional[str], typer.Option("--name", "-n", help="Span name.", show_default=False)] = None,
        start: Annotated[
            Optional[str],
            typer.Option("--start", help="Start: epoch s, RFC 3339, or relative (-5s).", show_default=False),
        ] = None,
        end: Annotated[Optional[str], typer.Option("--end", help="End (default: now).", show_default=False)] = None,
        status: Annotated[str, typer.Option("--status", help="ok, error or unset.")] = "ok",
        message: Annotated[str, typer.Option("--message", help="Status message (errors).")] = "",
        attr: AttrOpt = None,
        kind: KindOpt = "internal",
        endpoint: EndpointOpt = None,
        protocol: ProtocolOpt = None,
        header: HeaderOpt = None,
        export_timeout: TimeoutOpt = None,
        service: ServiceOpt = None,
        output: OutputOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Record one finished span: `obskit trace span --name N --start T [--end T]`."""
        if ctx.invoked_subcommand is not None:
            return
        from obskit.errors import UsageError
        from obskit.otel import propagation, spans

        if not name or not start:
            raise UsageError(
                "`trace span` needs --name and --start (or a subcommand: start, end)",
                "e.g. obskit trace span --name build --start -30s --end now",
            )
        cfg = _config(endpoint, protocol, header, export_timeout, service, output)
        record = spans.new_span(cfg, name, propagation.from_env(), spans.check_kind(kind))
        record.start_ns = spans.parse_time(start)
        record.end_ns = spans.parse_time(end or "now")
        if record.end_ns < record.start_ns:
            raise UsageError("--end is before --start", "swap them, or use relative times like --start -5s")
        _end(record, status, message, attr)
        _report(_deliver(cfg, record), as_json)

    @span_app.command("start")
    def span_start(
        name: Annotated[str, typer.Option("--name", "-n", help="Span name.")],
        attr: AttrOpt = None,
        kind: KindOpt = "internal",
        sampler: SamplerOpt = None,
        sampler_arg: SamplerArgOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Open a span and print its traceparent: export TRACEPARENT=$(obskit trace span start -n deploy)."""
        from obskit.errors import Unavailable
        from obskit.otel import config, propagation, spans
        from obskit.otel.spool import Spool

        cfg = config.load(sampler=sampler, sampler_arg=sampler_arg)
        record = spans.new_span(cfg, name, propagation.from_env(), spans.check_kind(kind))
        record.attributes.update(spans.parse_attrs(attr))
        from pathlib import Path

        try:
            spans.save_open(Spool(Path(cfg.state_dir)), record)
        except OSError as e:
            raise Unavailable(
                f"cannot keep the open span in {cfg.state_dir}: {e}",
                "set OBSKIT_TRACE_DIR to a writable directory of yours",
            ) from None
        tp = spans.context_of(record).traceparent()
        if as_json:
            from obskit.output import emit_json

            emit_json(
                {
                    "schema": "obskit.trace.span/1",
                    "traceparent": tp,
                    "trace_id": record.trace_id,
                    "span_id": record.span_id,
                    "sampled": bool(record.flags & 1),
                    "name": name,
                }
            )
        else:
            typer.echo(tp)

    @span_app.command("end")
    def span_end(
        traceparent: Annotated[
            Optional[str], typer.Argument(help="The span's traceparent (default: $TRACEPARENT).", show_default=False)
        ] = None,
        status: Annotated[str, typer.Option("--status", help="ok, error or unset.")] = "ok",
        message: Annotated[str, typer.Option("--message", help="Status message (errors).")] = "",
        attr: AttrOpt = None,
        endpoint: EndpointOpt = None,
        protocol: ProtocolOpt = None,
        header: HeaderOpt = None,
        export_timeout: TimeoutOpt = None,
        service: ServiceOpt = None,
        output: OutputOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """End a span opened by `span start` and export it (prints its parent's traceparent, if any)."""
        import os
        import time
        from pathlib import Path

        from obskit.otel import spans
        from obskit.otel.spool import Spool

        cfg = _config(endpoint, protocol, header, export_timeout, service, output)
        store = Spool(Path(cfg.state_dir))
        record = spans.load_open(store, traceparent or os.environ.get("TRACEPARENT"))
        record.end_ns = time.time_ns()
        _end(record, status, message, attr)
        result = _deliver(cfg, record)
        store.drop_open(record.span_id)
        _report(result, as_json)

    @trace_app.command("event")
    def event_cmd(
        name: Annotated[str, typer.Argument(help="Event name.")],
        attr: AttrOpt = None,
        traceparent: Annotated[
            Optional[str],
            typer.Option("--traceparent", help="Span to add to (default: $TRACEPARENT).", show_default=False),
        ] = None,
        endpoint: EndpointOpt = None,
        protocol: ProtocolOpt = None,
        header: HeaderOpt = None,
        export_timeout: TimeoutOpt = None,
        service: ServiceOpt = None,
        output: OutputOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Add an event to the open span named by TRACEPARENT, else record a zero-length span."""
        import os
        import time
        from pathlib import Path

        from obskit.errors import InputError
        from obskit.otel import export, propagation, spans
        from obskit.otel.model import ExportResult
        from obskit.otel.spool import Spool

        cfg = _config(endpoint, protocol, header, export_timeout, service, output)
        store = Spool(Path(cfg.state_dir))
        raw = traceparent or os.environ.get("TRACEPARENT")
        ctx = propagation.parse_traceparent(raw)
        if raw and ctx is None and traceparent:
            raise InputError(f"not a traceparent: {traceparent[:60]!r}", "expected 00-<32 hex>-<16 hex>-<2 hex>")
        attributes = spans.parse_attrs(attr)
        open_span = spans.open_span_for(store, ctx)
        if open_span is not None:
            open_span.add_event(name, attributes)
            spans.save_open(store, open_span)
            result = _with_ids(ExportResult(destination=f"open span {open_span.span_id}", spans=0), open_span)
        else:
            record = spans.new_span(cfg, name, ctx)
            record.end_ns = record.start_ns = time.time_ns()
            record.attributes.update(attributes)
            record.attributes["obskit.event"] = True
            record.status = "ok"
            result = _with_ids(export.deliver(cfg, [record]), record)
        _report(result, as_json)

    @trace_app.command("show")
    def show_cmd(
        file: Annotated[
            Optional[str], typer.Argument(help="OTLP/JSON file (default: the local span file).", show_default=False)
        ] = None,
        trace_id: Annotated[
            Optional[str], typer.Option("--trace", help="Only this trace (id or prefix).", show_default=False)
        ] = None,
        last: Annotated[int, typer.Option("--last", min=0, help="Show the last N traces (0: all).")] = 10,
        as_json: JsonOpt = False,
    ) -> None:
        """Print the span tree of the local span file (or FILE): durations, status, attributes."""
        from pathlib import Path

        from obskit.otel import config, show
        from obskit.selftrace import span as selfspan

        with selfspan("obskit.trace.show"):
            path = Path(file) if file else Path(config.load().output)
            items, skipped = show.load(path)
            view = show.build(str(path), items, trace_id=trace_id, last=last, skipped=skipped)
        from ._common import emit

        emit(view, as_json, show.render)

    @trace_app.command("status")
    def status_cmd(
        endpoint: EndpointOpt = None,
        protocol: ProtocolOpt = None,
        header: HeaderOpt = None,
        export_timeout: TimeoutOpt = None,
        service: ServiceOpt = None,
        output: OutputOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Send a test span and report the configuration in effect, the spool and the last export errors."""
        from obskit.errors import Interrupted, Unavailable
        from obskit.otel import export, status

        cfg = _config(endpoint, protocol, header, export_timeout, service, output, warn=False)
        report = status.check(cfg)
        from ._common import emit

        emit(report, as_json, status.render)
        if report.test_span.error == export.INTERRUPTED:
            raise Interrupted("interrupted before the test span was answered", "the report above is without it")
        if report.test_span.error:
            raise Unavailable(
                f"the test span could not be delivered: {report.test_span.error}",
                "check the endpoint and protocol above; spans are spooled meanwhile",
            )

    @trace_app.command("flush")
    def flush_cmd(
        endpoint: EndpointOpt = None,
        protocol: ProtocolOpt = None,
        header: HeaderOpt = None,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds the whole flush may take.")] = 10.0,
        service: ServiceOpt = None,
        output: OutputOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Send spooled spans (those a down collector missed); each batch is delivered once."""
        from obskit.errors import Interrupted, Unavailable
        from obskit.otel import export

        cfg = _config(endpoint, protocol, header, timeout, service, output)
        result = export.flush(cfg, timeout)
        interrupted = result.error == export.INTERRUPTED
        if as_json:
            from obskit.output import emit_json

            emit_json(result)
        else:
            typer.echo(
                f"sent {result.sent} span(s) to {result.destination}"
                + (f"; {result.spooled} still spooled" if result.spooled else "")
            )
        if interrupted:
            raise Interrupted("flush interrupted", f"{result.spooled} span(s) stay spooled; retry later")
        if result.error:
            raise Unavailable(f"flush stopped: {result.error}", f"{result.spooled} span(s) stay spooled; retry later")


def _status(value: str) -> str:
    from obskit.errors import UsageError

    v = value.strip().lower()
    if v not in ("ok", "error", "unset"):
        raise UsageError(f"unknown status {value!r}", "use ok, error or unset")
    return v
