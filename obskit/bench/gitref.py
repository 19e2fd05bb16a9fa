"""``--base-ref REF``: the base side runs in a git worktree of REF, each tree in its own venv.

The worktree and both virtual environments live in one ``/tmp/obskit-bench-*`` directory that
is removed (and the worktree unregistered) when the comparison ends, whatever happens.
``--setup CMD`` runs once in each tree with its venv first on PATH (e.g. ``python -m pip install -e .``).
The venvs see the packages of the interpreter obskit runs on (``--system-site-packages``), pip
among them, so a setup installs only what differs between the trees.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from obskit.errors import InputError, UsageError

GIT_TIMEOUT = 120.0
SETUP_TIMEOUT = 1800.0


@dataclass
class Tree:
    path: str
    env: dict[str, str]
    ref: str = ""
    commit: str = ""


def _git(args: list[str], cwd: str, timeout: float = GIT_TIMEOUT) -> str:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UsageError("--base-ref needs git, which is not installed", "install git or use --cwd-base") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"git {' '.join(args[:2])} took longer than {timeout:.0f}s", "check the repository") from None
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-1:] or [""]
        raise UsageError(f"git {' '.join(args[:3])}: {tail[0][:200]}",
                         "check the ref (in CI: actions/checkout with fetch-depth: 0)")
    return p.stdout.strip()


def repo_root(cwd: str) -> str:
    return _git(["rev-parse", "--show-toplevel"], cwd)


def resolve(ref: str, cwd: str) -> str:
    if ref.startswith("-"):
        raise UsageError(f"bad --base-ref {ref[:40]!r}", "give a branch, tag or commit")
    return _git(["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], cwd)


def _venv(path: str) -> dict[str, str]:
    try:
        # Without pip of its own (ensurepip takes most of a minute on a busy runner): the interpreter's
        # packages, pip among them, stay visible, and `python -m pip install ...` installs into the venv.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", path], check=True,
                       capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise InputError(f"cannot create a virtual environment in {path}", f"python -m venv failed: {e}") from None
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = path
    env["PATH"] = os.path.join(path, "bin") + os.pathsep + env.get("PATH", "")
    return env


def run_setup(tree: Tree, setup: str, side: str) -> None:
    argv = shlex.split(setup)
    try:
        p = subprocess.run(argv, cwd=tree.path, env=tree.env, capture_output=True, text=True, timeout=SETUP_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InputError(f"--setup: {argv[0]} not found in the {side} tree", "check the command") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"--setup ran longer than {SETUP_TIMEOUT:.0f}s in the {side} tree", "check it") from None
    if p.returncode != 0:
        from obskit.inert import inert

        tail = inert((p.stderr or p.stdout or "").strip()[-300:], multiline=True).splitlines()[-1:] or [""]
        raise InputError(f"--setup failed in the {side} tree (exit {p.returncode}): {tail[0]}", "run it by hand there")


@contextlib.contextmanager
def trees(base_ref: str, head_dir: str, setup: str | None) -> Iterator[tuple[Tree, Tree]]:
    """(base tree at REF, head tree = the current checkout), each with its own venv and setup done."""
    root = repo_root(head_dir)
    commit = resolve(base_ref, root)
    head_commit = _git(["rev-parse", "HEAD"], root)
    tmp = tempfile.mkdtemp(prefix="obskit-bench-")
    wt = os.path.join(tmp, "base")
    added = False
    try:
        _git(["worktree", "add", "--detach", "--force", wt, commit], root)
        added = True
        rel = os.path.relpath(os.path.realpath(head_dir), os.path.realpath(root))
        base_dir = os.path.normpath(os.path.join(wt, rel))
        base = Tree(base_dir, _venv(os.path.join(tmp, "venv-base")), base_ref, commit)
        head = Tree(os.path.realpath(head_dir), _venv(os.path.join(tmp, "venv-head")), "HEAD", head_commit)
        if setup:
            run_setup(base, setup, "base")
            run_setup(head, setup, "head")
        yield base, head
    finally:
        if added:
            with contextlib.suppress(Exception):
                _git(["worktree", "remove", "--force", wt], root)
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            _git(["worktree", "prune"], root)
