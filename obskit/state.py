"""obskit's own per-user state directory, and results kept there when their output failed.

``state_dir()`` is ``$XDG_STATE_HOME/obskit`` (or ``~/.local/state/obskit``), created 0700; a
read-only home falls back to ``$TMPDIR/obskit-UID/state`` (``/tmp`` by default).  A directory
another user owns, or a symlink in its place, is never used: in shared ``/tmp`` someone else
could have made it first.

:func:`keep` is the last resort of a command whose work is done but whose output file could
not be written (full disk, directory removed, permission changed during a recording): the
bytes go to a new 0600 file in ``state_dir()/kept`` and the command names it in its one-line
:class:`~obskit.errors.ResultKeptElsewhere` error (exit 11), so nothing collected is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from obskit.errors import InputError, ObskitError, ResultKeptElsewhere

KEPT_MAX_FILES = 50


def private_dir(path: Path) -> Path:
    """``path`` created 0700 for this user; refuses a symlink or a directory of another user."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not a directory owned by this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The per-user state directory, created 0700 (see the module docstring)."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_STATE_HOME")
    home = env.get("HOME") or os.path.expanduser("~")
    candidates = [Path(xdg) / "obskit" if xdg else Path(home) / ".local" / "state" / "obskit",
                  Path(env.get("TMPDIR") or "/tmp") / f"obskit-{os.geteuid()}" / "state"]
    reasons: list[str] = []
    for candidate in candidates:
        d = _usable(candidate, reasons)
        if d is not None:
            return d
    raise InputError(f"no usable state directory ({'; '.join(reasons)})", "set XDG_STATE_HOME to a writable directory")


def _usable(candidate: Path, reasons: list[str]) -> Path | None:
    try:
        d = private_dir(candidate)
    except OSError as e:
        reasons.append(f"{candidate}: {e.strerror or e}")
        return None
    if os.access(d, os.W_OK):
        return d
    reasons.append(f"{d} is not writable")
    return None


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name)[:80] or "result"


def keep(data: bytes, name: str, *, env: Mapping[str, str] | None = None) -> Path:
    """Write ``data`` to a new 0600 file in ``state_dir()/kept`` whose name ends in ``name``;
    returns its path.  Never replaces a file; the oldest kept files beyond ``KEPT_MAX_FILES``
    are removed."""
    kept = private_dir(state_dir(env) / "kept")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    base = f"{stamp}-{os.getpid()}-{_safe_name(name)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for i in range(100):
        path = kept / (base if i == 0 else f"{stamp}-{os.getpid()}-{i}-{_safe_name(name)}")
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)
        _prune(kept)
        return path
    raise InputError(f"cannot keep the result in {kept}: too many files named {base}", "remove old ones")


def _prune(kept: Path) -> None:
    with contextlib.suppress(OSError):
        files = sorted((p for p in kept.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
        for p in files[:-KEPT_MAX_FILES]:
            with contextlib.suppress(OSError):
                p.unlink()


def write_or_keep(path: str | os.PathLike[str], data: bytes, *, private: bool = False,
                  env: Mapping[str, str] | None = None) -> int:
    """:func:`obskit.safefile.write_bytes`, and when that fails after the work is done, keep the
    bytes in the state directory and raise :class:`ResultKeptElsewhere` naming the file (exit 11).
    When even the state directory fails, the original error is raised."""
    from obskit.safefile import write_bytes

    try:
        return write_bytes(os.fspath(path), data, private=private)
    except ObskitError as first:
        try:
            where = keep(data, os.fspath(path), env=env)
        except (OSError, ObskitError):
            raise first from None
        raise ResultKeptElsewhere(
            f"cannot write {os.fspath(path)}: {first.message.removeprefix(f'cannot write {os.fspath(path)}: ')}; "
            f"the result is kept in {where}",
            "copy it from there",
        ) from None
