"""Worker settings from command lines, env strings and gunicorn config files, without running them.

A gunicorn config is Python; it is never executed.  Top-level assignments are evaluated by a
small interpreter that knows ``multiprocessing.cpu_count()`` & co (answered with the count the
target's Python would see) and ``os.environ.get`` (answered from the target's environment).

The file belongs to the target, so everything here is bounded: at most ``MAX_CONFIG_BYTES``
are read (regular files only: a FIFO or device named as config is skipped, never waited on),
at most ``MAX_NODES`` syntax nodes and ``MAX_DEPTH`` levels are looked at, the whole evaluation
stops after ``TIME_BUDGET_S``, and no intermediate value may be larger than ``MAX_STR`` characters
or ``MAX_INT_BITS`` bits: ``'x' * 500000000`` or a squaring chain is skipped like any other
expression the interpreter does not know, before anything is allocated.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import os
import shlex
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# (long option, short option, takes a value)
OptSpec = dict[str, tuple[str, str | None, bool]]
GUNICORN_OPTS: OptSpec = {
    "workers": ("--workers", "-w", True),
    "threads": ("--threads", None, True),
    "worker_class": ("--worker-class", "-k", True),
    "preload_app": ("--preload", None, False),
    "max_requests": ("--max-requests", None, True),
    "config": ("--config", "-c", True),
}
UVICORN_OPTS: OptSpec = {"workers": ("--workers", None, True)}
CELERY_OPTS: OptSpec = {"concurrency": ("--concurrency", "-c", True), "pool": ("--pool", "-P", True)}


def parse_options(args: list[str], spec: Mapping[str, tuple[str, str | None, bool]]) -> dict[str, str]:
    """The last occurrence of each option wins, as with argparse and click."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        for key, (long, short, takes) in spec.items():
            if not takes:
                if a == long:
                    out[key] = "true"
                continue
            if a == long or (short and a == short):
                if i + 1 < len(args):
                    out[key] = args[i + 1]
                    i += 1
                break
            if a.startswith(long + "="):
                out[key] = a[len(long) + 1 :]
                break
            if short and a.startswith(short) and len(a) > len(short) and not a.startswith("--"):
                out[key] = a[len(short) :].lstrip("=")
                break
        i += 1
    return out


def split_env_args(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


@dataclass
class ConfigValues:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key → the assignment's source text
    used_cpu_count: set[str] = field(default_factory=set)  # keys whose value came from a CPU count


_CPU_FUNCS = {"cpu_count", "process_cpu_count"}

MAX_CONFIG_BYTES = 256 * 1024
MAX_NODES = 50_000
MAX_DEPTH = 50
MAX_STR = 4096
MAX_INT_BITS = 64
MAX_SEQ = 4096
TIME_BUDGET_S = 0.5


class _TooBig(ValueError):
    pass


def read_config(path: str | os.PathLike[str], limit: int = MAX_CONFIG_BYTES) -> str | None:
    """The first ``limit`` bytes of a regular file, or None (missing, unreadable, not a regular
    file).  Opened non-blocking and without following a FIFO or device: a config path is chosen
    by the target."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _check(value: Any) -> Any:
    """``value`` if it is within the size bounds, else :class:`_TooBig`."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise _TooBig("int")
    elif isinstance(value, str):
        if len(value) > MAX_STR:
            raise _TooBig("str")
    elif isinstance(value, (set, frozenset, list, tuple, dict)):
        if len(value) > MAX_SEQ:
            raise _TooBig("seq")
    return value


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length()
    if isinstance(value, (str, list, tuple)):
        return len(value)
    return 0


def _bounded_mult(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if _size(a) + _size(b) > MAX_INT_BITS + 1:
            raise _TooBig("int")
    elif isinstance(a, (str, list, tuple)) and isinstance(b, int):
        if len(a) * max(b, 0) > MAX_STR:
            raise _TooBig("str")
    elif isinstance(b, (str, list, tuple)) and isinstance(a, int):
        if len(b) * max(a, 0) > MAX_STR:
            raise _TooBig("str")
    return a * b


class _Eval:
    def __init__(self, cpu_count: int, env: dict[str, str], names: dict[str, Any], cpu_names: set[str]) -> None:
        self.cpu_count = cpu_count
        self.env = env
        self.names = names
        self.cpu_names = cpu_names
        self.used_cpu = False
        self.deadline = time.monotonic() + TIME_BUDGET_S
        self.depth = 0

    def ev(self, node: ast.AST) -> Any:
        if self.depth >= MAX_DEPTH or time.monotonic() > self.deadline:
            raise _TooBig("depth")
        self.depth += 1
        try:
            return _check(self._ev(node))
        finally:
            self.depth -= 1

    def _ev(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                self.used_cpu = self.used_cpu or node.id in self.cpu_names
                return self.names[node.id]
            raise ValueError(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.ev(node.operand)
        if isinstance(node, ast.BinOp):
            a, b = self.ev(node.left), self.ev(node.right)
            ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: _bounded_mult(a, b),
                   ast.FloorDiv: lambda: a // b, ast.Div: lambda: a / b}
            fn = ops.get(type(node.op))
            if fn is None:
                raise ValueError("op")
            return fn()
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            for v in node.values:
                r = self.ev(v)
                if r:
                    return r
            return r
        if isinstance(node, ast.Call):
            name = _call_name(node.func)
            args = [self.ev(a) for a in node.args]
            if name.split(".")[-1] in _CPU_FUNCS:
                self.used_cpu = True
                return self.cpu_count
            if name.endswith("sched_getaffinity"):
                self.used_cpu = True
                return set(range(self.cpu_count))
            if name == "len" and len(args) == 1:
                return len(args[0])
            if name in ("int", "float", "str", "bool") and args:
                if name == "str" and isinstance(args[0], (set, frozenset, list, tuple, dict)):
                    raise _TooBig("str")
                return {"int": int, "float": float, "str": str, "bool": bool}[name](args[0])
            if name in ("max", "min") and args:
                return max(*args) if name == "max" else min(*args)
            if name in ("os.environ.get", "os.getenv", "environ.get", "getenv") and args:
                return self.env.get(str(args[0]), args[1] if len(args) > 1 else None)
            if name == "math.ceil" and args:
                import math

                return math.ceil(args[0])
        if isinstance(node, ast.Subscript) and _call_name(node.value) in ("os.environ", "environ"):
            key = self.ev(node.slice)
            if key in self.env:
                return self.env[key]
        raise ValueError(ast.dump(node)[:40])


def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_call_name(node.value)}.{node.attr}"
    return ""


def gunicorn_config(text: str, cpu_count: int, env: dict[str, str]) -> ConfigValues:
    """Evaluate top-level assignments of a gunicorn config; unknown expressions are skipped."""
    out = ConfigValues()
    text = text[:MAX_CONFIG_BYTES]
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return out
    # ast.walk is iterative; a tree larger than the budget is not looked at at all.
    if sum(1 for _ in itertools.islice(ast.walk(tree), MAX_NODES + 1)) > MAX_NODES:
        return out
    deadline = time.monotonic() + TIME_BUDGET_S
    names: dict[str, Any] = {}
    for stmt in tree.body:
        if time.monotonic() > deadline:
            break
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
            continue
        key = stmt.targets[0].id
        e = _Eval(cpu_count, env, names, out.used_cpu_count)
        e.deadline = deadline
        try:
            value = e.ev(stmt.value)
        except (ValueError, TypeError, ZeroDivisionError, ArithmeticError, RecursionError, MemoryError):
            continue
        names[key] = value
        out.values[key] = value
        out.sources[key] = ast.get_source_segment(text, stmt) or key
        if e.used_cpu:
            out.used_cpu_count.add(key)
    return out
