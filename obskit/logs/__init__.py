"""Incident log handling: sources (files, stdin, a process's fds), per-line parsing and
normalisation, filters, summaries and OTLP export.

Pipeline: reader threads (:mod:`obskit.logs.sources`) feed batches of raw lines into a
bounded queue; :mod:`obskit.logs.pipeline` prefilters, parses (:mod:`obskit.logs.parse`),
filters (:mod:`obskit.logs.filters`) and hands :class:`LogRecord` objects to sinks
(printer, :mod:`obskit.logs.summary`, :mod:`obskit.logs.export`).
"""

from obskit.logs.model import LEVELS, LogRecord, level_rank, normalise_level

__all__ = ["LEVELS", "LogRecord", "level_rank", "normalise_level"]
