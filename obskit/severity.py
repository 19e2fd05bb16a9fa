"""The one severity vocabulary of findings, checks and verdicts: ``info`` < ``warning`` < ``error``.

``warn`` is read as ``warning`` wherever a user types a severity (``--fail-on warn``).
"""

from __future__ import annotations

from typing import Literal

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
ORDER: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
ALIASES: dict[str, Severity] = {"warn": "warning"}


def parse_severity(text: str, *, allowed: tuple[Severity, ...] = SEVERITIES) -> Severity | None:
    """The severity a user typed (case-insensitive, ``warn`` for ``warning``), or None if it is not one of ``allowed``."""
    word = text.strip().lower()
    for s in allowed:
        if ALIASES.get(word, word) == s:
            return s
    return None


def at_least(severity: str, threshold: str) -> bool:
    """True when ``severity`` is as severe as ``threshold`` or more."""
    return ORDER[severity] >= ORDER[threshold]


def worst(severities: list[str] | tuple[str, ...], default: str = "ok") -> str:
    """The most severe of ``severities``, ``default`` when there is none."""
    return max(severities, key=lambda s: ORDER[s], default=default)
