"""The machine a comparison ran on (pyperf's metadata, the parts that explain noise)."""

from __future__ import annotations

import os
import platform
import sys

from obskit.bench.model import Machine


def _read(path: str, limit: int = 1 << 16) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def collect(proc_root: str = "/proc", sys_root: str = "/sys") -> Machine:
    cpu_model = ""
    for line in _read(os.path.join(proc_root, "cpuinfo"), 1 << 20).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Processor") and value.strip():
            cpu_model = value.strip()
            break
    load: list[float] = []
    try:
        load = [float(x) for x in _read(os.path.join(proc_root, "loadavg")).split()[:3]]
    except ValueError:
        load = []
    governor = _read(os.path.join(sys_root, "devices/system/cpu/cpu0/cpufreq/scaling_governor"), 256).strip()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    impl = platform.python_implementation()
    return Machine(cpu_model=cpu_model[:200], cpus=cpus, load=load, governor=governor[:64],
                   python=f"{impl} {platform.python_version()}", platform=sys.platform,
                   kernel=platform.release()[:100])
