"""The in-process agent: GC pause recorder and a line-JSON server on a 0600 unix socket.

Self-contained on purpose (standard library only, no obskit imports): ``obskit run``
loads it by file path into interpreters where obskit is not installed, and the 3.14
``sys.remote_exec`` path ships this file's source into the target.  Everything here
runs inside someone else's service, so every entry point swallows its own errors:
the host app must never see an exception, a blocked thread or a slow collection
because of it.

Protocol: the client sends one JSON object on one line (at most ``MAX_REQUEST`` bytes)
and gets one JSON object on one line back, then the connection closes.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

AGENT_VERSION = 1
MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 4
CLIENT_TIMEOUT = 2.0
RING_SIZE = 8192
MAX_EVENTS_PER_REPLY = 2000
MAX_LIMIT = 500


def socket_dir(env: Any = None, uid: int | None = None) -> str:
    """The per-user directory holding agent sockets (same rule in agent and client)."""
    env = os.environ if env is None else env
    uid = os.geteuid() if uid is None else uid
    if env.get("OBSKIT_AGENT_DIR"):
        return str(env["OBSKIT_AGENT_DIR"])
    return f"/tmp/obskit-{uid}"


def socket_name(pid: int) -> str:
    return f"{pid}.sock"


def _secure_dir(path: str) -> str | None:
    """Create or check the socket directory; None when it is safe, else the reason."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        return f"cannot create {path}: {e}"
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"cannot stat {path}: {e}"
    import stat as _stat

    if not _stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not {os.geteuid()}"
    if st.st_mode & 0o077:
        return f"{path} is accessible to other users (mode {st.st_mode & 0o777:o})"
    return None


class GCRecorder:
    """Records every collection via ``gc.callbacks`` into a bounded ring buffer.

    Collections, collected and uncollectable per generation come from ``gc.get_stats()``
    (minus a baseline): CPython counts them anyway, so the callback only times pauses.
    """

    def __init__(self, ring_size: int = RING_SIZE) -> None:
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        # Raw events: (seq, end time since t0, generation, pause, collected, uncollectable).
        self.events: deque[tuple[int, float, int, float, int, int]] = deque(maxlen=ring_size)
        # Per generation, never lost to the ring overflowing.
        self.pause = [0.0, 0.0, 0.0]
        self.max_pause = [0.0, 0.0, 0.0]
        self._baseline = gc.get_stats()
        self._started = [0.0]  # start of the running collection
        self._seq = [0]  # last sequence number
        self.callback = self._make_callback()

    @property
    def seq(self) -> int:
        return self._seq[0]

    def stats_since_start(self, key: str) -> list[int]:
        now = gc.get_stats()
        return [int(n[key]) - int(b[key]) for n, b in zip(now, self._baseline)][:3]

    def _make_callback(self) -> Callable[[str, dict[str, int]], None]:
        # Runs inside every collection (thousands a second): locals only, the least work possible.
        clock = time.perf_counter
        t0 = self.t0
        append = self.events.append
        started, last = self._started, self._seq
        pause, max_pause = self.pause, self.max_pause

        def obskit_gc_callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = clock()
                return
            try:
                now = clock()
                dur = now - started[0]
                gen = info["generation"]
                pause[gen] += dur
                if dur > max_pause[gen]:
                    max_pause[gen] = dur
                seq = last[0] = last[0] + 1
                append((seq, now - t0, gen, dur, info["collected"], info["uncollectable"]))
            except Exception:
                pass

        return obskit_gc_callback

    def install(self) -> None:
        if self.callback not in gc.callbacks:
            self._baseline = gc.get_stats()
            gc.callbacks.append(self.callback)

    def uninstall(self) -> None:
        try:
            gc.callbacks.remove(self.callback)
        except ValueError:
            pass


def _gc_state() -> dict[str, Any]:
    freeze = getattr(gc, "get_freeze_count", None)
    return {
        "enabled": gc.isenabled(),
        "count": list(gc.get_count()),
        "threshold": list(gc.get_threshold()),
        "stats": gc.get_stats(),
        "garbage": len(gc.garbage),
        "frozen": freeze() if freeze is not None else None,
    }


def _int_arg(req: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = req.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    return max(lo, min(hi, value))


class Agent:
    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or socket_dir()
        self.pid = os.getpid()
        self.path = os.path.join(self.directory, socket_name(self.pid))
        self.recorder = GCRecorder()
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self.baseline: Any = None
        self.tracemalloc_started_by_agent = False
        self.error: str | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> bool:
        self.recorder.install()
        problem = _secure_dir(self.directory)
        if problem:
            self.error = problem
            return False
        try:
            if os.path.exists(self.path):
                os.unlink(self.path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(self.path)
            os.chmod(self.path, 0o600)  # the 0700 directory already shuts others out in between
            s.listen(8)
            s.settimeout(0.5)
        except OSError as e:
            self.error = f"cannot listen on {self.path}: {e}"
            return False
        self.sock = s
        self.thread = threading.Thread(target=self._serve, name="obskit-agent", daemon=True)
        self.thread.start()
        return True

    def stop(self) -> None:
        self.stopping = True
        self.recorder.uninstall()
        s, self.sock = self.sock, None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
        if self.pid == os.getpid():
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def after_fork(self) -> None:
        """In a forked child (gunicorn workers): own record, own socket named by the new pid."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.pid = os.getpid()
        self.path = os.path.join(self.directory, socket_name(self.pid))
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self.recorder.uninstall()
        self.recorder = GCRecorder()
        self.baseline = None
        self.stopping = False
        self.start()

    # -- serving -------------------------------------------------------------------
    def _sweep_stale(self) -> None:
        """Remove sockets of agents whose process is gone (SIGTERM/SIGKILL skip atexit)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            stem = name[:-5] if name.endswith(".sock") else ""
            if not stem.isdigit() or int(stem) == self.pid:
                continue
            try:
                os.kill(int(stem), 0)
            except ProcessLookupError:
                try:
                    os.unlink(os.path.join(self.directory, name))
                except OSError:
                    pass
            except OSError:
                pass

    def _serve(self) -> None:
        self._sweep_stale()
        while not self.stopping:
            s = self.sock
            if s is None:
                return
            try:
                conn, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.1)
                continue
            try:
                if not self._peer_allowed(conn) or not self.clients.acquire(blocking=False):
                    conn.close()
                    continue
                threading.Thread(target=self._client, args=(conn,), name="obskit-agent-client", daemon=True).start()
            except Exception:
                try:
                    conn.close()
                except OSError:
                    pass

    def _peer_allowed(self, conn: socket.socket) -> bool:
        opt = getattr(socket, "SO_PEERCRED", None)
        if opt is None:
            return True
        try:
            import struct

            _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
        except OSError:
            return False
        return uid in (0, os.geteuid())

    def _client(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(CLIENT_TIMEOUT)
            data = b""
            deadline = time.monotonic() + CLIENT_TIMEOUT
            while b"\n" not in data:
                if len(data) > MAX_REQUEST or time.monotonic() > deadline:
                    self._send(conn, {"ok": False, "error": "request too large or too slow"})
                    return
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            line = data.split(b"\n", 1)[0]
            if len(line) > MAX_REQUEST:
                reply: dict[str, Any] = {"ok": False, "error": "request too large"}
            else:
                reply = self.handle_bytes(line)
            self._send(conn, reply)
        except Exception:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            self.clients.release()

    def _send(self, conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            payload = json.dumps(reply, default=str, allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            payload = json.dumps({"ok": False, "error": "reply not serialisable"})
        conn.sendall(payload.encode("utf-8", "replace") + b"\n")

    # -- requests ------------------------------------------------------------------
    def handle_bytes(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return {"ok": False, "error": "not a JSON line"}
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        cmd = req.get("cmd")
        handler = self.HANDLERS.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"ok": False, "error": "unknown cmd", "commands": sorted(self.HANDLERS)}
        try:
            out = handler(self, req)
        except (ValueError, TypeError) as e:
            return {"ok": False, "error": str(e)[:200]}
        except Exception as e:
            return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}
        out["ok"] = True
        return out

    def cmd_hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "agent_version": AGENT_VERSION,
            "pid": self.pid,
            "python": ".".join(str(v) for v in sys.version_info[:3]),
            "implementation": sys.implementation.name,
            "argv": list(sys.argv)[:20],
            "started_at": self.recorder.wall0,
            "uptime_s": time.perf_counter() - self.recorder.t0,
            "ring_size": self.recorder.events.maxlen,
            "callbacks": _callback_counts(),
        }

    def cmd_detach(self, req: dict[str, Any]) -> dict[str, Any]:
        """Remove the agent: GC callback, tracemalloc if the agent started it, atexit hook, socket."""
        stopped = False
        if self.tracemalloc_started_by_agent:
            import tracemalloc

            tracemalloc.stop()
            self.tracemalloc_started_by_agent = False
            stopped = True
        self.baseline = None
        detach(self)
        return {"detached": True, "tracemalloc_stopped": stopped, "callbacks": _callback_counts()}

    def cmd_gc(self, req: dict[str, Any]) -> dict[str, Any]:
        r = self.recorder
        return {
            "uptime_s": time.perf_counter() - r.t0,
            "seq": r.seq,
            "collections": r.stats_since_start("collections"),
            "pause_s": list(r.pause),
            "max_pause_s": list(r.max_pause),
            "collected": r.stats_since_start("collected"),
            "uncollectable": r.stats_since_start("uncollectable"),
            "gc": _gc_state(),
        }

    def cmd_events(self, req: dict[str, Any]) -> dict[str, Any]:
        since = _int_arg(req, "since", 0, 0, 1 << 62)
        r = self.recorder
        snapshot = list(r.events)
        newer = [e for e in snapshot if e[0] > since]
        dropped = 0
        if newer and newer[0][0] > since + 1:
            dropped = newer[0][0] - since - 1
        elif not newer and r.seq > since and snapshot:
            dropped = r.seq - since
        return {
            "seq": r.seq,
            "uptime_s": time.perf_counter() - r.t0,
            "dropped": dropped,
            "events": [list(e) for e in newer[:MAX_EVENTS_PER_REPLY]],
        }

    def cmd_types(self, req: dict[str, Any]) -> dict[str, Any]:
        limit = _int_arg(req, "limit", 20, 1, MAX_LIMIT)
        t = time.perf_counter()
        counts: dict[str, int] = {}
        objs = gc.get_objects()
        total = len(objs)
        if req.get("count_only") is True:
            del objs
            return {"tracked": total, "types": [], "cost_s": time.perf_counter() - t}
        for o in objs:
            k = type(o)
            name = f"{k.__module__}.{k.__qualname__}" if k.__module__ != "builtins" else k.__qualname__
            counts[name] = counts.get(name, 0) + 1
        del objs
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return {"tracked": total, "types": [[n, c] for n, c in top], "cost_s": time.perf_counter() - t}

    def cmd_tm_start(self, req: dict[str, Any]) -> dict[str, Any]:
        import tracemalloc

        frames = _int_arg(req, "frames", 1, 1, 64)
        already = tracemalloc.is_tracing()
        if not already:
            tracemalloc.start(frames)
            self.tracemalloc_started_by_agent = True
        return {"tracing": True, "already": already, "frames": tracemalloc.get_traceback_limit()}

    def cmd_tm_stop(self, req: dict[str, Any]) -> dict[str, Any]:
        import tracemalloc

        self.baseline = None
        was = tracemalloc.is_tracing()
        tracemalloc.stop()
        self.tracemalloc_started_by_agent = False
        return {"tracing": False, "was_tracing": was}

    def _snapshot(self) -> Any:
        import tracemalloc

        if not tracemalloc.is_tracing():
            raise ValueError("tracemalloc is not tracing: send tm.start first")
        snap = tracemalloc.take_snapshot()
        return snap.filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__))
        )

    def cmd_tm_snapshot(self, req: dict[str, Any]) -> dict[str, Any]:
        limit = _int_arg(req, "limit", 20, 1, MAX_LIMIT)
        t = time.perf_counter()
        snap = self._snapshot()
        stats = snap.statistics("lineno")
        if req.get("baseline") is True:
            self.baseline = snap
        return {
            **_traced_memory(),
            "sites": [_site(s.traceback, s.size, s.count, None, None) for s in stats[:limit]],
            "total_sites": len(stats),
            "cost_s": time.perf_counter() - t,
        }

    def cmd_tm_diff(self, req: dict[str, Any]) -> dict[str, Any]:
        limit = _int_arg(req, "limit", 20, 1, MAX_LIMIT)
        if self.baseline is None:
            raise ValueError("no baseline: send tm.snapshot with baseline=true first")
        t = time.perf_counter()
        snap = self._snapshot()
        diff = snap.compare_to(self.baseline, "lineno")
        diff.sort(key=lambda s: (-s.size_diff, -s.count_diff))
        return {
            **_traced_memory(),
            "sites": [_site(s.traceback, s.size, s.count, s.size_diff, s.count_diff) for s in diff[:limit]],
            "cost_s": time.perf_counter() - t,
        }

    HANDLERS: dict[str, Callable[[Agent, dict[str, Any]], dict[str, Any]]] = {
        "hello": cmd_hello,
        "gc": cmd_gc,
        "events": cmd_events,
        "types": cmd_types,
        "tm.start": cmd_tm_start,
        "tm.stop": cmd_tm_stop,
        "tm.snapshot": cmd_tm_snapshot,
        "tm.diff": cmd_tm_diff,
        "detach": cmd_detach,
    }


def _traced_memory() -> dict[str, int]:
    import tracemalloc

    current, peak = tracemalloc.get_traced_memory()
    return {
        "traced_bytes": current,
        "peak_bytes": peak,
        "overhead_bytes": tracemalloc.get_tracemalloc_memory(),
        "frames": tracemalloc.get_traceback_limit(),
    }


def _site(tb: Any, size: int, count: int, size_diff: int | None, count_diff: int | None) -> dict[str, Any]:
    frame = tb[0]
    return {
        "file": frame.filename,
        "line": frame.lineno,
        "size": size,
        "count": count,
        "size_diff": size_diff,
        "count_diff": count_diff,
        "stack": [[f.filename, f.lineno] for f in list(tb)[:16]],
    }


_agent: Agent | None = None
_lock = threading.Lock()


def start(directory: str | None = None) -> Agent | None:
    """Start the agent once per process; returns it, or None when it could not listen."""
    global _agent
    try:
        with _lock:
            if _agent is not None and _agent.pid == os.getpid() and _agent.sock is not None:
                return _agent
            agent = Agent(directory)
            ok = agent.start()
            _agent = agent
            if ok:
                _install_hooks()
            return agent if ok else None
    except Exception:
        return None


# Process hooks are registered once per loaded module and act on whichever agent is current, so
# that attach/detach cycles (obskit gc --inject / --detach) never pile registrations up.
_hooks = {"atexit": 0, "fork": 0}


def _install_hooks() -> None:
    if not _hooks["atexit"]:
        import atexit

        atexit.register(_at_exit)
        _hooks["atexit"] += 1
    if hasattr(os, "register_at_fork") and not _hooks["fork"]:
        os.register_at_fork(after_in_child=_after_fork)
        _hooks["fork"] += 1


def _at_exit() -> None:
    agent = _agent
    if agent is not None:
        agent.stop()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    agent = _agent
    if agent is not None and agent.sock is not None:
        try:
            agent.after_fork()
        except Exception:
            pass


def _callback_counts() -> dict[str, Any]:
    """What the agent leaves registered in the process (a debug view: detach must remove it all)."""
    import atexit

    ncallbacks = getattr(atexit, "_ncallbacks", None)  # every registration in the process, ever
    return {
        "gc": sum(1 for c in gc.callbacks if getattr(c, "__name__", "") == "obskit_gc_callback"),
        "atexit": ncallbacks() if ncallbacks is not None else None,
        "obskit_atexit": _hooks["atexit"],
        "obskit_fork": _hooks["fork"],
    }


def detach(agent: Agent | None = None) -> None:
    """Stop the agent and forget it, so that a later start() (another attach) begins afresh."""
    global _agent
    with _lock:
        agent = agent or _agent
        if agent is None:
            return
        if _agent is agent:
            _agent = None
    agent.stop()


def stop() -> None:
    global _agent
    agent, _agent = _agent, None
    if agent is not None:
        agent.stop()


def current() -> Agent | None:
    return _agent
