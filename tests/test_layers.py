"""The layering of the tree, checked on the source: no import circle in obskit/, nothing in the core
imports the CLI, no lower layer imports a higher one, and feature packages do not import each other.

Imports inside functions count: lazy imports keep start-up fast, not the layering loose.
docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Layers, bottom to top.  A top-level module or package of obskit/ not listed is a feature.
BASE = {"", "errors", "output", "proc", "durations", "inert", "redact", "safefile", "state", "severity"}
SERVICES = {"pyspy", "attach", "doctor", "targets", "cgroups", "selftrace", "tracing", "otlp", "child", "agent"}
CLI = {"commands", "__main__"}


def layer(unit: str) -> int:
    if unit in BASE:
        return 0
    if unit in SERVICES:
        return 1
    if unit in CLI:
        return 3
    return 2


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for base in ("obskit", "commands"):
        for p in (ROOT / base).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[0] == "commands":
                parts = ["obskit", "commands", *parts[1:]]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    here = name.split(".") if is_pkg else name.split(".")[:-1]
                    here = here[: len(here) - node.level + 1]
                    mod = ".".join([*here, *([node.module] if node.module else [])])
                else:
                    mod = node.module or ""
                targets = [mod, *(f"{mod}.{a.name}" for a in node.names)]
            for t in targets:
                if not t.startswith("obskit"):
                    continue
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != name and not name.startswith(t + "."):  # a package's own __init__ is not an edge
                    edges[name].add(t)
    return edges


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_layer_imports_upwards_or_sideways() -> None:
    mods = _modules()
    bad = []
    for src, dsts in _edges(mods).items():
        for dst in dsts:
            a, b = unit(src), unit(dst)
            if a == b:
                continue
            if layer(b) > layer(a):
                bad.append(f"{src} -> {dst} (layer {layer(a)} imports layer {layer(b)})")
            elif layer(a) == layer(b) == 2:
                bad.append(f"{src} -> {dst} (feature imports another feature; go through a shared service)")
    assert not bad, "\n".join(sorted(bad))


def test_core_never_imports_the_cli() -> None:
    edges = _edges(_modules())
    bad = [f"{s} -> {d}" for s, ds in edges.items() for d in ds
           if unit(s) not in CLI and unit(d) in CLI]
    assert not bad, bad


def test_no_import_circle_in_the_core() -> None:
    edges = _edges(_modules())
    core = {m: {d for d in ds if unit(d) not in CLI} for m, ds in edges.items() if unit(m) not in CLI}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(core.get(m, ())):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d):], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(core):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_violation() -> None:
    """The walk itself works: it finds the CLI importing the core, and lazy imports inside functions."""
    edges = _edges(_modules())
    assert any(unit(d) == "errors" for d in edges["obskit.commands"])
    lazy = [s for s, ds in edges.items() if s.startswith("obskit.commands.") and any(unit(d) == "profile" for d in ds)]
    assert lazy  # commands/profile.py imports obskit.profile only inside functions


def test_every_package_is_installed() -> None:
    """A package missing from pyproject's list works in an editable install and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(ROOT).parts[:-1]) for p in (ROOT / "obskit").rglob("__init__.py")}
    found |= {"obskit.commands"}
    assert found <= listed, sorted(found - listed)
