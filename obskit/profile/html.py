"""obskit's own self-contained, interactive flame graph (and differential flame graph) as one HTML file.

No network: the JS and CSS are inlined from ``obskit/assets/flamegraph.*`` and a
Content-Security-Policy forbids every fetch; only the inline script with the hash
computed here may run.  The profile is embedded as JSON in
``<script type="application/json">`` with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped,
so target-supplied names can never end the script element; the JS puts text on the page
only through ``textContent`` and canvas ``fillText``.

Size is bounded: a call tree is built per thread (functions merged by name and file),
subtrees below ``min_share`` of all samples are pruned server-side and their share is
reported, and nodes are emitted as flat integer arrays with a string table.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_mod
import json
import math
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from operator import itemgetter
from typing import Any

from obskit.output import human_seconds
from obskit.profile.model import Profile

# Subtrees under 0.01 % of all samples are dropped: narrower than a pixel even after a 10x zoom
# on a wide screen; the node budget raises the threshold further for pathological profiles.
DEFAULT_MIN_SHARE = 0.0001
MAX_NODES = 120_000

Thread = tuple[int, int]
Stack = tuple[Thread, tuple[int, ...], int]


@dataclass
class _Funcs:
    funcs: list[tuple[str, str, int]] = field(default_factory=list)  # name, file, first line seen
    index: dict[tuple[str, str], int] = field(default_factory=dict)

    def stacks(self, profile: Profile, *, per_thread: bool = True) -> list[Stack]:
        """Every sample as (thread, function ids root first, count); functions merged by (name, file)."""
        f2f = []
        for f in profile.frames:
            key = (f.name, f.file)
            i = self.index.get(key)
            if i is None:
                i = self.index[key] = len(self.funcs)
                self.funcs.append((f.name, f.file, f.line))
            f2f.append(i)
        out: list[Stack] = []
        for s in profile.samples:
            if s.count <= 0:
                continue
            fr = s.frames
            if len(fr) > 1:
                funcs = itemgetter(*fr)(f2f)
            else:
                funcs = (f2f[fr[0]],) if fr else ()
            out.append(((s.pid, s.tid) if per_thread else (0, 0), funcs, s.count))
        return out


@dataclass
class _Tree:
    """Kept call-tree nodes in parallel arrays; node i < len(threads) is the root of threads[i]."""

    threads: list[Thread]
    parent: list[int]
    func: list[int]
    total: list[int]
    self_count: list[int]
    child: dict[tuple[int, int], int]  # (parent node, function) -> node
    pruned: int
    min_count: int


def _grow(stacks: list[Stack], min_count: int) -> _Tree:
    """The call tree of ``stacks`` without subtrees under ``min_count`` samples.

    Built level by level from grouped (parent, function) keys instead of as a full trie:
    a stack leaves the work list at the first level where its node is too small, so a
    million-sample profile costs about as much as its kept nodes.
    """
    threads: list[Thread] = []
    tindex: dict[Thread, int] = {}
    parent: list[int] = []
    func: list[int] = []
    total: list[int] = []
    self_count: list[int] = []
    alive: list[tuple[int, tuple[int, ...], int]] = []
    for th, funcs, c in stacks:
        r = tindex.get(th)
        if r is None:
            r = tindex[th] = len(threads)
            threads.append(th)
            parent.append(-1)
            func.append(-1)
            total.append(0)
            self_count.append(0)
        total[r] += c
        if funcs:
            alive.append((r, funcs, c))
        else:
            self_count[r] += c
    child: dict[tuple[int, int], int] = {}
    pruned = 0
    depth = 0
    while alive:
        groups: dict[tuple[int, int], list[int]] = {}
        for p, funcs, c in alive:
            k = (p, funcs[depth])
            g = groups.get(k)
            if g is None:
                g = groups[k] = [0, 0]
            g[0] += c
            if len(funcs) == depth + 1:
                g[1] += c
        for k, g in groups.items():
            if g[0] >= min_count:
                child[k] = len(parent)
                parent.append(k[0])
                func.append(k[1])
                total.append(g[0])
                self_count.append(g[1])
            else:
                pruned += g[0]
        depth += 1
        alive = [(child[(p, funcs[depth - 1])], funcs, c) for p, funcs, c in alive
                 if len(funcs) > depth and (p, funcs[depth - 1]) in child]
    return _Tree(threads, parent, func, total, self_count, child, pruned, min_count)


def _grow_bounded(stacks: list[Stack], min_count: int, max_nodes: int) -> _Tree:
    tree = _grow(stacks, min_count)
    while len(tree.parent) - len(tree.threads) > max_nodes:
        tree = _grow(stacks, max(tree.min_count * 2, tree.min_count + 1))
    return tree


def _measure(stacks: list[Stack], shape: _Tree) -> tuple[list[int], list[int]]:
    """Total and self samples of ``stacks`` along the nodes of ``shape`` (a diff's base on the new tree)."""
    total = [0] * len(shape.parent)
    self_count = [0] * len(shape.parent)
    roots = {th: i for i, th in enumerate(shape.threads)}
    child = shape.child
    for th, funcs, c in stacks:
        node = roots.get(th)
        if node is None:
            continue
        total[node] += c
        for f in funcs:
            nxt = child.get((node, f))
            if nxt is None:
                break
            node = nxt
            total[node] += c
        else:
            self_count[node] += c
    return total, self_count


def _flat(tree: _Tree, base: tuple[list[int], list[int]] | None = None) -> list[list[int]]:
    """Per thread, pre-order runs of [func, depth, total, self(, base total, base self)]."""
    children: list[list[int]] = [[] for _ in tree.parent]
    for node in range(len(tree.threads), len(tree.parent)):
        children[tree.parent[node]].append(node)
    out = []
    for r in range(len(tree.threads)):
        run: list[int] = []
        stack = [(r, 0)]
        while stack:
            node, depth = stack.pop()
            run += (tree.func[node], depth, tree.total[node], tree.self_count[node])
            if base is not None:
                run += (base[0][node], base[1][node])
            stack.extend((ch, depth + 1) for ch in reversed(children[node]))
        out.append(run)
    return out


def _json_for_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _asset(name: str) -> str:
    return resources.files("obskit").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _page(data: dict[str, Any], title: str) -> bytes:
    css, js = _asset("flamegraph.css"), _asset("flamegraph.js")
    csp = (f"default-src 'none'; script-src {_csp_hash(js)}; style-src {_csp_hash(css)}; "
           "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")
    parts = {"CSS": css, "JS": js, "CSP": csp, "TITLE": html_mod.escape(title), "DATA": _json_for_script(data)}
    # One pass: text substituted in is never scanned for markers again.
    page = re.sub(r"@@(CSS|JS|CSP|TITLE|DATA)@@", lambda m: parts[m.group(1)], _asset("flamegraph.html"))
    return page.encode("utf-8")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.1f}%"


def _meta_rows(profile: Profile) -> list[list[str]]:
    m = profile.metadata
    rows: list[list[str]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", 0, [], False):
            rows.append([label, str(value)])

    add("Target", f"pid {m.target_pid}" if m.target_pid else "")
    add("Command", m.target_cmdline)
    add("Python", m.python_version)
    add("Host", m.host)
    add("Container", (m.container_id or "")[:12])
    if m.start_time:
        add("Started", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m.start_time)))
    add("Duration", human_seconds(m.duration_s) if m.duration_s else "")
    if m.requested_rate or m.effective_rate:
        rate = f"{m.requested_rate:g} Hz requested" if m.requested_rate else ""
        if m.effective_rate:
            rate += (", " if rate else "") + f"{m.effective_rate:.1f} Hz effective"
        add("Rate", rate)
    if m.source_format in ("", "json"):  # a file from another sampler does not say how it was recorded
        flags = [m.mode] if m.mode else []
        flags += [name for name, on in (("idle", m.idle), ("gil", m.gil), ("native", m.native),
                                        ("subprocesses", m.subprocesses)) if on]
        add("Mode", ", ".join(flags))
    if m.samples_attempted is not None or m.samples_valid is not None:
        parts = []
        if m.samples_attempted is not None:
            parts.append(f"{m.samples_attempted} attempted")
        if m.samples_valid is not None:
            parts.append(f"{m.samples_valid} valid")
        if m.samples_failed:
            share = f" ({_pct(m.samples_failed / m.samples_attempted)})" if m.samples_attempted else ""
            parts.append(f"{m.samples_failed} failed{share}")
        add("Samples", ", ".join(parts))
    add("Target paused", _pct(m.pause_share) if m.pause_share is not None else "")
    add("Ended by", m.end_reason)
    add("Sampler", m.sampler)
    add("Source", m.source_format)
    add("obskit", m.obskit_version)
    return rows


def _common(funcs: _Funcs) -> dict[str, Any]:
    strings: list[str] = []
    sindex: dict[str, int] = {}

    def s(text: str) -> int:
        i = sindex.get(text)
        if i is None:
            i = sindex[text] = len(strings)
            strings.append(text)
        return i

    flat = [x for name, file, line in funcs.funcs for x in (s(name), s(file), line)]
    return {"strings": strings, "funcs": flat}


def render_html(profile: Profile, *, min_share: float = DEFAULT_MIN_SHARE, max_nodes: int = MAX_NODES,
                title: str | None = None) -> bytes:
    """The interactive flame graph of ``profile`` as a self-contained HTML page."""
    funcs = _Funcs()
    stacks = funcs.stacks(profile)
    total = sum(st[2] for st in stacks)
    tree = _grow_bounded(stacks, max(1, math.ceil(total * min_share)), max_nodes)
    flats = _flat(tree)
    order = sorted(range(len(tree.threads)), key=lambda i: (-tree.total[i], tree.threads[i]))
    totals: dict[int, int] = {}
    for i, (pid, _tid) in enumerate(tree.threads):
        totals[pid] = totals.get(pid, 0) + tree.total[i]
    threads = [[tree.threads[i][0], tree.threads[i][1], profile.thread_name(*tree.threads[i]), tree.total[i]]
               for i in order]
    processes = []
    for pid in sorted({p.pid for p in profile.processes} | set(totals), key=lambda p: (-totals.get(p, 0), p)):
        meta = profile.process(pid)
        processes.append([pid, meta.cmdline if meta else "", meta.role if meta else "",
                          bool(meta.exited) if meta else False, totals.get(pid, 0)])
    label = title or _title(profile)
    data = {
        "v": 1,
        "mode": "profile",
        "title": label,
        **_common(funcs),
        "processes": processes,
        "threads": threads,
        "roots": [flats[i] for i in order],
        "total": total,
        "pruned": tree.pruned,
        "minCount": tree.min_count,
        "meta": _meta_rows(profile),
        "warnings": list(profile.metadata.warnings),
    }
    return _page(data, f"obskit flame graph: {label}")


def _title(profile: Profile) -> str:
    m = profile.metadata
    if m.target_cmdline:
        return m.target_cmdline if len(m.target_cmdline) <= 80 else m.target_cmdline[:77] + "..."
    if m.target_pid:
        return f"pid {m.target_pid}"
    return "profile"


def render_diff_html(base: Profile, new: Profile, *, min_share: float = DEFAULT_MIN_SHARE,
                     max_nodes: int = MAX_NODES) -> bytes:
    """A differential flame graph: shaped by ``new``, coloured by the change in share against ``base``."""
    from obskit.profile.diff import diff_profiles

    funcs = _Funcs()
    new_stacks = funcs.stacks(new, per_thread=False)
    base_stacks = funcs.stacks(base, per_thread=False)
    new_total = sum(st[2] for st in new_stacks)
    base_total = sum(st[2] for st in base_stacks)
    # The root exists even for an empty profile: the page always has one tree to draw.
    tree = _grow_bounded([((0, 0), (), 0), *new_stacks], max(1, math.ceil(new_total * min_share)), max_nodes)
    flat = _flat(tree, _measure(base_stacks, tree))[0]
    d = diff_profiles(base, new)

    def row(f: Any) -> list[Any]:
        return [f.name, f.file, f.line, f.base_self_share, f.new_self_share, f.base_total_share, f.new_total_share]

    data = {
        "v": 1,
        "mode": "diff",
        "title": f"{_title(base)} → {_title(new)}",
        **_common(funcs),
        "processes": [],
        "threads": [[0, 0, "all threads", new_total]],
        "roots": [flat],
        "total": new_total,
        "baseTotal": base_total,
        "pruned": tree.pruned,
        "minCount": tree.min_count,
        "meta": [["Base", f"{_title(base)} ({base_total} samples)"], ["New", f"{_title(new)} ({new_total} samples)"]],
        "warnings": list(dict.fromkeys(base.metadata.warnings + new.metadata.warnings)),
        "grown": [row(f) for f in d.grown(15)],
        "shrunk": [row(f) for f in d.shrunk(15)],
        "vanished": [row(f) for f in d.vanished()[:50]],
    }
    return _page(data, f"obskit diff: {data['title']}")
