"""`obskit trace`: OpenTelemetry traces from the terminal and from obskit's own work.

Each command parses its options and calls one function of :mod:`obskit.otel` (``spans``,
``show``, ``status``, ``export``); ``trace exec`` also has a fast entry that skips this
module (:mod:`obskit.otel.fastexec`, same options, same :func:`~obskit.otel.spans.run_traced`).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ._common import JsonOpt, emit

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
        help="Seconds the export may take in total (default 1; OTEL_EXPORTER_OTLP_TIMEOUT ms, see docs/trace.md).",
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
StatusOpt = Annotated[str, typer.Option("--status", help="ok, error or unset.")]
MessageOpt = Annotated[str, typer.Option("--message", help="Status message (errors).")]


def _config(
    endpoint: str | None = None,
    protocol: str | None = None,
    header: list[str] | None = None,
    timeout: float | None = None,
    service: str | None = None,
    output: str | None = None,
    *,
    sampler: str | None = None,
    sampler_arg: str | None = None,
    warn: bool = True,
) -> Any:
    """The export configuration from the flags; its warnings printed unless `warn` is off."""
    from obskit.tracing import config

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
        from obskit.output import warn as print_warning

        for w in cfg.warnings:
            print_warning(w)
    return cfg


def _report(result: Any, as_json: bool) -> None:
    """An export result: JSON on stdout when asked; one stderr line when it was not delivered."""
    from obskit.tracing.tracer import notice

    if as_json:
        emit(result, True)
    notice(result)


def exec_cmd(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).", show_default=False)],
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
    no_template: Annotated[bool, typer.Option("--no-template", help="Leave {{traceparent}} in arguments as is.")] = False,
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
    raise typer.Exit(spans.run_traced(cfg, command, name=name, attrs=attr, kind=kind, template=not no_template))


def span_record(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Span name.", show_default=False)] = None,
    start: Annotated[
        Optional[str],
        typer.Option("--start", help="Start: epoch s, RFC 3339, or relative (-5s, -2m).", show_default=False),
    ] = None,
    end: Annotated[Optional[str], typer.Option("--end", help="End (default: now).", show_default=False)] = None,
    status: StatusOpt = "ok",
    message: MessageOpt = "",
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
    from obskit.otel import spans

    cfg = _config(endpoint, protocol, header, export_timeout, service, output)
    result = spans.record_finished(cfg, name, start, end, status=status, message=message, attrs=attr, kind=kind)
    _report(result, as_json)


def span_start(
    name: Annotated[str, typer.Option("--name", "-n", help="Span name.")],
    attr: AttrOpt = None,
    kind: KindOpt = "internal",
    sampler: SamplerOpt = None,
    sampler_arg: SamplerArgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a span and print its traceparent: export TRACEPARENT=$(obskit trace span start -n deploy)."""
    from obskit.otel import spans

    opened = spans.start_open(_config(sampler=sampler, sampler_arg=sampler_arg, warn=False), name, attrs=attr, kind=kind)
    if as_json:
        emit(opened, True)
    else:
        typer.echo(opened.traceparent)


def span_end(
    traceparent: Annotated[
        Optional[str], typer.Argument(help="The span's traceparent (default: $TRACEPARENT).", show_default=False)
    ] = None,
    status: StatusOpt = "ok",
    message: MessageOpt = "",
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
    from obskit.otel import spans

    cfg = _config(endpoint, protocol, header, export_timeout, service, output)
    _report(spans.end_open(cfg, traceparent, status=status, message=message, attrs=attr), as_json)


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
    from obskit.otel import spans

    cfg = _config(endpoint, protocol, header, export_timeout, service, output)
    _report(spans.add_event(cfg, name, traceparent=traceparent, attrs=attr), as_json)


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
    from obskit.otel import show
    from obskit.selftrace import span as selfspan
    from obskit.tracing import config

    with selfspan("obskit.trace.show"):
        view = show.view_file(file, config.load().output, trace_id=trace_id, last=last)
    emit(view, as_json, show.render)


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
    from obskit.otel import status
    from obskit.tracing import export

    report = status.check(_config(endpoint, protocol, header, export_timeout, service, output, warn=False))
    emit(report, as_json, status.render)
    if report.test_span.error == export.INTERRUPTED:
        raise Interrupted("interrupted before the test span was answered", "the report above is without it")
    if report.test_span.error:
        raise Unavailable(
            f"the test span could not be delivered: {report.test_span.error}",
            "check the endpoint and protocol above; spans are spooled meanwhile",
        )


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
    from obskit.tracing import export

    result = export.flush(_config(endpoint, protocol, header, timeout, service, output), timeout)
    if as_json:
        emit(result, True)
    else:
        typer.echo(
            f"sent {result.sent} span(s) to {result.destination}"
            + (f"; {result.spooled} still spooled" if result.spooled else "")
        )
    if result.error == export.INTERRUPTED:
        raise Interrupted("flush interrupted", f"{result.spooled} span(s) stay spooled; retry later")
    if result.error:
        raise Unavailable(f"flush stopped: {result.error}", f"{result.spooled} span(s) stay spooled; retry later")


def register(app: typer.Typer) -> None:
    trace_app = typer.Typer(
        name="trace",
        help="OpenTelemetry traces from the terminal (exec, span, event) and of obskit's own work.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    app.add_typer(trace_app, name="trace")
    # Options after COMMAND are the command's; an unknown option before it is a usage error.
    trace_app.command("exec", context_settings={"allow_interspersed_args": False})(exec_cmd)
    span_app = typer.Typer(
        name="span",
        help="Spans from a shell script: `span start`/`span end`, or one finished span with --start/--end.",
        invoke_without_command=True,
        rich_markup_mode=None,
    )
    trace_app.add_typer(span_app, name="span")
    span_app.callback()(span_record)
    span_app.command("start")(span_start)
    span_app.command("end")(span_end)
    trace_app.command("event")(event_cmd)
    trace_app.command("show")(show_cmd)
    trace_app.command("status")(status_cmd)
    trace_app.command("flush")(flush_cmd)
