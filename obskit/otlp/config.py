"""Exporter settings from the standard OTEL_EXPORTER_OTLP_* variables, for one signal.

Precedence: flag > per-signal variable (``OTEL_EXPORTER_OTLP_TRACES_*``,
``OTEL_EXPORTER_OTLP_LOGS_*``) > generic variable > default.

**The timeout rule** (docs/trace.md, docs/logs.md), the same for every signal:
``OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT`` is milliseconds, as the specification says, except
that a value below 100 is read as seconds with a one-line warning: as milliseconds it would
be too short for any export, and it is what a variable written for the Python SDK (which
reads seconds; its default is ``10``) looks like.  So ``2500`` is 2.5 s, ``500`` is 0.5 s,
``10`` is 10 s (warned).  The result is capped at :data:`MAX_TIMEOUT_S` (warned); a value
that is not a positive number is warned about and the default is used.  A bad variable
never stops a command; a bad flag is a usage error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from obskit.errors import UsageError
from obskit.redact import redact_header_value, redact_url

PROTOCOLS = ("http/protobuf", "http/json", "grpc")
SIGNAL_PATHS = {"traces": "/v1/traces", "logs": "/v1/logs"}
SECONDS_BELOW = 100.0  # a timeout variable under this is read as seconds (the Python SDK's unit)
MAX_TIMEOUT_S = 600.0  # no export waits longer than this, whatever a variable or flag says


class OtlpConfig:
    """Where and how one signal is exported.

    A plain class, not a dataclass: ``trace exec`` reads it before its child starts, and
    importing ``dataclasses`` would cost every wrapped command a few milliseconds.
    """

    def __init__(
        self,
        signal: str = "traces",
        endpoint: str = "",  # full URL the requests go to ("" = not configured)
        protocol: str = "http/protobuf",
        headers: dict[str, str] | None = None,
        timeout_s: float = 1.0,
        compression: str = "",
        insecure: bool = False,
        warnings: list[str] | None = None,
    ) -> None:
        self.signal = signal
        self.endpoint = endpoint
        self.protocol = protocol
        self.headers: dict[str, str] = {} if headers is None else headers
        self.timeout_s = timeout_s
        self.compression = compression
        self.insecure = insecure
        self.warnings: list[str] = [] if warnings is None else warnings

    def __repr__(self) -> str:
        return f"{type(self).__name__}(signal={self.signal!r}, endpoint={self.shown_endpoint!r}, protocol={self.protocol!r})"

    @property
    def shown_endpoint(self) -> str:
        """The endpoint safe to print or store (no password or token in its userinfo)."""
        return redact_url(self.endpoint)

    def redacted_headers(self) -> dict[str, str]:
        return {k: redact_header_value(v) for k, v in self.headers.items()}

    def endpoint_problem(self) -> str:
        """Why no export to this endpoint can succeed ("" when it may)."""
        if not self.endpoint:
            return ""
        scheme = self.endpoint.split("://", 1)[0].lower() if "://" in self.endpoint else ""
        if scheme not in ("http", "https"):
            return f"OTLP endpoint {self.shown_endpoint!r} is not an http:// or https:// URL; no export can succeed"
        try:
            parts = urlsplit(self.endpoint)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return f"OTLP endpoint {self.shown_endpoint!r} is not a valid URL; no export can succeed"
        if not parts.hostname:
            return f"OTLP endpoint {self.shown_endpoint!r} has no host; no export can succeed"
        return ""


def parse_kv_list(text: str | None, what: str, warnings: list[str]) -> dict[str, str]:
    """``k=v,k2=v2`` with percent-encoded values (W3C baggage format, used by OTEL_* vars)."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            warnings.append(f"ignored malformed {what} entry {item.split('=')[0][:20]!r}")
            continue
        out[unquote(key.strip())] = unquote(value.strip())
    return out


_HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"


def header_ok(name: str, value: str) -> bool:
    """An HTTP field name (RFC 9110 token) and a value without control characters."""
    return bool(re.fullmatch(_HEADER_NAME, name)) and not any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)


def env_value(env: Mapping[str, str], signal: str, name: str) -> tuple[str, str]:
    """(value, variable it came from) for OTEL_EXPORTER_OTLP_<SIGNAL>_<name>, else the generic one."""
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = (env.get(var) or "").strip()
        if value:
            return value, var
    return "", f"OTEL_EXPORTER_OTLP_{name}"


def read_timeout(raw: str, default_s: float, variable: str = "OTEL_EXPORTER_OTLP_TIMEOUT") -> tuple[float, str]:
    """Seconds from a timeout variable by the rule above, and a warning ("" when none)."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        return default_s, f"{variable} {raw[:20]!r} is not a positive number of milliseconds; using {default_s:g} s"
    if value < SECONDS_BELOW:
        seconds = min(value, MAX_TIMEOUT_S)
        return seconds, (
            f"{variable}={raw[:20]} read as {seconds:g} s (as milliseconds it is too short for any export; "
            f"the Python SDK reads seconds): write {value * 1000:g} to mean it in milliseconds"
        )
    seconds = value / 1000.0
    if seconds > MAX_TIMEOUT_S:
        return MAX_TIMEOUT_S, f"{variable}={raw[:20]} is over {MAX_TIMEOUT_S:g} s; using {MAX_TIMEOUT_S:g} s"
    return seconds, ""


def check_timeout_flag(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError("the export timeout must be positive", "give seconds, e.g. 1")
    if seconds > MAX_TIMEOUT_S:
        raise UsageError(f"the export timeout must be at most {MAX_TIMEOUT_S:g} s", "give seconds, e.g. 5")
    return seconds


def endpoint_url(env: Mapping[str, str], signal: str, protocol: str, flag: str | None) -> str:
    """The URL requests go to: a per-signal variable is used as is; the generic one (or the
    flag) gets the signal path appended (spec: ENDPOINT + ``/v1/traces``), except for gRPC."""
    signal_var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    if flag:
        base, signal_specific = flag.strip(), False
    elif env.get(signal_var, "").strip():
        base, signal_specific = env[signal_var].strip(), True
    else:
        base, signal_specific = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip(), False
    if not base:
        return ""
    if "://" not in base:
        base = "http://" + base
    path = SIGNAL_PATHS[signal]
    if protocol == "grpc" or signal_specific or base.rstrip("/").endswith(path):
        return base
    return base.rstrip("/") + path


def load(
    env: Mapping[str, str],
    signal: str,
    *,
    default_timeout_s: float,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: list[str] | None = None,
    timeout_s: float | None = None,
    endpoint_flag: str = "--endpoint",
) -> OtlpConfig:
    """The exporter settings of ``signal`` ("traces" or "logs") from ``env`` and flags
    (``endpoint_flag``: how the endpoint option is spelled, for its error message)."""
    warnings: list[str] = []
    proto_raw, proto_var = env_value(env, signal, "PROTOCOL")
    proto = (protocol or proto_raw or "http/protobuf").lower()
    if proto not in PROTOCOLS:
        if protocol:
            raise UsageError(f"unknown protocol {protocol!r}", f"use one of: {', '.join(PROTOCOLS)}")
        warnings.append(f"unknown {proto_var} {proto[:30]!r}; using http/protobuf")
        proto = "http/protobuf"
    hdrs: dict[str, str] = {}
    raw_headers, headers_var = env_value(env, signal, "HEADERS")
    for k, v in parse_kv_list(raw_headers, "header", warnings).items():
        if header_ok(k, v):
            hdrs[k] = v
        else:  # it would fail every export, and every later flush of the spool
            warnings.append(f"ignored header {k[:20]!r} from {headers_var}: not a valid HTTP header")
    for h in headers or []:
        k, sep, v = h.partition("=")
        if not sep or not header_ok(k.strip(), v.strip()):
            raise UsageError(f"bad --header {k[:30]!r}", "use --header name=value (a token name, a value on one line)")
        hdrs[k.strip()] = v.strip()
    if timeout_s is None:
        raw, var = env_value(env, signal, "TIMEOUT")
        timeout_s = default_timeout_s
        if raw:
            timeout_s, warning = read_timeout(raw, default_timeout_s, var)
            if warning:
                warnings.append(warning)
    else:
        timeout_s = check_timeout_flag(timeout_s)
    compression = env_value(env, signal, "COMPRESSION")[0].lower()
    cfg = OtlpConfig(
        signal=signal,
        endpoint=endpoint_url(env, signal, proto, endpoint),
        protocol=proto,
        headers=hdrs,
        timeout_s=timeout_s,
        compression="gzip" if compression == "gzip" else "",
        insecure=env_value(env, signal, "INSECURE")[0].lower() in ("true", "1"),
        warnings=warnings,
    )
    problem = cfg.endpoint_problem()
    if problem:
        if endpoint:
            raise UsageError(f"{endpoint_flag}: {problem}", f"e.g. {endpoint_flag} http://localhost:4318")
        warnings.append(problem)
    return cfg
