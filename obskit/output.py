"""Shared output helpers: canonical JSON for every result, and the rich consoles.

Results are plain dataclasses carrying a ``SCHEMA`` class attribute such as
``"obskit.profile/1"``.  :func:`to_jsonable` turns them (recursively) into JSON
values and adds ``"schema"`` at the top level, so ``--json`` output is versioned.
rich is imported only when a console is asked for.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


# Schema ids are ``obskit.<command>[.<part>]/<version>``: dots between levels, hyphens only inside
# a word.  Ids written by earlier releases, read back as the id that replaced them.
LEGACY_SCHEMAS: dict[str, str] = {
    "obskit.profile-report/1": "obskit.profile.report/1",
    "obskit.profile-diff/1": "obskit.profile.diff/1",
    "obskit.profile-diff-report/1": "obskit.profile.diff.report/1",
    "obskit.logs-summary/1": "obskit.logs.summary/1",
    "obskit.log-marker/1": "obskit.logs.marker/1",
    "obskit.log/1": "obskit.logs.record/1",
}


def schema_of(doc: Any) -> str:
    """The schema id of an obskit JSON document (an old id as the one that replaced it), or ``""``."""
    schema = doc.get("schema") if isinstance(doc, Mapping) else None
    if not isinstance(schema, str):
        return ""
    return LEGACY_SCHEMAS.get(schema, schema)


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, enums, paths, sets and mappings to JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        schema = getattr(type(obj), "SCHEMA", None)
        if isinstance(schema, str):
            out["schema"] = schema
        for f in dataclasses.fields(obj):
            if f.metadata.get("json") is False:
                continue
            out[f.name] = to_jsonable(getattr(obj, f.name))
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, type):
        return obj.__name__  # a class (e.g. the error a check maps to) is shown by its name
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    return str(obj)


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    from obskit.inert import json_safe

    return json_safe(json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False))


def emit_json(obj: Any, file: IO[str] | None = None, *, indent: int | None = 2) -> None:
    """Write one JSON document (the canonical ``--json`` output) to stdout."""
    stream = file if file is not None else sys.stdout
    stream.write(dumps(obj, indent=indent))
    stream.write("\n")
    stream.flush()


_consoles: dict[str, Console] = {}


def _console_class() -> type[Console]:
    """A rich Console whose every printed segment goes through :func:`obskit.inert.inert`.

    This is the choke point for target-controlled text (function, thread, span names, argv,
    agent replies): whatever a renderer forgot, an escape sequence inside a segment's text is
    shown as ``\\x1b`` and does nothing.  rich's own styling and cursor control travel outside
    segment text (styles, control segments) and are untouched.
    """
    from rich.console import Console
    from rich.segment import Segment

    from obskit.inert import inert

    class InertConsole(Console):
        def _render_buffer(self, buffer: Any) -> str:
            safe = (seg if seg.control else Segment(inert(seg.text, multiline=True), seg.style) for seg in buffer)
            return super()._render_buffer(safe)

    return InertConsole


def console(stderr: bool = False) -> Console:
    """The shared rich console (stdout for results, stderr for progress and warnings)."""
    key = "err" if stderr else "out"
    if key not in _consoles:
        Console = _console_class()

        kwargs: dict[str, Any] = {"stderr": stderr, "highlight": False}
        width = os.environ.get("OBSKIT_WIDTH", "")
        if width.isdigit() and int(width) >= 20:
            kwargs["width"] = int(width)
        _consoles[key] = Console(**kwargs)
    return _consoles[key]


class _Result:
    shown = False


def mark_result_shown() -> None:
    """A streaming command (``gc --trace``, ``logs -f``) has shown its first lines: its result
    is what it printed, so an interruption from now on (Ctrl-C, SIGTERM, or the SIGHUP that
    follows a closed terminal) is its normal end, exit 0, wherever it lands."""
    _Result.shown = True


def result_shown() -> bool:
    return _Result.shown


def reset_result() -> None:
    _Result.shown = False


def warn(message: str) -> None:
    """A one-line warning on stderr (never on stdout, which may carry --json)."""
    console(stderr=True).print(f"[yellow]obskit: warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    console(stderr=True).print(f"[dim]obskit:[/] {escape(message)}", soft_wrap=True)


def escape(text: str) -> str:
    """Escape rich markup in text that comes from a target (function names, paths, logs)."""
    return text.replace("[", "\\[")


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_seconds(s: float | None, *, precise: bool = False) -> str:
    """A duration for people; ``precise`` (benchmark medians and deltas): signed, from
    nanoseconds, with the digits a 1 % change needs, seconds to the millisecond."""
    if s is None:
        return "-"
    if precise and abs(s) < 120:
        if s == 0:
            return "0"
        steps = _PRECISE_STEPS
    else:
        steps = _HUMAN_STEPS
    for below, scale, spec, unit in steps:
        if abs(s) < below:
            return f"{s * scale:{spec}}{unit}"
    return f"{s / 86400:.1f}d"


# (below, multiply by, format, unit), first match wins
_Steps = tuple[tuple[float, float, str, str], ...]
_PRECISE_STEPS: _Steps = ((1e-6, 1e9, ".1f", "ns"), (1e-3, 1e6, ".1f", "µs"), (0.1, 1e3, ".1f", "ms"), (1, 1e3, ".0f", "ms"),
                  (120, 1, ".3f", "s"))
_HUMAN_STEPS: _Steps = ((1e-3, 1e6, ".0f", "µs"), (1, 1e3, ".1f", "ms"), (120, 1, ".1f", "s"), (7200, 1 / 60, ".1f", "m"),
                (172800, 1 / 3600, ".1f", "h"))
