"""`obskit gc`: GC statistics and pauses of a process (needs the obskit agent)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("gc")
    def gc_cmd() -> None:
        """GC statistics and pauses of a process (needs the obskit agent)."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit gc` is not built yet")
