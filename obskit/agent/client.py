"""Talking to a target's agent: find its socket (also across containers) and send one request.

The process listening at the agent path is not trusted: any user who can create the path could
answer in the agent's place.  So the client checks that the listening end belongs to the
target's user (``SO_PEERCRED``; root is accepted too), reads at most ``MAX_REPLY`` bytes within
one overall deadline, and checks every field of every reply against the shape the agent sends
(:data:`REPLY_FIELDS`) before anything else sees it.  Whatever fails is one line: exit 6 for a
socket that is not the target's, exit 10 for a reply that is not an agent's.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from obskit.agent import server
from obskit.errors import ObskitError, PermissionDenied, TargetExited, TargetNotFound, Unavailable
from obskit.inert import inert
from obskit.proc import ProcFS

MAX_REPLY = 8 * 1024 * 1024  # the largest real reply (500 tracemalloc sites of 16 frames) is < 1 MiB
MAX_TEXT = 4096

NO_AGENT_HINT = (
    "start it with `obskit run -- CMD` (no code change), set OBSKIT_AGENT=1 with obskit importable, "
    "call obskit.agent.start() in the app, or load it into the running process with `obskit gc --pid {pid} --inject`"
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
    try:
        env = fs.environ(pid)
    except (TargetNotFound, PermissionDenied):
        pass
    uid = target_uid(pid, proc_root=proc_root)
    dirs: list[str] = []
    owner = uid if uid is not None else os.geteuid()
    # The target's own setting first, then ours (set for both by a wrapper), then the default.
    for d in (server.socket_dir(env, owner), server.socket_dir(os.environ, owner), server.socket_dir({}, owner)):
        if d not in dirs:
            dirs.append(d)
    out: list[str] = []
    for d in dirs:
        rel = os.path.join(d, server.socket_name(inner))
        out.append(str(fs.path(pid, "root")) + rel)  # the target's own mount namespace (containers)
        out.append(rel)
    return list(dict.fromkeys(out))


def target_uid(pid: int, *, proc_root: str = "/proc") -> int | None:
    """The target's effective uid as this namespace sees it (None when unreadable)."""
    try:
        uid_line = ProcFS(proc_root).status(pid).get("Uid", "")
        return int(uid_line.split()[1]) if uid_line else None
    except (TargetNotFound, PermissionDenied, ValueError, IndexError):
        return None


def find_socket(pid: int, *, proc_root: str = "/proc") -> str | None:
    """The first candidate path that is a socket; :class:`PermissionDenied` (exit 6) when one
    could not be looked at and none was found."""
    denied: str | None = None
    for p in candidate_paths(pid, proc_root=proc_root):
        kind = _socket_kind(p)
        if kind == "socket":
            return p
        if kind == "denied":
            denied = denied or p
    if denied is not None:
        raise PermissionDenied(
            f"cannot look at the agent socket of process {pid} ({denied}): permission denied",
            "run as the target's user or as root",
            pid=pid,
        )
    return None


def _socket_kind(path: str) -> str:
    try:
        return "socket" if Path(path).is_socket() else "other"
    except PermissionError:
        return "denied"
    except OSError:
        return "other"


class AgentClient:
    def __init__(self, pid: int, path: str, timeout: float = 10.0, *, expect_uid: int | None = None,
                 max_reply: int = MAX_REPLY) -> None:
        self.pid = pid
        self.path = path
        self.timeout = timeout
        self.expect_uid = expect_uid
        self.max_reply = max_reply

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
        except (ValueError, RecursionError):
            raise self._malformed("not JSON") from None
        if not isinstance(reply, dict):
            raise self._malformed("not a JSON object")
        if reply.get("ok") is not True:
            error = reply.get("error", "request failed")
            raise AgentRequestError(inert(error if isinstance(error, str) else "request failed")[:300], pid=self.pid)
        try:
            return validate_reply(cmd, reply)
        except ReplyError as e:
            raise self._malformed(str(e)) from None

    def _malformed(self, why: str) -> Unavailable:
        return Unavailable(f"the agent of process {self.pid} sent a malformed reply: {inert(why)[:200]}",
                           f"is {self.path} really the agent of process {self.pid}? restart the target's agent",
                           pid=self.pid)

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
            self._check_peer(s)
            s.sendall(payload)
            buf = bytearray()
            deadline = time.monotonic() + self.timeout  # one deadline for the whole reply, not per chunk
            while not buf.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                s.settimeout(left)
                chunk = s.recv(min(65536, self.max_reply + 1 - len(buf)))
                if not chunk:
                    break
                buf += chunk
                if len(buf) > self.max_reply:
                    raise Unavailable(
                        f"the agent of process {self.pid} sent a reply larger than {self.max_reply // (1024 * 1024)} MiB",
                        f"is {self.path} really the agent of process {self.pid}?",
                        pid=self.pid,
                    )
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

    def _check_peer(self, s: socket.socket) -> None:
        """The listening end must run as the target's user (or root): SO_PEERCRED."""
        opt = getattr(socket, "SO_PEERCRED", None)
        if opt is None or self.expect_uid is None:
            return
        size = struct.calcsize("3i")
        peer_pid, peer_uid, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, opt, size))
        if peer_uid not in (self.expect_uid, 0):
            raise PermissionDenied(
                f"the agent socket of process {self.pid} ({self.path}) is served by uid {peer_uid} (pid {peer_pid}), "
                f"not by the target's uid {self.expect_uid}",
                "another user may have planted it; remove it and restart the target's agent",
                pid=self.pid,
            )

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
        super().__init__(f"the agent of process {pid} refused: {inert(message)}", "", pid=pid)


def connect(pid: int, *, proc_root: str = "/proc", timeout: float = 10.0) -> AgentClient:
    """A client for ``pid``'s agent, or :class:`Unavailable` (exit 10) saying how to get one."""
    path = find_socket(pid, proc_root=proc_root)
    if path is None:
        raise Unavailable(f"process {pid} has no obskit agent", NO_AGENT_HINT.format(pid=pid), pid=pid)
    return AgentClient(pid, path, timeout, expect_uid=target_uid(pid, proc_root=proc_root))


def try_connect(pid: int, *, proc_root: str = "/proc") -> AgentClient | None:
    """Like :func:`connect`, but None when there is no agent (for optional Python-level numbers)."""
    try:
        client = connect(pid, proc_root=proc_root, timeout=5.0)
        client.request("hello")
        return client
    except ObskitError:
        return None


# -- reply validation ---------------------------------------------------------------------------


class ReplyError(ValueError):
    """A reply field that is not what the agent sends."""


Check = Callable[[Any, str], Any]


def _int(lo: int = 0, hi: int = 1 << 62) -> Check:
    def check(v: Any, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ReplyError(f"{where} is not an integer in [{lo}, {hi}]")
        return v

    return check


def _num(lo: float = 0.0, hi: float = 1e12) -> Check:
    def check(v: Any, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise ReplyError(f"{where} is not a number in [{lo:g}, {hi:g}]")
        return float(v)

    return check


def _str(limit: int = MAX_TEXT) -> Check:
    def check(v: Any, where: str) -> str:
        if not isinstance(v, str) or len(v) > limit:
            raise ReplyError(f"{where} is not a string of at most {limit} characters")
        return v

    return check


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ReplyError(f"{where} is not true or false")
    return v


def _optional(inner: Check) -> Check:
    def check(v: Any, where: str) -> Any:
        return None if v is None else inner(v, where)

    return check


def _list(inner: Check, lo: int = 0, hi: int = 1000) -> Check:
    def check(v: Any, where: str) -> list[Any]:
        if not isinstance(v, list) or not lo <= len(v) <= hi:
            raise ReplyError(f"{where} is not a list of {lo} to {hi} items")
        return [inner(x, f"{where}[{i}]") for i, x in enumerate(v)]

    return check


def _tuple(*items: Check) -> Check:
    def check(v: Any, where: str) -> list[Any]:
        if not isinstance(v, list) or len(v) != len(items):
            raise ReplyError(f"{where} is not a list of {len(items)} items")
        return [c(x, f"{where}[{i}]") for i, (c, x) in enumerate(zip(items, v))]

    return check


def _dict(fields: dict[str, Check], optional: frozenset[str] = frozenset()) -> Check:
    def check(v: Any, where: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise ReplyError(f"{where} is not an object")
        out: dict[str, Any] = {}
        for key, c in fields.items():
            if key not in v:
                if key in optional:
                    continue
                raise ReplyError(f"{where}.{key} is missing")
            out[key] = c(v[key], f"{where}.{key}")
        return out

    return check


def _any_small(v: Any, where: str) -> Any:
    """A value obskit does not read (kept for --json): bounded size, any JSON shape."""
    if len(json.dumps(v)) > 64 * 1024:
        raise ReplyError(f"{where} is too large")
    return v


_BIG = 1 << 62
_GENS = _list(_int(0, _BIG), 3, 4)
_SITE = _dict({
    "file": _str(), "line": _int(0, 1 << 31), "size": _int(0, _BIG), "count": _int(0, _BIG),
    "size_diff": _optional(_int(-_BIG, _BIG)), "count_diff": _optional(_int(-_BIG, _BIG)),
    "stack": _list(_tuple(_str(), _int(0, 1 << 31)), 0, 64),
}, optional=frozenset({"size_diff", "count_diff", "stack"}))
_CALLBACKS = _dict({"gc": _int(0, 1 << 20), "atexit": _optional(_int(0, 1 << 20)), "obskit_atexit": _int(0, 1 << 20),
                    "obskit_fork": _int(0, 1 << 20)}, optional=frozenset({"obskit_atexit", "obskit_fork"}))
_TRACED = {"traced_bytes": _int(0, _BIG), "peak_bytes": _int(0, _BIG), "overhead_bytes": _int(0, _BIG),
           "frames": _int(1, 64), "sites": _list(_SITE, 0, server.MAX_LIMIT), "cost_s": _num()}

# Every field of every reply obskit reads, with its shape (the agent's side: obskit/agent/server.py).
REPLY_FIELDS: dict[str, dict[str, Check]] = {
    "hello": {"agent_version": _int(0, 1000), "pid": _int(0, 1 << 31), "python": _str(64), "implementation": _str(64),
              "argv": _list(_str(), 0, 20), "started_at": _num(0, 1e11), "uptime_s": _num(), "ring_size": _int(0, 1 << 31),
              "callbacks": _CALLBACKS},
    "detach": {"detached": _bool, "tracemalloc_stopped": _bool, "callbacks": _CALLBACKS},
    "gc": {"uptime_s": _num(), "seq": _int(0, _BIG), "collections": _GENS, "pause_s": _list(_num(), 3, 4),
           "max_pause_s": _list(_num(), 3, 4), "collected": _GENS, "uncollectable": _GENS,
           "gc": _dict({"enabled": _bool, "count": _list(_int(0, _BIG), 3, 4), "threshold": _list(_int(0, _BIG), 3, 4),
                        "stats": _any_small, "garbage": _int(0, _BIG), "frozen": _optional(_int(0, _BIG))},
                       optional=frozenset({"stats", "garbage", "frozen"}))},
    "events": {"seq": _int(0, _BIG), "uptime_s": _num(), "dropped": _int(0, _BIG),
               "events": _list(_tuple(_int(0, _BIG), _num(), _int(0, 3), _num(), _int(0, _BIG), _int(0, _BIG)),
                               0, server.MAX_EVENTS_PER_REPLY)},
    "types": {"tracked": _int(0, _BIG), "types": _list(_tuple(_str(512), _int(0, _BIG)), 0, server.MAX_LIMIT),
              "cost_s": _num()},
    "tm.start": {"tracing": _bool, "already": _bool, "frames": _int(1, 64)},
    "tm.stop": {"tracing": _bool, "was_tracing": _bool},
    "tm.snapshot": {**_TRACED, "total_sites": _int(0, _BIG)},
    "tm.diff": dict(_TRACED),
}
_OPTIONAL_FIELDS = {"hello": frozenset({"argv", "started_at", "ring_size", "implementation", "callbacks"}),
                    "detach": frozenset({"callbacks"})}


def validate_reply(cmd: str, reply: dict[str, Any]) -> dict[str, Any]:
    """``reply`` reduced to the fields obskit reads, each checked; :class:`ReplyError` names the first bad one."""
    fields = REPLY_FIELDS.get(cmd)
    if fields is None:
        return {"ok": True}
    out = _dict(fields, _OPTIONAL_FIELDS.get(cmd, frozenset()))(reply, cmd)
    out["ok"] = True
    return out
