"""Export configuration from the standard OTEL_* variables, with flags on top.

Precedence: flag > per-signal variable (``OTEL_EXPORTER_OTLP_TRACES_*``) > generic
variable > default.  ``OTEL_EXPORTER_OTLP_TIMEOUT`` is read as milliseconds, as the
spec says (the Python SDK reads seconds; docs/trace.md notes the difference).  With
no endpoint, spans go to a local OTLP-JSON file instead of the network.
"""

from __future__ import annotations

import math
import os
import platform
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from obskit.errors import UsageError
from obskit.otel import sampling
from obskit.redact import redact_header_value

PROTOCOLS = ("http/protobuf", "http/json", "grpc")
DEFAULT_BUDGET_S = 1.0


@dataclass
class TraceConfig:
    SCHEMA = "obskit.trace.config/1"

    endpoint: str = ""  # full URL the spans go to ("" = local file)
    protocol: str = "http/protobuf"
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_BUDGET_S
    compression: str = ""
    insecure: bool = False
    service_name: str = "obskit"
    resource: dict[str, Any] = field(default_factory=dict)
    sampler: sampling.Sampler = field(default_factory=sampling.Sampler)
    output: str = ""  # the local OTLP-JSON file when there is no endpoint
    state_dir: str = ""
    warnings: list[str] = field(default_factory=list)
    sdk_disabled: bool = False

    @property
    def destination(self) -> str:
        return self.endpoint or f"file:{self.output}"

    def redacted_headers(self) -> dict[str, str]:
        return {k: redact_header_value(v) for k, v in self.headers.items()}

    def summary(self) -> dict[str, Any]:
        """The configuration in effect, safe to print (header values redacted)."""
        return {
            "endpoint": self.endpoint or None,
            "protocol": self.protocol if self.endpoint else "otlp-json file",
            "output": None if self.endpoint else self.output,
            "headers": self.redacted_headers(),
            "timeout_s": self.timeout_s,
            "compression": self.compression or None,
            "service_name": self.service_name,
            "sampler": self.sampler.describe(),
            "resource": self.resource,
            "state_dir": self.state_dir,
            "sdk_disabled": self.sdk_disabled,
            "warnings": self.warnings,
        }


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


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_ok(name: str, value: str) -> bool:
    """An HTTP field name (RFC 9110 token) and a value without control characters."""
    return bool(_HEADER_NAME.fullmatch(name)) and not any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)


def state_dir(env: Mapping[str, str]) -> Path:
    """Per-user state directory (spool, open spans, errors, the local span file)."""
    explicit = env.get("OBSKIT_TRACE_DIR")
    if explicit:
        return Path(explicit)
    xdg = env.get("XDG_STATE_HOME")
    home = env.get("HOME") or os.path.expanduser("~")
    base = Path(xdg) if xdg else Path(home) / ".local" / "state"
    candidate = base / "obskit" / "trace"
    try:
        candidate.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    # Read-only home (debug containers): a private directory under /tmp.
    return Path(env.get("TMPDIR") or "/tmp") / f"obskit-{os.getuid()}" / "trace"


def _env(env: Mapping[str, str], name: str) -> str:
    return (env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}") or "").strip()


def _endpoint(env: Mapping[str, str], protocol: str, flag: str | None) -> str:
    if flag:
        base, signal_specific = flag.strip(), False
    elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        base, signal_specific = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].strip(), True
    else:
        base, signal_specific = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip(), False
    if not base:
        return ""
    if "://" not in base:
        base = "http://" + base
    if protocol == "grpc" or signal_specific:
        return base
    # Generic endpoint: the signal path is appended (spec: ENDPOINT + "/v1/traces").
    return base.rstrip("/") + "/v1/traces"


def load(
    env: Mapping[str, str] | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: list[str] | None = None,
    timeout_s: float | None = None,
    service_name: str | None = None,
    sampler: str | None = None,
    sampler_arg: str | None = None,
    output: str | None = None,
    resource_attrs: list[str] | None = None,
) -> TraceConfig:
    env = os.environ if env is None else env
    warnings: list[str] = []
    proto = (protocol or _env(env, "PROTOCOL") or "http/protobuf").lower()
    if proto not in PROTOCOLS:
        if protocol:
            raise UsageError(f"unknown protocol {protocol!r}", f"use one of: {', '.join(PROTOCOLS)}")
        warnings.append(f"unknown OTEL_EXPORTER_OTLP_PROTOCOL {proto!r}; using http/protobuf")
        proto = "http/protobuf"
    hdrs = {}
    for k, v in parse_kv_list(_env(env, "HEADERS"), "header", warnings).items():
        if _header_ok(k, v):
            hdrs[k] = v
        else:  # it would fail every export, and every later flush of the spool
            warnings.append(f"ignored header {k[:20]!r} from OTEL_EXPORTER_OTLP_HEADERS: not a valid HTTP header")
    for h in headers or []:
        k, sep, v = h.partition("=")
        if not sep or not _header_ok(k.strip(), v.strip()):
            raise UsageError(f"bad --header {k[:30]!r}", "use --header name=value (a token name, a value on one line)")
        hdrs[k.strip()] = v.strip()
    if timeout_s is None:
        raw = _env(env, "TIMEOUT")
        timeout_s = DEFAULT_BUDGET_S
        if raw:
            try:
                timeout_s = float(raw) / 1000.0
            except ValueError:
                timeout_s = math.nan
            if not math.isfinite(timeout_s) or timeout_s <= 0:
                # A bad variable must not stop the command: the flag is the place for hard errors.
                warnings.append(f"OTEL_EXPORTER_OTLP_TIMEOUT {raw[:20]!r} is not milliseconds; using 1 s")
                timeout_s = DEFAULT_BUDGET_S
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise UsageError("the export timeout must be positive", "e.g. --export-timeout 1")
    samp, sw = sampling.parse(
        sampler or env.get("OTEL_TRACES_SAMPLER"), sampler_arg or env.get("OTEL_TRACES_SAMPLER_ARG")
    )
    if sampler and samp.name != sampler.strip().lower():
        raise UsageError(f"unknown sampler {sampler!r}", f"use one of: {', '.join(sampling.SAMPLERS)}")
    warnings.extend(sw)
    sdir = state_dir(env)
    res = detect_resource(env)
    res.update(parse_kv_list(env.get("OTEL_RESOURCE_ATTRIBUTES"), "resource attribute", warnings))
    for a in resource_attrs or []:
        k, sep, v = a.partition("=")
        if sep:
            res[k.strip()] = v.strip()
    name = service_name or env.get("OTEL_SERVICE_NAME", "").strip() or str(res.get("service.name") or "obskit")
    res["service.name"] = name
    insecure_raw = _env(env, "INSECURE").lower()
    return TraceConfig(
        endpoint=_endpoint(env, proto, endpoint),
        protocol=proto,
        headers=hdrs,
        timeout_s=timeout_s,
        compression=_env(env, "COMPRESSION").lower() if _env(env, "COMPRESSION").lower() == "gzip" else "",
        insecure=insecure_raw in ("true", "1"),
        service_name=name,
        resource=res,
        sampler=samp,
        output=output or str(sdir / "spans.otlp.jsonl"),
        state_dir=str(sdir),
        warnings=warnings,
        sdk_disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",
    )


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4096).strip()
    except OSError:
        return ""


def detect_resource(
    env: Mapping[str, str],
    cgroup_path: str = "/proc/self/cgroup",
    namespace_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
) -> dict[str, Any]:
    """Process, host, container and Kubernetes resource attributes (semantic conventions)."""
    from obskit import __version__
    from obskit.proc import container_ids

    res: dict[str, Any] = {
        "telemetry.sdk.name": "obskit",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
        "process.pid": os.getpid(),
        "process.parent_pid": os.getppid(),
        "process.executable.name": "obskit",
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
        "host.name": socket.gethostname(),
        "host.arch": platform.machine(),
        "os.type": sys.platform,
    }
    try:
        import pwd

        res["process.owner"] = pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        pass
    cgroup = _read(cgroup_path).splitlines()
    container, pod_uid = container_ids(cgroup)
    if container:
        res["container.id"] = container
    if pod_uid:
        res["k8s.pod.uid"] = pod_uid
    in_k8s = bool(env.get("KUBERNETES_SERVICE_HOST"))
    pod = env.get("POD_NAME") or env.get("K8S_POD_NAME") or (env.get("HOSTNAME") if in_k8s else None)
    if pod:
        res["k8s.pod.name"] = pod
    ns = env.get("POD_NAMESPACE") or env.get("K8S_NAMESPACE") or (_read(namespace_path) if in_k8s else "")
    if ns:
        res["k8s.namespace.name"] = ns
    node = env.get("NODE_NAME") or env.get("K8S_NODE_NAME")
    if node:
        res["k8s.node.name"] = node
    return res
