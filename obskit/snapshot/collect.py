"""The snapshot's own small collectors: redacted command lines and environments, bounded log tails."""

from __future__ import annotations

import os
import re
import stat

from obskit.errors import ObskitError
from obskit.proc import ProcFS
from obskit.redact import REDACTED, is_secret_name, redact_argv, redact_env, redact_text

from .model import EnvProcess, EnvReport

TAIL_BYTES = 256 << 10  # per file
TAIL_LINES = 500
TOTAL_BYTES = 4 << 20  # all log tails together
MAX_LINE = 8192
# key=value, key: value, "key": "value" in a log line (logfmt, JSON, Python logging text)
_PAIR = re.compile(r"""(?P<key>["']?[A-Za-z_][\w.-]*["']?)(?P<sep>\s*[=:]\s*)(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s"',;&}]+)""")


def redact_log_line(line: str) -> str:
    """A log line without URL passwords and auth headers (:func:`obskit.redact.redact_text`) and
    without the values of secret-looking fields (``token=…``, ``"password": "…"``)."""
    def pair(m: re.Match[str]) -> str:
        if not is_secret_name(m.group("key").strip("\"'")):
            return m.group(0)
        v = m.group("value")
        q = v[0] if v[0] in "\"'" else ""
        return f"{m.group('key')}{m.group('sep')}{q}{REDACTED}{q}"

    return _PAIR.sub(pair, redact_text(line))


def environment(fs: ProcFS, pids: list[int], *, environ_of: set[int] | None = None) -> EnvReport:
    """argv of every pid and the environment of those in ``environ_of`` (default: all), redacted."""
    out: list[EnvProcess] = []
    for pid in pids:
        try:
            argv = redact_argv(fs.cmdline(pid))
        except ObskitError:
            continue  # exited
        env: dict[str, str] | None = None
        why = ""
        if environ_of is None or pid in environ_of:
            try:
                env = redact_env(fs.environ(pid))
            except ObskitError as e:
                why = e.message
            except OSError as e:
                why = f"/proc/{pid}/environ: {e.strerror or e}"
        out.append(EnvProcess(pid, argv, env, why))
    return EnvReport(out)


def tail(path: str, *, max_bytes: int = TAIL_BYTES, max_lines: int = TAIL_LINES) -> tuple[bytes, int, int, bool]:
    """The last lines of a regular file, redacted: (text, size, bytes read, truncated).

    Opens without following a FIFO or device (O_NONBLOCK, then fstat): a pipe, socket or tty
    would steal lines from `kubectl logs`, so anything but a regular file is refused.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        size = st.st_size
        start = max(0, size - max_bytes)
        os.lseek(fd, start, os.SEEK_SET)
        chunks = []
        left = min(size, max_bytes)
        while left > 0:
            b = os.read(fd, min(left, 1 << 16))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    lines = data.split(b"\n")
    if start > 0 and lines:
        lines = lines[1:]  # the first one is cut
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    truncated = start > 0 or len(lines) > max_lines
    lines = lines[-max_lines:]
    text = "\n".join(redact_log_line(line[:MAX_LINE].decode("utf-8", "replace")) for line in lines)
    return (text + "\n" if text else "").encode("utf-8"), size, len(data), truncated


def file_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None
