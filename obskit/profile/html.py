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
from array import array
from dataclasses import dataclass
from importlib import resources
from typing import Any

from obskit.output import human_seconds
from obskit.profile.model import Profile

# Subtrees under 0.01 % of all samples are dropped: narrower than a pixel even after a 10x zoom
# on a wide screen; the node budget raises the threshold further for pathological profiles.
DEFAULT_MIN_SHARE = 0.0001
MAX_NODES = 120_000

Thread = tuple[int, int]
OTHER = "[other]"  # the frame that stands for a level's small frames, merged


class _Funcs:
    """Functions (frames merged by name and file) of one or more profiles, in parallel lists."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.files: list[str] = []
        self.lines: list[int] = []
        self._by_name: dict[str, int] = {}  # first function of each name: most names have one file
        self._pairs: dict[tuple[str, str], int] = {}
        self.other = self._add(OTHER, "", 0)

    def _add(self, name: str, file: str, line: int) -> int:
        self.names.append(name)
        self.files.append(file)
        self.lines.append(line)
        return len(self.names) - 1

    def of(self, profile: Profile) -> array[int]:
        """Function id of every frame of ``profile``."""
        out = array("i")
        by_name, pairs, files = self._by_name, self._pairs, self.files
        for f in profile.frames:
            i = by_name.get(f.name)
            if i is None:
                i = by_name[f.name] = self._add(f.name, f.file, f.line)
            elif files[i] != f.file:
                key = (f.name, f.file)
                i = pairs.get(key)
                if i is None:
                    i = pairs[key] = self._add(f.name, f.file, f.line)
            out.append(i)
        return out


@dataclass
class _Tree:
    """Kept call-tree nodes in parallel arrays; node i < len(threads) is the root of threads[i]."""

    threads: list[Thread]
    parent: list[int]
    func: list[int]
    total: list[int]
    self_count: list[int]
    child: dict[int, int]  # parent node * nfuncs + function -> node (kept nodes, for a diff's base)
    other: dict[int, int]  # parent node -> its "other" child
    pruned: int  # samples whose stacks end in an "other" frame or below the threshold
    min_count: int


def _grow(profile: Profile, f2f: array[int], funcs: _Funcs, min_count: int, *, per_thread: bool = True,
          always_root: bool = False) -> _Tree:
    """The call tree of ``profile`` with every subtree under ``min_count`` samples cut.

    At each node, the children under ``min_count`` are merged into one ``[other]`` child
    (drawn when it is itself at least ``min_count``), so the top of the graph keeps its
    shape however long the tail.  Built level by level over sample indices: a stack leaves
    the work list at the first level where its node is cut, so the cost follows the kept
    nodes, and no per-sample copy of the stacks is made.
    """
    nf = len(funcs.names)
    other_f = funcs.other
    samples = profile.samples
    threads: list[Thread] = []
    tindex: dict[Thread, int] = {}
    parent: list[int] = []
    func: list[int] = []
    total: list[int] = []
    self_count: list[int] = []
    if always_root:
        tindex[(0, 0)] = 0
        threads.append((0, 0))
        parent.append(-1)
        func.append(-1)
        total.append(0)
        self_count.append(0)
    alive = array("i")
    alive_node = array("i")
    for k, s in enumerate(samples):
        c = s.count
        if c <= 0:
            continue
        th = (s.pid, s.tid) if per_thread else (0, 0)
        r = tindex.get(th)
        if r is None:
            r = tindex[th] = len(threads)
            threads.append(th)
            parent.append(-1)
            func.append(-1)
            total.append(0)
            self_count.append(0)
        total[r] += c
        if s.frames:
            alive.append(k)
            alive_node.append(r)
        else:
            self_count[r] += c
    child: dict[int, int] = {}
    other: dict[int, int] = {}
    pruned = 0
    depth = 0
    while alive:
        gid: dict[int, int] = {}
        gt: list[int] = []
        gs: list[int] = []
        gp: list[int] = []
        gf: list[int] = []
        member = array("i")
        for k, p in zip(alive, alive_node):
            s = samples[k]
            fr = s.frames
            f = f2f[fr[depth]]
            key = p * nf + f
            g = gid.get(key)
            if g is None:
                g = gid[key] = len(gt)
                gt.append(0)
                gs.append(0)
                gp.append(p)
                gf.append(f)
            gt[g] += s.count
            if len(fr) == depth + 1:
                gs[g] += s.count
            member.append(g)
        del gid
        node_of = [-1] * len(gt)
        small: dict[int, int] = {}  # parent -> samples in its children under the threshold
        for g in range(len(gt)):
            if gt[g] >= min_count:
                node_of[g] = n = len(parent)
                child[gp[g] * nf + gf[g]] = n
                parent.append(gp[g])
                func.append(gf[g])
                total.append(gt[g])
                self_count.append(gs[g])
            else:
                small[gp[g]] = small.get(gp[g], 0) + gt[g]
                pruned += gt[g]
        for p, c in small.items():
            if c >= min_count:
                other[p] = len(parent)
                parent.append(p)
                func.append(other_f)
                total.append(c)
                self_count.append(c)
        depth += 1
        nxt, nxt_node = array("i"), array("i")
        for k, g in zip(alive, member):
            n = node_of[g]
            if n >= 0 and len(samples[k].frames) > depth:
                nxt.append(k)
                nxt_node.append(n)
        alive, alive_node = nxt, nxt_node
    return _Tree(threads, parent, func, total, self_count, child, other, pruned, min_count)


def _grow_bounded(profile: Profile, f2f: array[int], funcs: _Funcs, min_count: int, max_nodes: int,
                  **kw: Any) -> _Tree:
    tree = _grow(profile, f2f, funcs, min_count, **kw)
    while len(tree.parent) - len(tree.threads) > max_nodes:
        tree = _grow(profile, f2f, funcs, max(tree.min_count * 2, tree.min_count + 1), **kw)
    return tree


def _measure(profile: Profile, f2f: array[int], nf: int, shape: _Tree) -> tuple[list[int], list[int]]:
    """Total and self samples of ``profile`` along the nodes of ``shape`` (a diff's base on the new tree)."""
    total = [0] * len(shape.parent)
    self_count = [0] * len(shape.parent)
    child, other = shape.child, shape.other
    for s in profile.samples:
        c = s.count
        if c <= 0:
            continue
        node = 0
        total[0] += c
        for i in s.frames:
            nxt = child.get(node * nf + f2f[i])
            if nxt is None:
                o = other.get(node)
                if o is not None:
                    total[o] += c
                    self_count[o] += c
                break
            node = nxt
            total[node] += c
        else:
            self_count[node] += c
    return total, self_count


def _flat(tree: _Tree, remap: dict[int, int], base: tuple[list[int], list[int]] | None = None) -> list[list[int]]:
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
            f = tree.func[node]
            run += (remap[f] if f >= 0 else -1, depth, tree.total[node], tree.self_count[node])
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


def _common(funcs: _Funcs, tree: _Tree) -> tuple[dict[str, Any], dict[int, int]]:
    """The string and function tables of the functions ``tree`` keeps (and their new ids)."""
    strings: list[str] = []
    sindex: dict[str, int] = {}

    def s(text: str) -> int:
        i = sindex.get(text)
        if i is None:
            i = sindex[text] = len(strings)
            strings.append(text)
        return i

    used = sorted({f for f in tree.func if f >= 0})
    remap = {f: i for i, f in enumerate(used)}
    flat = [x for f in used for x in (s(funcs.names[f]), s(funcs.files[f]), funcs.lines[f])]
    return {"strings": strings, "funcs": flat, "other": remap.get(funcs.other, -2)}, remap


def pruned_note(pruned: int, total: int, min_count: int, what: str = "the flame graph") -> str | None:
    """The warning for a page that hides more than 1 % of its samples in merged frames."""
    if not total or pruned / total <= 0.01:
        return None
    return (f"{what}: {pruned / total:.1%} of samples end in an [other] frame (frames under {min_count:,} "
            f"samples each are merged, too many to draw; the frames above are exact, `profile show` lists every "
            f"function)")


def render_html(profile: Profile, *, min_share: float = DEFAULT_MIN_SHARE, max_nodes: int = MAX_NODES,
                title: str | None = None, notes: list[str] | None = None) -> bytes:
    """The interactive flame graph of ``profile`` as a self-contained HTML page.

    ``notes``, when given, receives the warning of a page that hides more than 1 % of samples.
    """
    funcs = _Funcs()
    f2f = funcs.of(profile)
    total = sum(s.count for s in profile.samples if s.count > 0)
    tree = _grow_bounded(profile, f2f, funcs, max(1, math.ceil(total * min_share)), max_nodes)
    del f2f
    common, remap = _common(funcs, tree)
    del funcs
    flats = _flat(tree, remap)
    order = sorted(range(len(tree.threads)), key=lambda i: (-tree.total[i], tree.threads[i]))
    totals: dict[int, int] = {}
    for i, (pid, _tid) in enumerate(tree.threads):
        totals[pid] = totals.get(pid, 0) + tree.total[i]
    names = {(t.pid, t.tid): t.name for t in profile.threads}
    threads = [[tree.threads[i][0], tree.threads[i][1], names.get(tree.threads[i]) or f"thread {tree.threads[i][1]}",
                tree.total[i]] for i in order]
    processes = []
    metas = {p.pid: p for p in profile.processes}
    for pid in sorted(set(metas) | set(totals), key=lambda p: (-totals.get(p, 0), p)):
        meta = metas.get(pid)
        processes.append([pid, meta.cmdline if meta else "", meta.role if meta else "",
                          bool(meta.exited) if meta else False, totals.get(pid, 0)])
    label = title or _title(profile)
    warnings = list(profile.metadata.warnings)
    note = pruned_note(tree.pruned, total, tree.min_count)
    if note:
        warnings.append(note)
        if notes is not None:
            notes.append(note)
    data = {
        "v": 1,
        "mode": "profile",
        "title": label,
        **common,
        "processes": processes,
        "threads": threads,
        "roots": [flats[i] for i in order],
        "total": total,
        "pruned": tree.pruned,
        "minCount": tree.min_count,
        "meta": _meta_rows(profile),
        "warnings": warnings,
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
                     max_nodes: int = MAX_NODES, notes: list[str] | None = None) -> bytes:
    """A differential flame graph: shaped by ``new``, coloured by the change in share against ``base``."""
    from obskit.profile.diff import diff_profiles

    funcs = _Funcs()
    new_f2f, base_f2f = funcs.of(new), funcs.of(base)
    new_total = sum(s.count for s in new.samples if s.count > 0)
    base_total = sum(s.count for s in base.samples if s.count > 0)
    # The root exists even for an empty profile: the page always has one tree to draw.
    tree = _grow_bounded(new, new_f2f, funcs, max(1, math.ceil(new_total * min_share)), max_nodes,
                         per_thread=False, always_root=True)
    measured = _measure(base, base_f2f, len(funcs.names), tree)
    common, remap = _common(funcs, tree)
    flat = _flat(tree, remap, measured)[0]
    d = diff_profiles(base, new)
    pruned = [n for n in [pruned_note(tree.pruned, new_total, tree.min_count, "the differential flame graph")] if n]
    if notes is not None:
        notes.extend(pruned)

    def row(f: Any) -> list[Any]:
        return [f.name, f.file, f.line, f.base_self_share, f.new_self_share, f.base_total_share, f.new_total_share]

    data = {
        "v": 1,
        "mode": "diff",
        "title": f"{_title(base)} → {_title(new)}",
        **common,
        "processes": [],
        "threads": [[0, 0, "all threads", new_total]],
        "roots": [flat],
        "total": new_total,
        "baseTotal": base_total,
        "pruned": tree.pruned,
        "minCount": tree.min_count,
        "meta": [["Base", f"{_title(base)} ({base_total} samples)"], ["New", f"{_title(new)} ({new_total} samples)"]],
        "warnings": list(dict.fromkeys(base.metadata.warnings + new.metadata.warnings + pruned)),
        "grown": [row(f) for f in d.grown(15)],
        "shrunk": [row(f) for f in d.shrunk(15)],
        "vanished": [row(f) for f in d.vanished()[:50]],
    }
    return _page(data, f"obskit diff: {data['title']}")
