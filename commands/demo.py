"""`obskit demo`: Start the bundled demo service, profile it for a few seconds and write profile.html."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd() -> None:
        """Start the bundled demo service, profile it for a few seconds and write profile.html."""
        from obskit.errors import Unavailable

        raise Unavailable("`obskit demo` is not built yet")
