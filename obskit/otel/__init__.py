"""OpenTelemetry support for obskit: `obskit trace` and spans of obskit's own work.

Kept empty on purpose: every ``obskit.otel.*`` import runs this file first, and
``trace exec`` pays for each import on every wrapped command.  Spans of obskit's own work
live in :mod:`obskit.tracing.selfspan` (reached through :mod:`obskit.selftrace`).
"""
