"""Talking to a target's agent: find its socket (also across containers) and send one request."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from obskit.agent import server
from obskit.errors import ObskitError, PermissionDenied, TargetExited, TargetNotFound, Unavailable
from obskit.proc import ProcFS

NO_AGENT_HINT = (
    "start it with `obskit run -- CMD` (no code change), set OBSKIT_AGENT=1 with obskit importable, "
    "call obskit.agent.start() in the app, or on Python 3.14+ use `obskit gc --pid {pid} --inject`"
)


def _ns_pid(fs: ProcFS, pid: int) -> int:
    """The target's PID inside its own namespace (its socket is named by that)."""
    try:
        nspid = fs.status(pid).get("NSpid", "")
    except (TargetNotFound, PermissionDenied):
        return pid
    parts = nspid.split()
    return int(parts[-1]) if parts else pid


def candidate_paths(pid: int, *, proc_root: str = "/proc") -> list[str]:
    fs = ProcFS(proc_root)
    if not fs.exists(pid):
        raise TargetNotFound(f"process {pid} not found", "check the PID with `obskit ps`", pid=pid)
    if fs.is_zombie(pid):
        raise fs.zombie_error(pid)
    inner = _ns_pid(fs, pid)
    env: dict[str, str] = {}
    uid: int | None = None
    try:
        env = fs.environ(pid)
    except (TargetNotFound, PermissionDenied):
        pass
    try:
        uid_line = fs.status(pid).get("Uid", "")
        uid = int(uid_line.split()[1]) if uid_line else None
    except (TargetNotFound, PermissionDenied, ValueError, IndexError):
        pass
    dirs: list[str] = []
    target_uid = uid if uid is not None else os.geteuid()
    # The target's own setting first, then ours (set for both by a wrapper), then the default.
    for d in (server.socket_dir(env, target_uid), server.socket_dir(os.environ, target_uid), server.socket_dir({}, target_uid)):
        if d not in dirs:
            dirs.append(d)
    out: list[str] = []
    for d in dirs:
        rel = os.path.join(d, server.socket_name(inner))
        out.append(str(fs.path(pid, "root")) + rel)  # the target's own mount namespace (containers)
        out.append(rel)
    return list(dict.fromkeys(out))


def find_socket(pid: int, *, proc_root: str = "/proc") -> str | None:
    # is_socket() answers False (never raises) for paths we may not see.
    return next((p for p in candidate_paths(pid, proc_root=proc_root) if Path(p).is_socket()), None)


class AgentClient:
    def __init__(self, pid: int, path: str, timeout: float = 10.0) -> None:
        self.pid = pid
        self.path = path
        self.timeout = timeout

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        payload = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
        buf = b""
        for _ in range(20):
            buf = self._exchange(payload)
            if buf:
                break
            time.sleep(0.1)  # every client slot was busy and the agent closed us: try again
        if not buf:
            raise Unavailable(f"the agent of process {self.pid} closed the connection", "retry", pid=self.pid)
        try:
            reply = json.loads(bytes(buf).decode("utf-8", "replace"))
        except ValueError:
            raise Unavailable(f"the agent of process {self.pid} sent a malformed reply", "retry", pid=self.pid) from None
        if not isinstance(reply, dict):
            raise Unavailable(f"the agent of process {self.pid} sent a malformed reply", "retry", pid=self.pid)
        if not reply.get("ok"):
            raise AgentRequestError(str(reply.get("error", "request failed")), pid=self.pid)
        return reply

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` for a measurement window; Ctrl-C or the process exiting end it early."""
        fs = ProcFS()
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                if not fs.exists(self.pid) or fs.is_zombie(self.pid):
                    return
                time.sleep(min(0.25, left))
        except KeyboardInterrupt:
            pass  # the caller reports the part of the window that passed

    def _exchange(self, payload: bytes) -> bytes:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            self._connect(s)
            s.sendall(payload)
            buf = bytearray()
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except (ConnectionRefusedError, FileNotFoundError):
            if _exits_soon(self.pid):
                raise TargetExited(f"process {self.pid} exited", "find it again with `obskit ps`", pid=self.pid) from None
            # Nobody listens: a socket left by an earlier process that had this PID.
            raise Unavailable(
                f"process {self.pid} has no obskit agent (stale socket {self.path})",
                NO_AGENT_HINT.format(pid=self.pid),
                pid=self.pid,
            ) from None
        except PermissionError:
            raise PermissionDenied(
                f"the agent socket of process {self.pid} is not ours ({self.path})",
                "run as the target's user or as root",
                pid=self.pid,
            ) from None
        except socket.timeout:
            raise Unavailable(
                f"the agent of process {self.pid} did not answer within {self.timeout:.0f}s",
                "the process may hold the GIL in C code; retry",
                pid=self.pid,
            ) from None
        except (ConnectionResetError, BrokenPipeError):
            return b""
        except OSError as e:
            raise Unavailable(f"cannot talk to the agent of process {self.pid}: {e}", "retry", pid=self.pid) from None
        finally:
            s.close()
        return bytes(buf)

    def _connect(self, s: socket.socket) -> None:
        # A full listen backlog answers EAGAIN at once (the agent serves a few clients at a time).
        deadline = time.monotonic() + self.timeout
        while not self._try_connect(s):
            if time.monotonic() > deadline:
                raise socket.timeout
            time.sleep(0.05)

    def _try_connect(self, s: socket.socket) -> bool:
        try:
            s.connect(self.path)
        except BlockingIOError:
            return False
        return True


def _exits_soon(pid: int, wait: float = 1.0) -> bool:
    """True when ``pid`` is gone or a zombie within ``wait`` seconds: an exiting agent refuses first."""
    fs = ProcFS()
    deadline = time.monotonic() + wait
    while True:
        if not fs.exists(pid) or fs.is_zombie(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class AgentRequestError(Unavailable):
    """The agent answered, but refused the request."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(f"the agent of process {pid} refused: {message}", "", pid=pid)


def connect(pid: int, *, proc_root: str = "/proc", timeout: float = 10.0) -> AgentClient:
    """A client for ``pid``'s agent, or :class:`Unavailable` (exit 10) saying how to get one."""
    path = find_socket(pid, proc_root=proc_root)
    if path is None:
        raise Unavailable(f"process {pid} has no obskit agent", NO_AGENT_HINT.format(pid=pid), pid=pid)
    return AgentClient(pid, path, timeout)


def try_connect(pid: int, *, proc_root: str = "/proc") -> AgentClient | None:
    """Like :func:`connect`, but None when there is no agent (for optional Python-level numbers)."""
    try:
        client = connect(pid, proc_root=proc_root, timeout=5.0)
        client.request("hello")
        return client
    except ObskitError:
        return None
