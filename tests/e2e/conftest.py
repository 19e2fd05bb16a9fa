"""A real container engine for end-to-end tests: the obskit debug image and a gunicorn target.

Needs dockerd running and the base image `obskit-base:bookworm` (both from `.ci/docker.sh`).
Images are built once per session and reused across sessions while their inputs are unchanged:
the debug image is tagged with a hash of the sources that go into the obskit wheel, the target
image with a hash of its app and Containerfile.  Dependency wheels are cached under
/var/cache/obskit/wheelhouse.  Without an engine every test here skips with one line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE = os.environ.get("OBSKIT_E2E_BASE", "obskit-base:bookworm")
CACHE = Path(os.environ.get("OBSKIT_IMAGE_CACHE", "/var/cache/obskit"))
IMAGE_PYTHON = "3.11"  # Debian bookworm's python3

TARGET_CONTAINERFILE = """\
ARG BASE
FROM ${BASE}
COPY *.whl /tmp/wheels/
COPY target_app.py /app/target_app.py
RUN python3 -m venv /app/venv && /app/venv/bin/pip install --no-index --find-links /tmp/wheels --no-cache-dir gunicorn \\
    && rm -rf /tmp/wheels
CMD ["/app/venv/bin/gunicorn", "-w", "4", "-b", "127.0.0.1:8000", "-c", "/app/target_app.py", "--chdir", "/app", \\
     "target_app:app"]
"""


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"docker info failed: {e}"
    if info.returncode != 0:
        return "the container engine is not running (.ci/docker.sh starts it)"
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True, timeout=30).returncode != 0:
        return f"base image {BASE} is missing (.ci/docker.sh makes it)"
    return None


def _tree_hash(paths: list[Path], *extra: str) -> str:
    h = hashlib.sha256()
    for e in extra:
        h.update(e.encode())
    for base in paths:
        files = sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if base.is_dir() \
            else [base]
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _pip(*args: str) -> None:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"pip {' '.join(args[:2])} failed: {proc.stderr[-2000:]}")


def _binary_args() -> list[str]:
    """pip options fetching wheels for the image's Python when this one is another version."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == IMAGE_PYTHON:
        return []
    return ["--python-version", IMAGE_PYTHON, "--only-binary=:all:", "--platform", "manylinux2014_x86_64"]


def _deps_wheelhouse() -> Path:
    """Wheels of obskit's dependencies and gunicorn, cached while pyproject.toml is unchanged."""
    key = _tree_hash([ROOT / "pyproject.toml"], IMAGE_PYTHON)
    where = CACHE / f"wheelhouse-{key}"
    if (where / ".complete").exists():
        return where
    tmp = CACHE / f"wheelhouse-{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _pip("download", "-q", "-d", str(tmp), *_binary_args(), str(ROOT), "gunicorn")
    for whl in tmp.glob("obskit-*"):
        whl.unlink()  # obskit itself is built per source hash
    for sdist in [p for p in tmp.iterdir() if not p.name.endswith(".whl")]:
        _pip("wheel", "-q", "--no-deps", "-w", str(tmp), str(sdist))
        sdist.unlink()
    (tmp / ".complete").touch()
    shutil.rmtree(where, ignore_errors=True)
    tmp.rename(where)
    return where


@pytest.fixture(scope="session")
def engine() -> None:
    problem = _engine_problem()
    if problem:
        pytest.skip(f"container engine unavailable: {problem}")


@pytest.fixture(scope="session")
def debug_image(engine: None) -> str:
    """The image the Containerfile builds, from a wheelhouse made here (no network in the build)."""
    key = _tree_hash([ROOT / "obskit", ROOT / "commands", ROOT / "pyproject.toml", ROOT / "Containerfile",
                      ROOT / ".dockerignore"], BASE)
    tag = f"obskit-debug:{key}"
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    deps = _deps_wheelhouse()
    house = ROOT / "build" / "wheelhouse"
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    _pip("wheel", "-q", "--no-deps", "-w", str(house), str(ROOT))
    for whl in deps.glob("*.whl"):
        if not whl.name.startswith("gunicorn-"):
            shutil.copy2(whl, house / whl.name)
    try:
        docker("build", "-q", "-f", str(ROOT / "Containerfile"), "--build-arg", f"BASE={BASE}", "-t", tag, str(ROOT))
    finally:
        shutil.rmtree(house, ignore_errors=True)
    _prune("obskit-debug", tag)
    return tag


def _prune(repository: str, keep: str) -> None:
    """Images this fixture built for sources that have changed since (one kept per repository)."""
    listed = docker("images", repository, "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    for old in listed:
        tag = old.split(":", 1)[-1]
        if old != keep and len(tag) == 16 and all(c in "0123456789abcdef" for c in tag):
            docker("image", "rm", old, check=False, timeout=120)


@pytest.fixture(scope="session")
def target_image(engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    key = _tree_hash([HERE / "target_app.py"], TARGET_CONTAINERFILE, BASE)
    tag = f"obskit-e2e-target:{key}"
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    ctx = tmp_path_factory.mktemp("target-image")
    shutil.copy2(HERE / "target_app.py", ctx / "target_app.py")
    for whl in _deps_wheelhouse().glob("gunicorn-*.whl"):
        shutil.copy2(whl, ctx / whl.name)
    (ctx / "Containerfile").write_text(TARGET_CONTAINERFILE)
    docker("build", "-q", "-f", str(ctx / "Containerfile"), "--build-arg", f"BASE={BASE}", "-t", tag, str(ctx))
    _prune("obskit-e2e-target", tag)
    return tag


@pytest.fixture
def containers() -> Iterator[Callable[[str], str]]:
    """Unique container names; every container named here is removed afterwards."""
    made: list[str] = []

    def name(role: str) -> str:
        made.append(f"obskit-e2e-{role}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    try:
        yield name
    finally:
        for n in made:
            docker("rm", "-f", "-v", n, check=False, timeout=60)
