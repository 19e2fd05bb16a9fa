"""Terminal views of `obskit mem` results (rendered from the same dataclasses as --json)."""

from __future__ import annotations

from obskit.mem.collect import MemReport, Series
from obskit.mem.growth import sparkline
from obskit.mem.smaps import KINDS
from obskit.mem.tmalloc import TracemallocReport
from obskit.output import console, escape, human_bytes

VERDICT_STYLE = {"steady": "green", "growing": "yellow", "leak-suspected": "bold red", "too-few-samples": "dim"}
KIND_LABEL = {
    "heap": "heap (brk)",
    "anon": "anonymous (arenas, buffers)",
    "stacks": "thread stacks",
    "libs": "shared libraries + executable",
    "files": "other file mappings",
    "shmem": "shared memory",
    "other": "other (vdso…)",
}


def _short(text: str, n: int = 60) -> str:
    words = text.split()
    if words and "/" in words[0]:
        words[0] = words[0].rsplit("/", 1)[1]  # the interpreter's path rarely matters; its arguments do
    text = " ".join(words)
    return text if len(text) <= n else text[: n - 1] + "…"


def render_mem(r: MemReport) -> None:
    from rich.table import Table

    con = console()
    t = Table(box=None, pad_edge=False, title=None)
    many = len(r.processes) > 1
    swap = any(pm.total.swap for pm in r.processes)
    wide = con.width >= 110
    cols = ["pid", *(["role"] if many else []), "rss", "pss", "uss", *(["swap"] if swap else []),
            "heap+anon", *(["libs", "stacks"] if wide else []), "thr", "command"]
    widths = {c: {"pid": 7, "thr": 3, "role": 15 if con.width >= 90 else 10}.get(c, 9) for c in cols if c != "command"}
    # Numbers never wrap or vanish; the command gets what is left of the line.
    widths["command"] = max(8, con.width - sum(widths.values()) - 2 * len(cols))
    for col in cols:
        t.add_column(col, justify="left" if col in ("role", "command") else "right", no_wrap=True,
                     overflow="ellipsis", width=widths[col])
    for pm in r.processes:
        k = pm.kinds
        row = [str(pm.pid), *([pm.role] if many else []), human_bytes(pm.total.rss), human_bytes(pm.total.pss),
               human_bytes(pm.total.uss), *([human_bytes(pm.total.swap)] if swap else []),
               human_bytes(k["heap"].rss + k["anon"].rss) if k else "-",
               *([human_bytes(k["libs"].rss) if k else "-", human_bytes(k["stacks"].rss) if k else "-"] if wide else []),
               str(pm.threads), escape(_short(pm.command, 1000))]
        t.add_row(*row)
    if many:
        t.add_row("", "total", human_bytes(r.total.rss), human_bytes(r.total.pss), human_bytes(r.total.uss),
                  *([human_bytes(r.total.swap)] if swap else []), *[""] * (len(cols) - (6 if swap else 5)),
                  style="bold")
    con.print(t)
    if len(r.processes) == 1 and r.processes[0].kinds:
        b = Table(box=None, pad_edge=False, title=None)
        for col in ("kind", "rss", "uss (private)", "swap", "mappings"):
            b.add_column(col, justify="left" if col == "kind" else "right")
        kinds = r.processes[0].kinds
        for name in KINDS:
            v = kinds[name]
            if v.mappings:
                b.add_row(KIND_LABEL[name], human_bytes(v.rss), human_bytes(v.uss), human_bytes(v.swap), str(v.mappings))
        con.print()
        con.print(b)
    if r.python is not None:
        py = r.python
        con.print()
        con.print(
            f"[bold]Python (agent):[/] {py.tracked_objects:,} objects tracked by the GC, gen counts {py.gc_count} "
            f"[dim](counted in {py.cost_s * 1e3:.0f}ms)[/]"
        )
        if py.top_types:
            con.print("  top types: " + ", ".join(f"{escape(n)} {c:,}" for n, c in py.top_types[:8]))
    if r.watch is not None:
        _render_watch(r)
    for note in r.notes:
        con.print(f"[dim]note: {escape(note)}[/]")


def _render_watch(r: MemReport) -> None:
    con = console()
    w = r.watch
    assert w is not None
    con.print()
    extra = " (interrupted)" if w.interrupted else ""
    con.print(f"[bold]watch[/] {w.duration_s:.1f}s every {w.interval_s:g}s{extra}: "
              f"[{VERDICT_STYLE.get(w.verdict, '')}]{w.verdict}[/]")
    rows: list[tuple[str, Series, list[int]]] = [(f"pid {s.pid} rss", s, s.rss) for s in w.series]
    if w.total_pss is not None:
        rows.append(("tree pss", w.total_pss, w.total_pss.pss))
    for label, s, values in rows:
        if not values or s.fit is None:
            continue
        f = s.fit
        style = VERDICT_STYLE.get(f.verdict, "")
        con.print(f"  {label:<14} {sparkline([float(v) for v in values], max(10, min(60, con.width - 62)))} "
                  f"{human_bytes(values[0])} → {human_bytes(values[-1])}  [{style}]{f.verdict}[/]")
        for e in f.evidence:
            con.print(f"      [dim]{escape(e)}[/]")
        if s.exited_at is not None:
            con.print(f"      [dim]exited at {s.exited_at:.1f}s[/]")
    if w.type_growth:
        con.print("  Python types that grew: " + ", ".join(f"{escape(g.type)} +{g.delta:,}" for g in w.type_growth[:8]))


def render_tracemalloc(r: TracemallocReport) -> None:
    from rich.table import Table

    con = console()
    head = "growth" if r.mode == "diff" else "top"
    con.print(
        f"[bold]tracemalloc {head}[/] of pid {r.pid}: traced {human_bytes(r.traced_bytes)} "
        f"(peak {human_bytes(r.peak_bytes)}, tracemalloc's own memory {human_bytes(r.overhead_bytes)}), "
        f"{r.frames} frame(s)" + (f", over {r.interval_s:g}s" if r.mode == "diff" else "")
    )
    t = Table(box=None, pad_edge=False)
    cols = ["size", "count"] + (["growth", "new blocks"] if r.mode == "diff" else []) + ["site"]
    for c in cols:
        t.add_column(c, justify="left" if c == "site" else "right")
    for s in r.sites:
        row = [human_bytes(s.size), f"{s.count:,}"]
        if r.mode == "diff":
            row += [("+" if (s.size_diff or 0) >= 0 else "-") + human_bytes(abs(s.size_diff or 0)), f"{s.count_diff or 0:+,}"]
        row.append(escape(f"{s.file}:{s.line}"))
        t.add_row(*row)
    con.print(t)
    for note in r.notes:
        con.print(f"[dim]note: {escape(note)}[/]")
