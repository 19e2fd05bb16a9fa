"""`obskit stacks`: Dump every thread's stack, grouped and classified (lock, I/O, sleeping, running)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("stacks")
    def stacks_cmd() -> None:
        """Dump every thread's stack, grouped and classified (lock, I/O, sleeping, running)."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit stacks` is not built yet")
