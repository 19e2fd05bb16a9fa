"""`obskit quota`: Container CPU and memory quotas against the workers actually running."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("quota")
    def quota_cmd() -> None:
        """Container CPU and memory quotas against the workers actually running."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit quota` is not built yet")
