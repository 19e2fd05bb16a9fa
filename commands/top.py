"""`obskit top`: Live view of a process: top functions beside CPU, RSS, threads and throttling."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("top")
    def top_cmd() -> None:
        """Live view of a process: top functions beside CPU, RSS, threads and throttling."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit top` is not built yet")
