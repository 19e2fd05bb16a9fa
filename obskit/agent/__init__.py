"""The obskit in-process agent: GC pause record and on-demand tracemalloc over a 0600 unix socket.

Opt in from an app with ``import obskit.agent; obskit.agent.start()``, or run it with
``OBSKIT_AGENT=1`` / ``obskit run -- CMD``.  Importing this package costs only ``os``:
the server module is loaded by :func:`start`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["start", "start_from_env", "stop"]

BOOT_MODULE = "_obskit_agent_server"


def start(directory: str | None = None) -> Any:
    """Start the agent in this process (idempotent). Never raises; returns None if it could not listen."""
    try:
        server = _server()
    except Exception:
        return None
    return server.start(directory)


def stop() -> None:
    try:
        _server().stop()
    except Exception:
        pass


def _server() -> Any:
    # One agent per process: prefer the copy the `obskit run` bootstrap loaded by file path.
    loaded = sys.modules.get(BOOT_MODULE)
    if loaded is not None:
        return loaded
    from obskit.agent import server

    return server


def start_from_env() -> Any:
    """Start the agent when ``OBSKIT_AGENT=1`` is set (what the ``obskit run`` bootstrap calls)."""
    if os.environ.get("OBSKIT_AGENT", "").lower() in ("1", "true", "yes", "on"):
        return start()
    return None
