"""`obskit profile`: Sampling profiles: record, show, diff."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile_cmd() -> None:
        """Sampling profiles: record, show, diff."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit profile` is not built yet")
