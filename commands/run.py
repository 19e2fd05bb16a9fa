"""`obskit run`: Run a Python command with the obskit agent loaded."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd() -> None:
        """Run a Python command with the obskit agent loaded."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit run` is not built yet")
