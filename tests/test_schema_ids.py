"""Every schema id in the tree follows one style: ``obskit.<command>[.<part>]/<version>``."""

from __future__ import annotations

import re
from pathlib import Path

from obskit.commands import COMMANDS

from obskit.output import LEGACY_SCHEMAS, schema_of

ROOT = Path(__file__).resolve().parent.parent
# dots between levels; a level is lower-case words joined by hyphens, the first level one word
STYLE = re.compile(r"obskit\.[a-z]+(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)*/[1-9][0-9]*")
# documents that are not one command's: a process record, the agent's inject/detach replies
NOT_A_COMMAND = {"process", "inject", "detach"}
LITERAL = re.compile(r"""(?:SCHEMA\s*=\s*|["']schema["']\s*:\s*)["'](obskit\.[^"']*)["']""")


def schema_ids() -> dict[str, str]:
    found: dict[str, str] = {}
    for base in ("obskit", "commands"):
        for p in sorted((ROOT / base).rglob("*.py")):
            for m in LITERAL.finditer(p.read_text(encoding="utf-8")):
                found[m.group(1)] = str(p.relative_to(ROOT))
    return found


def test_schema_ids_found() -> None:
    ids = schema_ids()
    # the walk sees the dataclasses' SCHEMA attributes and the hand-built documents
    assert {"obskit.profile/1", "obskit.profile.report/1", "obskit.logs.summary/1", "obskit.detach/1"} <= set(ids)


def test_every_schema_id_follows_the_style() -> None:
    bad = {i: where for i, where in schema_ids().items() if not STYLE.fullmatch(i)}
    assert not bad, f"schema ids not in the obskit.<command>[.<part>]/<version> style: {bad}"
    first = {i: where for i, where in schema_ids().items()
             if i.split("/")[0].split(".")[1] not in set(COMMANDS) | NOT_A_COMMAND}
    assert not first, f"schema ids whose first level is not a command: {first}"


def test_style_rejects_the_old_ids_and_old_ids_read_as_new() -> None:
    for old, new in LEGACY_SCHEMAS.items():
        assert STYLE.fullmatch(new)
        assert schema_of({"schema": old}) == new
    assert not STYLE.fullmatch("obskit.profile-report/1") and not STYLE.fullmatch("obskit.logs-summary/1")
    assert schema_of({"schema": "obskit.quota/1"}) == "obskit.quota/1" and schema_of([]) == ""
