"""Tracing core, a shared service: span records, W3C propagation, samplers, the trace
configuration, OTLP encoding, delivery with a spool, and spans of obskit's own work.

Used by the `obskit trace` commands (:mod:`obskit.otel`) and, through :mod:`obskit.selftrace`,
by every command that traces itself.  Kept empty on purpose: ``trace exec`` pays for every
import on each wrapped command.
"""
