"""`obskit snapshot` from a debug container sharing a gunicorn container's PID namespace: the
`kubectl debug --target` shape, on a real engine (no mocks)."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import docker

# Building the images counts towards the first test (once per session, reused while the sources are unchanged).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
MIB = 1 << 20


def _start_target(image: str, name: str, user: str | None = None) -> None:
    args = ["run", "-d", "--name", name, "--cpus", "0.5", "--memory", "300m", "--network", "none"]
    if user:
        args += ["--user", user]
    docker(*args, image)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        top = docker("top", name, check=False).stdout
        if top.count("gunicorn") >= 5:  # master and 4 workers
            return
        time.sleep(0.5)
    logs = docker("logs", name, check=False)
    raise AssertionError(f"gunicorn did not start its 4 workers: {logs.stdout[-800:]} {logs.stderr[-800:]}")


def _snapshot(image: str, target: str, name: str, out: Path, *, ptrace: bool) -> tuple[int, dict[str, Any], dict[str, bytes]]:
    args = ["run", "--name", name, f"--pid=container:{target}", "--network", "none"]
    if ptrace:
        args += ["--cap-add", "SYS_PTRACE"]
    run = docker(*args, image, "obskit", "snapshot", "-d", "5", "-o", "/snapshots/incident.tar.gz",
                 check=False, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    docker("cp", f"{name}:/snapshots/incident.tar.gz", str(out))
    files: dict[str, bytes] = {}
    with tarfile.open(out, "r:gz") as tar:
        for m in tar:
            if m.isfile():
                fh = tar.extractfile(m)
                assert fh is not None
                files[m.name.split("/", 1)[1]] = fh.read()
    return run.returncode, json.loads(files["index.json"]), files


def _section(index: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in index["sections"] if s["name"] == name)


def test_snapshot_from_a_debug_container(debug_image: str, target_image: str,
                                         containers: Callable[[str], str], tmp_path: Path) -> None:
    target = containers("target")
    _start_target(target_image, target)
    _, index, files = _snapshot(debug_image, target, containers("debug"), tmp_path / "a.tar.gz", ptrace=True)

    # The hot function, from the profile of every worker.
    assert index["verdicts"][0]["kind"] == "hot"
    assert "burn_cpu_hot" in index["verdicts"][0]["title"], index["verdicts"][:3]
    report = json.loads(files["profile-report.json"])
    assert report["top_functions"][0]["name"] == "burn_cpu_hot"
    assert len({p["pid"] for p in report["processes"]}) >= 4

    # The worker table: the gunicorn master (PID 1 of the target) and its 4 workers.
    ps = json.loads(files["ps.json"])
    roles = [p["role"] for p in ps["processes"]]
    assert roles.count("gunicorn-master") == 1 and roles.count("gunicorn-worker") == 4, roles
    assert all("obskit" not in p["command"] for p in ps["processes"])
    assert index["targets"][0]["pid"] == 1 and len(index["targets"][0]["workers"]) == 4

    # The TARGET container's limits (the debug container itself has none), and the finding.
    quota = json.loads(files["quota.json"])
    assert quota["cpu"]["limit"] == pytest.approx(0.5)
    assert quota["memory"]["limit"] == 300 * MIB
    assert quota["view"] == "/proc/1/root"
    ids = [f["id"] for f in quota["findings"]]
    assert any(i.startswith("workers-gunicorn") for i in ids), ids
    titles = " | ".join(v["title"] for v in index["verdicts"])
    assert "CPU limit 0.5 cores, memory limit 300 MiB" in titles
    assert "gunicorn runs 4 workers" in titles

    # Stacks: two dumps, the burners stuck running in the same function.
    stacks = json.loads(files["stacks.json"])
    assert stacks["watch"]["dumps"] == 2
    assert any(v["kind"] == "stuck" and "burn_cpu_hot" in v["title"] for v in index["verdicts"])
    assert all(_section(index, s)["status"] == "ok" for s in ("doctor", "ps", "env", "mem", "quota", "stacks",
                                                                "profile", "mem-trend"))
    assert _section(index, "gc")["status"] == "skipped" and "agent" in _section(index, "gc")["reason"]
    assert index["accounting"]["ptrace"] is True
    assert b"Content-Security-Policy" in files["index.html"] and b"burn_cpu_hot" in files["index.html"]


def test_snapshot_without_ptrace_is_degraded_and_says_what_to_add(
        debug_image: str, target_image: str, containers: Callable[[str], str], tmp_path: Path) -> None:
    # A non-root service (runAsNonRoot) and a debug container without SYS_PTRACE (no --profile=general).
    target = containers("target")
    _start_target(target_image, target, user="1000:1000")
    rc, index, files = _snapshot(debug_image, target, containers("debug"), tmp_path / "b.tar.gz", ptrace=False)
    assert rc == 0  # a degraded archive is a result, not a failure
    for name in ("stacks", "profile"):
        sec = _section(index, name)
        assert sec["status"] == "skipped", sec
        assert "CAP_SYS_PTRACE" in sec["reason"] and "--profile=general" in sec["fix"]
    assert index["accounting"]["ptrace"] is False
    assert any("--profile=general" in h for h in index["hints"])
    thin = index["accounting"]["thin"]
    assert thin and "uid 1000" in thin and all(f"/proc/1/{n}" in thin for n in ("root", "environ", "smaps"))
    assert _section(index, "mem")["status"] == "failed" and "--profile=general" in _section(index, "mem")["fix"]
    assert _section(index, "quota")["status"] == "failed" and "--profile=general" in _section(index, "quota")["fix"]
    # What needs no ptrace is still there: the doctor, the process table.
    assert _section(index, "ps")["status"] == "ok" and _section(index, "doctor")["status"] == "ok"
    roles = [p["role"] for p in json.loads(files["ps.json"])["processes"]]
    assert roles.count("gunicorn-worker") == 4
    assert "profile.json" not in files
    assert b"thin archive" in files["index.html"]
