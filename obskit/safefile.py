"""Writing files as root in other people's directories, safely.

obskit often runs as root in a container or on a node where other users own directories
(``/tmp``, an app's working directory).  Every output it writes goes through here:

- **No write through a planted link.**  A symlink as the final component is followed only
  when this user made it, or when the directory's owner made it and that owner is root or
  this user (the kernel's ``protected_symlinks`` rule, applied everywhere, not only in sticky
  directories).  Otherwise the write is refused with one line.
- **No planted FIFO.**  A FIFO is written in place only on the same ownership rule
  (``protected_fifos``), opened non-blocking so a FIFO without a reader is an error, not a
  hang.  Character devices (``/dev/null``, ``/dev/stdout``) are written in place.
- **Atomic regular files.**  The data goes to a temporary file created with ``O_EXCL`` in the
  target's directory and is renamed over it: a reader or a Ctrl-C never sees half a file.
  A file that existed keeps its mode (a 0600 file stays 0600); a new one gets 0644 less umask
  (``private=True``: 0600).
- :func:`preflight` runs the same checks, and probes the directory, *before* a recording starts,
  so a bad ``-o`` fails in a second, not after the whole ``-d``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from obskit.errors import InputError, PermissionDenied


def _owner_ok(link_uid: int, dir_st: os.stat_result) -> bool:
    me = os.geteuid()
    return link_uid == me or (link_uid == dir_st.st_uid and dir_st.st_uid in (0, me))


def _check_node(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a link or FIFO that someone else planted in ``path``'s directory."""
    try:
        dst = os.stat(path.parent if str(path.parent) else ".")
    except OSError:
        return
    if not _owner_ok(st.st_uid, dst):
        raise PermissionDenied(
            f"refusing to write {path}: it is a {what} owned by uid {st.st_uid} in a directory owned by uid {dst.st_uid}",
            "someone else may have planted it; remove it or choose another -o path",
        )


def resolve(path: str | Path) -> tuple[Path, os.stat_result | None]:
    """The node a write to ``path`` would land on, after the ownership checks, and its stat
    (None when it does not exist yet).  Follows at most 16 links."""
    p = Path(path)
    for _ in range(16):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return p, None
        except NotADirectoryError:
            raise InputError(f"cannot write {path}: a parent is not a directory", "choose another -o path") from None
        except OSError as e:
            raise InputError(f"cannot write {path}: {e.strerror or e}", "choose another -o path") from None
        if stat.S_ISLNK(st.st_mode):
            _check_node(p, st, "symbolic link")
            target = os.readlink(p)
            p = Path(target) if os.path.isabs(target) else p.parent / target
            continue
        if stat.S_ISFIFO(st.st_mode):
            _check_node(p, st, "FIFO")
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"cannot write {path}: it is a directory", "give a file name")
        return p, st
    raise InputError(f"cannot write {path}: too many levels of symbolic links", "choose another -o path")


def _write_in_place(path: Path, st: os.stat_result, data: bytes, shown: str) -> int:
    flags = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    if stat.S_ISFIFO(st.st_mode):
        flags |= os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise InputError(f"cannot write {shown}: it is a FIFO with no reader", "start the reader first") from None
        raise InputError(f"cannot write {shown}: {e.strerror or e}", "choose another -o path") from None
    try:
        if flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as e:
        raise InputError(f"cannot write {shown}: {e.strerror or e}", "choose another -o path") from None
    finally:
        os.close(fd)
    return len(data)


def write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> int:
    """Write ``data`` to ``path`` under the rules above; returns the bytes written."""
    target, st = resolve(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return _write_in_place(target, st, data, str(path))
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except FileNotFoundError:
        raise InputError(f"cannot write {path}: directory {directory} does not exist",
                         "create it or choose another -o path") from None
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}", "choose a writable -o path") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if st is not None:
            mode = stat.S_IMODE(st.st_mode)
        else:
            mode = 0o600 if private else 0o644 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, IsADirectoryError):
            raise InputError(f"cannot write {path}: it is a directory", "give a file name") from None
        if isinstance(e, OSError):
            raise InputError(f"cannot write {path}: {e.strerror or e}", "choose another -o path") from None
        raise
    return len(data)


def preflight(path: str | Path) -> None:
    """Check, before any work, that :func:`write_bytes` to ``path`` can succeed: the ownership
    rules hold and the directory takes a new file.  Creates nothing that stays."""
    target, st = resolve(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not os.access(target, os.W_OK):
            raise InputError(f"cannot write {path}: permission denied", "choose another -o path")
        return
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=directory)
    except FileNotFoundError:
        raise InputError(f"cannot write {path}: directory {directory} does not exist",
                         "create it or choose another -o path") from None
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}", "choose a writable -o path") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


PIPE_LIMIT = 64 * 1024 * 1024


def read_input(path: str | Path, *, limit: int, timeout: float = 30.0) -> bytes:
    """The bytes of an input file given to obskit, bounded: at most ``limit`` bytes (more is an
    :class:`InputError`, never a MemoryError) and, from a pipe or device, at most
    ``PIPE_LIMIT`` bytes and ``timeout`` seconds.  Opened non-blocking: a FIFO nobody writes to
    reads as empty instead of hanging."""
    import select
    import time

    shown = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"no such file: {shown}", "check the path") from None
    except IsADirectoryError:
        raise InputError(f"{shown} is a directory", "give a file") from None
    except OSError as e:
        raise InputError(f"cannot read {shown}: {e.strerror or e}", "check the path and its permissions") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{shown} is a directory", "give a file")
        regular = stat.S_ISREG(st.st_mode)
        if not regular:
            limit = min(limit, PIPE_LIMIT)
        if regular and st.st_size > limit:
            raise InputError(f"{shown} is larger than {limit // (1024 * 1024)} MiB", "give a smaller file")
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + timeout
        while True:
            if not regular:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InputError(f"reading {shown} took longer than {timeout:g}s", "give a regular file")
                if not select.select([fd], [], [], left)[0]:
                    continue
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            except BlockingIOError:
                continue
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise InputError(f"{shown} is larger than {limit // (1024 * 1024)} MiB", "give a smaller file")
        return b"".join(chunks)
    except OSError as e:
        raise InputError(f"cannot read {shown}: {e.strerror or e}", "check the path and its permissions") from None
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
