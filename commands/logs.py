"""`obskit logs`: Follow, parse, filter and summarise structured logs."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs_cmd() -> None:
        """Follow, parse, filter and summarise structured logs."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit logs` is not built yet")
