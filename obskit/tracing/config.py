"""Trace export configuration: the shared OTLP exporter settings (:mod:`obskit.otlp.config`,
signal ``traces``) plus service, resource, sampler and the local span file.

``OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`` follows the one timeout rule of
:mod:`obskit.otlp.config` (milliseconds; under 100 read as seconds, warned).  With no
endpoint, spans go to a local OTLP-JSON file instead of the network.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from obskit.errors import UsageError
from obskit.otlp import config as otlp
from obskit.otlp.config import PROTOCOLS, OtlpConfig, parse_kv_list
from obskit.tracing import sampling

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: importing typing costs trace exec a few ms)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_BUDGET_S", "PROTOCOLS", "TraceConfig", "detect_resource", "load", "parse_kv_list", "state_dir"]

DEFAULT_BUDGET_S = 1.0


class TraceConfig(OtlpConfig):
    """Where spans go, and what they carry (service, resource, sampler); its JSON form is
    :meth:`summary` (in `trace status`)."""

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_BUDGET_S,
        service_name: str = "obskit",
        resource: dict[str, Any] | None = None,
        sampler: sampling.Sampler | None = None,
        output: str = "",  # the local OTLP-JSON file when there is no endpoint
        state_dir: str = "",
        sdk_disabled: bool = False,
        **exporter: Any,
    ) -> None:
        super().__init__(timeout_s=timeout_s, **exporter)
        self.service_name = service_name
        self.resource: dict[str, Any] = {} if resource is None else resource
        self.sampler = sampling.Sampler() if sampler is None else sampler
        self.output = output
        self.state_dir = state_dir
        self.sdk_disabled = sdk_disabled

    @property
    def destination(self) -> str:
        """Where the spans go, safe to print and store (credentials redacted)."""
        return self.shown_endpoint or f"file:{self.output}"

    def summary(self) -> dict[str, Any]:
        """The configuration in effect, safe to print (header values and URL passwords redacted)."""
        return {
            "endpoint": self.shown_endpoint or None,
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
    base = otlp.load(
        env,
        "traces",
        default_timeout_s=DEFAULT_BUDGET_S,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout_s=timeout_s,
    )
    warnings = base.warnings
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
    return TraceConfig(
        signal="traces",
        endpoint=base.endpoint,
        protocol=base.protocol,
        headers=base.headers,
        timeout_s=base.timeout_s,
        compression=base.compression,
        insecure=base.insecure,
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


_HEXDIGITS = frozenset("0123456789abcdef")


def _container_ids(cgroup: list[str]) -> tuple[str | None, str | None]:
    """obskit.proc.container_ids, imported only when a line can name a container or pod
    (a 64-hex id, or "pod"): outside containers, ``trace exec`` does not pay for it."""
    text = "\n".join(cgroup)
    tokens = text.replace("-", "/").replace(".", "/").replace(":", "/").replace("_", "/").split("/")
    if "pod" not in text and not any(len(t) == 64 and set(t) <= _HEXDIGITS for t in tokens):
        return None, None
    from obskit.proc import container_ids

    return container_ids(cgroup)


def detect_resource(
    env: Mapping[str, str],
    cgroup_path: str = "/proc/self/cgroup",
    namespace_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
) -> dict[str, Any]:
    """Process, host, container and Kubernetes resource attributes (semantic conventions)."""
    from obskit import __version__

    res: dict[str, Any] = {
        "telemetry.sdk.name": "obskit",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
        "process.pid": os.getpid(),
        "process.parent_pid": os.getppid(),
        "process.executable.name": "obskit",
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": "{}.{}.{}".format(*sys.version_info[:3]),
        "host.name": os.uname().nodename,
        "host.arch": os.uname().machine,
        "os.type": sys.platform,
    }
    try:
        import pwd

        res["process.owner"] = pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        pass
    cgroup = _read(cgroup_path).splitlines()
    container, pod_uid = _container_ids(cgroup)
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
