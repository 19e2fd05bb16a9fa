"""`obskit doctor`: Check whether obskit can attach to a process, and say how to fix what fails."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_cmd() -> None:
        """Check whether obskit can attach to a process, and say how to fix what fails."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit doctor` is not built yet")
