"""``obskit trace exec`` without the CLI framework: the fast entry.

A deploy script may wrap fifty steps in ``trace exec``; what obskit adds to each is paid
fifty times.  Importing typer, click and rich costs ~100 ms, so the entry point
(``obskit/__main__.py``) hands ``trace exec ARGS`` here first.  This reads the same options
as ``commands/trace.py`` (same names, same meaning) and calls the same
:func:`obskit.otel.spans.run_traced`.  Anything it does not handle itself — ``--help``, an
unknown option, a malformed value, a configuration error — returns ``None`` *before the
child starts*, and the full CLI then runs and reports it exactly as it always does.
"""

from __future__ import annotations

from collections.abc import Sequence

# option -> (key, takes a value, repeatable); the option names of `obskit trace exec`
_OPTIONS: dict[str, tuple[str, bool, bool]] = {
    "--name": ("name", True, False),
    "-n": ("name", True, False),
    "--attr": ("attr", True, True),
    "-a": ("attr", True, True),
    "--kind": ("kind", True, False),
    "--endpoint": ("endpoint", True, False),
    "--protocol": ("protocol", True, False),
    "--header": ("header", True, True),
    "--export-timeout": ("export_timeout", True, False),
    "--service": ("service", True, False),
    "--sampler": ("sampler", True, False),
    "--sampler-arg": ("sampler_arg", True, False),
    "--output": ("output", True, False),
    "-o": ("output", True, False),
    "--no-template": ("no_template", False, False),
}


def parse(args: Sequence[str]) -> tuple[dict[str, object], list[str]] | None:
    """(options, command) from ``trace exec`` arguments; None when the full parser is needed."""
    opts: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break  # the command starts here (options after it are the command's)
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = _OPTIONS.get(name)
        if spec is None:
            return None  # --help, -h, an unknown option: the full CLI explains
        key, takes_value, repeat = spec
        if not takes_value:
            if eq:
                return None
            opts[key] = True
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(args):
            value = args[i + 1]
            i += 2
        else:
            return None
        if repeat:
            values = opts.setdefault(key, [])
            assert isinstance(values, list)
            values.append(value)
        else:
            opts[key] = value  # (given twice: the last one wins, as with click)
    command = list(args[i:])
    if not command:
        return None
    if "export_timeout" in opts:
        try:
            opts["export_timeout"] = float(str(opts["export_timeout"]))
        except ValueError:
            return None
    return opts, command


def run(args: Sequence[str]) -> int | None:
    """Run ``trace exec ARGS``; the exit code, or None to let the full CLI handle ARGS."""
    from obskit.errors import ObskitError

    parsed = parse(args)
    if parsed is None:
        return None
    opts, command = parsed
    from obskit.otel import spans
    from obskit.tracing import config

    def s(key: str) -> str | None:
        v = opts.get(key)
        return v if isinstance(v, str) else None

    def many(key: str) -> list[str] | None:
        v = opts.get(key)
        return v if isinstance(v, list) else None

    try:
        t = opts.get("export_timeout")
        cfg = config.load(
            endpoint=s("endpoint"),
            protocol=s("protocol"),
            headers=many("header"),
            timeout_s=t if isinstance(t, float) else None,
            service_name=s("service"),
            sampler=s("sampler"),
            sampler_arg=s("sampler_arg"),
            output=s("output"),
        )
        spans.check_kind(s("kind") or "internal")
        spans.parse_attrs(many("attr"))
    except ObskitError:
        return None  # nothing has run yet: the full CLI reports it, with its one error mapping
    return spans.run_traced(
        cfg,
        command,
        name=s("name"),
        attrs=many("attr"),
        kind=s("kind") or "internal",
        template=not opts.get("no_template"),
    )
