"""`obskit logs`: follow, parse, filter and summarise structured logs."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from ._common import JsonOpt, ProcRootOpt

LOGS_HELP = """Follow, parse, filter and summarise incident logs.

Reads files and globs (each line labelled with its source), '-' or piped stdin, or the
log files a process has open (--pid). Detects JSON (structlog, python-json-logger, ECS,
zap/logrus, GCP, Loki, docker), logfmt, Python logging text and plain lines, per line.

\b
Examples:
  obskit logs app.log --level warning --since 15m
  kubectl logs -f deploy/api --all-containers | obskit logs -f --level error
  obskit logs 'logs/*.log' --where 'status>=500' --where 'msg~timeout'
  obskit logs app.log --level error --json | wc -l
  obskit logs app.log --summary --json
  obskit logs --pid 1234 -f
"""


def register(app: typer.Typer) -> None:
    @app.command("logs", help=LOGS_HELP)
    def logs_cmd(
        paths: Annotated[Optional[list[str]], typer.Argument(help="Files, globs or directories; '-' for stdin.",
                                                             show_default=False)] = None,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading as lines are written "
                                             "(survives rotation and truncation).")] = False,
        pid: Annotated[Optional[int], typer.Option("--pid", "-p", help="Read the log files this process has open "
                                                   "(and its stdout/stderr when they are files).",
                                                   show_default=False)] = None,
        level: Annotated[Optional[str], typer.Option("--level", "-l", help="Minimum level: trace, debug, info, "
                                                     "warning, error, critical.", show_default=False)] = None,
        since: Annotated[Optional[str], typer.Option("--since", help="Only records at/after this time: 15m, 2h, 1d "
                                                     "ago, or 2024-05-14T12:00:00Z, or 12:30.",
                                                     show_default=False)] = None,
        until: Annotated[Optional[str], typer.Option("--until", help="Only records at/before this time (same forms "
                                                     "as --since).", show_default=False)] = None,
        trace_id: Annotated[Optional[str], typer.Option("--trace-id", help="Only records of this trace (hex id or "
                                                        "traceparent).", show_default=False)] = None,
        grep: Annotated[Optional[str], typer.Option("--grep", "-g", help="Only lines matching this regular "
                                                    "expression (on the raw line).", show_default=False)] = None,
        where: Annotated[Optional[list[str]], typer.Option("--where", "-w", help="Field expression, repeatable: "
                                                           "'status>=500', 'user=alice', 'msg~timeout', "
                                                           "'level!=info'.", show_default=False)] = None,
        as_json: JsonOpt = False,
        raw: Annotated[bool, typer.Option("--raw", help="Print the original lines of the records that pass.")] = False,
        summary: Annotated[bool, typer.Option("--summary", help="Print a summary instead of the records: levels, "
                                              "histogram, top messages, error bursts, traces.")] = False,
        on_full: Annotated[Optional[str], typer.Option("--on-full", help="When processing falls behind: 'drop' "
                                                       "(counted; default with -f) or 'block'.",
                                                       show_default=False)] = None,
        tail: Annotated[Optional[int], typer.Option("--tail", "-n", help="Start with the last N lines of each "
                                                    "file (default with -f: 10; without: all).",
                                                    show_default=False)] = None,
        otlp: Annotated[bool, typer.Option("--otlp", help="Also send the records as OTLP logs (OTEL_EXPORTER_OTLP_* "
                                           "variables; HTTP).")] = False,
        otlp_endpoint: Annotated[Optional[str], typer.Option("--otlp-endpoint", help="OTLP/HTTP base URL (default "
                                                             "from OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT).",
                                                             show_default=False)] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no records (with --otlp or --summary "
                                            "counts only).")] = False,
        max_line: Annotated[int, typer.Option("--max-line-bytes", help="Cut longer lines (counted).")] = 65536,
        color: Annotated[Optional[bool], typer.Option("--color/--no-color", help="Colour the lines (default: when "
                                                      "stdout is a terminal and NO_COLOR is unset).",
                                                      show_default=False)] = None,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        from obskit.errors import UsageError
        from obskit.logs.filters import build_filters
        from obskit.logs.pipeline import Options, Pipeline
        from obskit.logs.sources import check_stdin_usable, is_glob, pid_sources, resolve_paths
        from obskit.output import emit_json, info
        from obskit.selftrace import span

        if raw and as_json and not summary:
            raise UsageError("--raw and --json both choose the output", "use one of them")
        if on_full not in (None, "drop", "block"):
            raise UsageError(f"--on-full {on_full!r}: expected 'drop' or 'block'", "e.g. --on-full block")
        if max_line < 256:
            raise UsageError("--max-line-bytes must be at least 256", "the default is 65536")
        if tail is not None and tail < 0:
            raise UsageError("--tail must be 0 or more", "e.g. --tail 100")
        filters = build_filters(level, since, until, trace_id, grep, where or [])
        specs = resolve_paths(list(paths or []), follow=follow)
        globs = [p for p in paths or [] if is_glob(p)] if follow else []
        notes: list[str] = []
        if pid is not None:
            found = pid_sources(pid, proc_root)
            notes = found.notes
            if not found.specs:
                from obskit.errors import InputError

                hint = notes[0] if notes else "pipe its output in with '-'"
                raise InputError(f"process {pid} has no log files open", hint, pid=pid)
            specs.extend(found.specs)
        if not specs and not globs:
            if sys.stdin is None or sys.stdin.isatty():
                raise UsageError("no log source given", "give files or globs, '-' for stdin, or --pid N")
            from obskit.logs.sources import SourceSpec

            specs = [SourceSpec("stdin", None)]
        check_stdin_usable(specs)
        for note in notes:
            info(note)

        mode = "summary" if summary else "json" if as_json else "raw" if raw else "human"
        if quiet:
            mode = "summary" if summary else "none"
        use_color = color if color is not None else (sys.stdout is not None and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
        opts = Options(
            follow=follow,
            on_full=on_full or ("drop" if follow else "block"),
            cap=max_line,
            tail=tail if tail is not None else (10 if follow else None),
            mode="none" if mode == "summary" else mode,
            color=bool(use_color) and mode == "human",
            summary=summary,
            globs=globs,
        )
        if any(s.path is None for s in specs):
            opts.tail = None  # stdin cannot seek
        exporter = None
        if otlp or otlp_endpoint:
            from obskit.logs.export import OtlpExporter, config_from_env

            try:
                exporter = OtlpExporter(config_from_env(otlp_endpoint), {s.label: s.note or s.path or "-" for s in specs})
            except ImportError as e:
                from obskit.errors import Unavailable

                raise Unavailable(f"--otlp needs opentelemetry-proto: {e}", "pip install opentelemetry-proto") from None
        with span("obskit.logs", sources=len(specs), follow=follow) as s:
            pipe = Pipeline(specs, filters, opts, exporter=exporter)
            try:
                result = pipe.run()
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP made one, outside the read loop
                pipe.interrupted = True
                result = pipe.build_summary() if pipe.summary is not None else None
            s.set_attribute("lines", pipe.counters.lines)
            s.set_attribute("records", pipe.counters.records)
        otlp_stats = exporter.close() if exporter is not None else None
        if result is not None and not pipe.broken_pipe:
            result.otlp = otlp_stats
            if as_json:
                emit_json(result)
            else:
                from obskit.logs.render import render_summary

                render_summary(result)
        _footer(pipe, mode, otlp_stats)
        if pipe.interrupted and pipe.counters.lines == 0 and result is None:
            from obskit.errors import Interrupted

            raise Interrupted("interrupted before any line was read")


def _footer(pipe: object, mode: str, otlp_stats: dict[str, object] | None) -> None:
    """Counters on stderr: always for people; for machines only when something was lost."""
    from obskit.logs.pipeline import Pipeline

    assert isinstance(pipe, Pipeline)
    c = pipe.counters
    lost = pipe.dropped or pipe.capped or pipe.gaps or c.invalid_utf8
    parts = [f"{c.lines} lines", f"{c.records} shown" if mode in ("human", "json", "raw") else f"{c.records} matched"]
    if c.unparsed:
        parts.append(f"{c.unparsed} unparsed")
    for name, value in (("dropped", pipe.dropped), ("capped", pipe.capped), ("gaps", pipe.gaps),
                        ("invalid utf-8", c.invalid_utf8)):
        if value:
            parts.append(f"{value} {name}")
    if otlp_stats is not None:
        otlp = f"otlp sent {otlp_stats['sent']} failed {otlp_stats['failed']} dropped {otlp_stats['dropped']}"
        if otlp_stats.get("failed") and otlp_stats.get("last_error"):
            otlp += f" ({otlp_stats['last_error']})"
        parts.append(otlp)
    if mode == "human" or lost or otlp_stats is not None or pipe.interrupted:
        from obskit.output import info

        try:
            info(", ".join(parts))
        except (OSError, ValueError):  # a hung-up terminal: the counters are lost, the result is not
            pass
