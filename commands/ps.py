"""`obskit ps`: List every Python process, as a tree of masters and workers."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("ps")
    def ps_cmd() -> None:
        """List every Python process, as a tree of masters and workers."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit ps` is not built yet")
