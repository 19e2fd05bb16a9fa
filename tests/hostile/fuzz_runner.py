"""Runs fuzzed inputs through obskit's readers, each in its own forked subprocess.

The parent imports obskit once and then, for each request on stdin (one JSON line:
``{"argv": [...]}`` for the CLI, or ``{"config": PATH}`` for the gunicorn config reader),
forks a child that sets RLIMIT_AS, sends its stdout/stderr to a file and runs the reader.
The parent kills a child still running after the timeout and answers one JSON line:
``{"code": int|null, "signal": int|null, "timeout": bool, "seconds": float, "stderr": str}``.
Forking keeps a fresh process per input at ~10 ms instead of an interpreter start.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time


def child(req: dict, out_path: str, memory: int) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    fd = os.open(out_path, os.O_WRONLY | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    if "config" in req:
        from obskit.quota.confparse import gunicorn_config, read_config

        text = read_config(req["config"]) or ""
        gunicorn_config(text, 4, {"WEB_CONCURRENCY": "3"})
        return 0
    from obskit.commands import main

    return main(req["argv"])


def serve(timeout: float, memory: int) -> None:
    import obskit.commands

    import obskit.otel.show
    import obskit.profile.formats  # noqa: F401

    fd, out_path = tempfile.mkstemp(prefix="obskit-fuzz-")
    os.close(fd)
    try:
        for line in sys.stdin:
            req = json.loads(line)
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = child(req, out_path, memory)
                except BaseException:  # an escaped exception is an internal error: code 1 and its traceback
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    try:
                        sys.stdout.flush()
                        sys.stderr.flush()
                    finally:
                        os._exit(code if isinstance(code, int) else 1)
            timed_out = False
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() - started > timeout:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    timed_out, status = True, -1
                    break
                time.sleep(0.005)
            with open(out_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 2000))
                tail = f.read().decode("utf-8", "replace")
            answer = {
                "code": os.WEXITSTATUS(status) if not timed_out and os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if not timed_out and os.WIFSIGNALED(status) else None,
                "timeout": timed_out,
                "seconds": time.monotonic() - started,
                "stderr": tail,
            }
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        os.unlink(out_path)


if __name__ == "__main__":
    serve(float(sys.argv[1]), int(sys.argv[2]))
