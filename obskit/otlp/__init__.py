"""The OTLP exporter layer shared by every signal obskit sends (traces, logs).

:mod:`obskit.otlp.config` reads the standard ``OTEL_EXPORTER_OTLP_[SIGNAL_]*`` variables
(one timeout rule, one header parser, one endpoint rule) and :mod:`obskit.otlp.transport`
sends one encoded request within a deadline (retries inside it, gzip, no proxies).
Stdlib only at import time, so ``trace exec`` can use it before its child starts.
"""
