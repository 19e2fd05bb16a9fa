"""`obskit trace`: OpenTelemetry traces from the terminal and from obskit's own work."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("trace")
    def trace_cmd() -> None:
        """OpenTelemetry traces from the terminal and from obskit's own work."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit trace` is not built yet")
