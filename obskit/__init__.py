"""obskit: profiling and observability for live Python services.

The core library. It never imports the CLI layer (``obskit.commands``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
