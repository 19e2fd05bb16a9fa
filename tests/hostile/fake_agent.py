"""A process answering at a target's agent path in the agent's place (run as another user, or
as the target's user with replies no agent sends).  Usage: fake_agent.py SOCKET MODE; prints
``ready`` once listening."""

import json
import os
import socket
import sys
import time

EVIL = "evil\x1b]0;pwned\x07\x1b[31m\u202eRTL\x9b2J"
GENS = [1, 2, 3]


def good(cmd: str, python: str = "3.11.7") -> dict:
    if cmd == "hello":
        return {"ok": True, "agent_version": 1, "pid": os.getpid(), "python": python, "implementation": "cpython",
                "argv": [EVIL], "started_at": time.time(), "uptime_s": 1.0, "ring_size": 8192}
    if cmd == "gc":
        return {"ok": True, "uptime_s": 1.0, "seq": 3, "collections": GENS, "pause_s": [0.1, 0.1, 0.1],
                "max_pause_s": [0.1, 0.1, 0.1], "collected": GENS, "uncollectable": [0, 0, 0],
                "gc": {"enabled": True, "count": GENS, "threshold": [700, 10, 10], "stats": [], "garbage": 0, "frozen": 0}}
    if cmd == "events":
        return {"ok": True, "seq": 3, "uptime_s": 1.0, "dropped": 0, "events": [[3, 0.5, 2, 0.01, 5, 0]]}
    if cmd == "tm.start":
        return {"ok": True, "tracing": True, "already": True, "frames": 1}
    if cmd in ("tm.snapshot", "tm.diff"):
        return {"ok": True, "traced_bytes": 10, "peak_bytes": 10, "overhead_bytes": 1, "frames": 1, "total_sites": 1,
                "cost_s": 0.1, "sites": [{"file": f"/srv/{EVIL}.py", "line": 1, "size": 10, "count": 1,
                                          "size_diff": None, "count_diff": None, "stack": [[f"/srv/{EVIL}.py", 1]]}]}
    if cmd == "types":
        return {"ok": True, "tracked": 5, "types": [[EVIL, 5]], "cost_s": 0.1}
    return {"ok": True, "tracing": False, "was_tracing": True}


def reply(conn: socket.socket, mode: str, cmd: str) -> None:
    if mode == "big":  # 400 MiB, no newline
        chunk = b"x" * (1 << 20)
        for _ in range(400):
            conn.sendall(chunk)
        return
    if mode == "slow":
        for b in b'{"ok": true':
            conn.sendall(bytes([b]))
            time.sleep(1)
        return
    payload = {
        "notjson": b"{not json\n",
        "array": b"[1, 2, 3]\n",
        "nested": b"[" * 200000 + b"\n",
        "hugeint": b'{"ok": true, "seq": ' + b"9" * 5000 + b"}\n",
        "nan": (json.dumps({k: float("nan") if k != "ok" else True for k in good(cmd)}) + "\n").encode(),
        "wrongtypes": (json.dumps(dict.fromkeys(good(cmd), "x") | {"ok": True}) + "\n").encode(),
        "missing": b'{"ok": true}\n',
        "error_escape": (json.dumps({"ok": False, "error": EVIL * 50}) + "\n").encode(),
        "escapes": (json.dumps(good(cmd, python=EVIL)) + "\n").encode(),
        "longstr": (json.dumps({k: v if k == "ok" else "x" * 100000 for k, v in good(cmd).items()}) + "\n").encode(),
        "good": (json.dumps(good(cmd)) + "\n").encode(),
    }[mode]
    conn.sendall(payload)


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = s.accept()
        try:
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            try:
                cmd = json.loads(data.split(b"\n")[0]).get("cmd", "")
            except ValueError:
                cmd = ""
            reply(conn, mode, cmd)
        except OSError:
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    main()
