"""`obskit mem`: Memory of a process: RSS/USS/PSS breakdown, growth and leak verdicts."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("mem")
    def mem_cmd() -> None:
        """Memory of a process: RSS/USS/PSS breakdown, growth and leak verdicts."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit mem` is not built yet")
