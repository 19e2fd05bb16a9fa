"""Make target-controlled text inert before it reaches a terminal.

Function names, thread names, argv, span names, log lines and agent replies come from
processes obskit does not trust.  Printed raw, an escape sequence in them can retitle the
terminal, hide lines or move the cursor.  :func:`inert` turns every C0/C1 control, DEL,
Unicode bidi override and zero-width character into a visible escape (``\\x1b``,
``\\u202e``), so the text reads the same and does nothing.  ``--json`` output needs no
help: JSON escapes controls itself.  HTML pages escape with ``html.escape`` as well.
"""

from __future__ import annotations

from typing import Any


def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)):
        table[cp] = f"\\x{cp:02x}"
    for cp in (
        0x061C,  # arabic letter mark
        0x200B, 0x200C, 0x200D, 0x200E, 0x200F,  # zero-width, LRM/RLM
        0x2028, 0x2029,  # line / paragraph separators
        0x202A, 0x202B, 0x202C, 0x202D, 0x202E,  # embeddings and overrides
        0x2060, 0x2061, 0x2062, 0x2063, 0x2064,  # word joiner, invisible operators
        0x2066, 0x2067, 0x2068, 0x2069,  # isolates
        0xFEFF,  # zero-width no-break space
    ):
        table[cp] = f"\\u{cp:04x}"
    return table


_TABLE = _table()
_TABLE_KEEP_LINES = {k: v for k, v in _TABLE.items() if k not in (0x09, 0x0A)}


def inert(text: Any, *, multiline: bool = False) -> str:
    """``text`` with every control and invisible formatting character made visible.

    ``multiline`` keeps tab and newline (for a log line body shown as-is); everything else,
    including ``\\r``, is escaped either way.
    """
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    return s.translate(_TABLE_KEEP_LINES if multiline else _TABLE)


# In a JSON document from json.dumps, C0 controls are already escaped; these are not (DEL, C1,
# bidi, zero-width) and could still act on a terminal.  JSON's own \uXXXX escape keeps the value.
_JSON_TABLE = {cp: f"\\u{cp:04x}" for cp in _TABLE if cp >= 0x7F}


def json_safe(document: str) -> str:
    """A JSON document (as json.dumps writes it) with every character :func:`inert` would
    escape written as a JSON ``\\uXXXX`` escape: the same JSON value, inert on a terminal."""
    if document.isascii():
        return document
    return document.translate(_JSON_TABLE)


def inert_all(items: Any) -> list[str]:
    return [inert(x) for x in items]
