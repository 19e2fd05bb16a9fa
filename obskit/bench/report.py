"""Renderers of a :class:`BenchResult`: the terminal table (rich) and the Markdown summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from obskit.bench.model import BenchResult, MetricVerdict, WhereFunction

if TYPE_CHECKING:
    from rich.console import RenderableType

STYLE = {"regressed": "bold red", "improved": "green", "unchanged": "", "inconclusive": "yellow"}
ICON = {"regressed": "🔴", "improved": "🟢", "unchanged": "⚪", "inconclusive": "🟡"}


def fmt_value(v: float | None, unit: str) -> str:
    from obskit.output import human_bytes, human_seconds

    if v is None:
        return "-"
    if unit == "s":
        return human_seconds(v, precise=True)
    if unit == "bytes":
        return human_bytes(v)
    return f"{v:.4g}"


def fmt_ratio(m: MetricVerdict) -> str:
    return "-" if m.ratio is None else f"{m.ratio:.3f}"


def fmt_ci(m: MetricVerdict) -> str:
    if m.ci_low is None or m.ci_high is None:
        return "-"
    return f"{m.ci_low:.3f}–{m.ci_high:.3f}"


def fmt_floor(m: MetricVerdict) -> str:
    if m.noise_floor is None:
        return "-"
    pct = m.noise_floor * 100
    return f"±{pct:.1f}%" if pct < 10 else f"±{pct:.0f}%"


def fmt_change(m: MetricVerdict) -> str:
    if m.ratio is None:
        return "-"
    return f"{(m.ratio - 1) * 100:+.1f}%"


def _metric_label(m: MetricVerdict) -> str:
    label = {"wall": "wall", "cpu": "cpu", "rss": "peak mem"}.get(m.metric, m.metric)
    return label + (" ↑" if m.higher_is_better else "")


def summary_line(r: BenchResult) -> str:
    c = r.counts()
    parts = [f"{n} {v}" for v, n in c.items() if n]
    if r.mode == "commands":
        runs = f"{r.rounds} runs each" + (" + as many A/A" if r.settings.calibrate else "")
        how = {"decided": "decided", "max-runs": "stopped at --max-runs", "max-time": "stopped at --max-time",
               "interrupted": "interrupted"}.get(r.stop_reason, r.stop_reason)
        return f"{r.verdict.upper()}: {', '.join(parts)} ({runs}, {how}, {r.elapsed:.1f}s; {r.settings.method})"
    return f"{r.verdict.upper()}: {', '.join(parts)} (threshold {r.settings.threshold * 100:g}%)"


def render(r: BenchResult) -> RenderableType:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from obskit.inert import inert
    from obskit.output import console

    items: list[Any] = []
    names = [b.name for b in r.benchmarks]
    prefix = _common_module(names)
    labels = {_metric_label(m) for b in r.benchmarks for m in b.metrics}
    one_metric = len(labels) == 1
    title = f"obskit bench compare (threshold {r.settings.threshold * 100:g}%; ratio = head/base"
    title += (f"; {inert(next(iter(labels)))}" if one_metric else "") + (f"; in {inert(prefix[:-2])}" if prefix else "") + ")"
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, collapse_padding=True)
    narrow = console().width < 100  # the run counts go (they stay in --json and --markdown)
    multi = len(r.benchmarks) > 1 or r.mode == "files"
    if multi:
        table.add_column("benchmark", overflow="fold", ratio=1, min_width=12)
    cols = [("metric", "left")] if not one_metric else []
    cols += [("base", "right"), ("head", "right"), ("ratio", "right"), (f"{r.settings.confidence * 100:g}% CI", "right"),
             ("floor", "right"), *([] if narrow else [("runs", "right")]), ("verdict", "left")]
    for col, just in cols:
        table.add_column(col, justify=just, no_wrap=True,  # type: ignore[arg-type]
                         min_width=12 if col == "verdict" else None)
    for b in r.benchmarks:
        for m in b.metrics:
            row: list[Any] = ([_metric_label(m)] if not one_metric else []) + [
                fmt_value(m.base_median, m.unit), fmt_value(m.head_median, m.unit),
                fmt_ratio(m), fmt_ci(m), fmt_floor(m), *([] if narrow else [f"{m.n_base}/{m.n_head}"]),
                Text(m.verdict, style=STYLE.get(m.verdict, ""))]
            table.add_row(*([inert(b.name[len(prefix):] or b.name)] if multi else []), *row)
    items.append(table)
    items.append(Text(summary_line(r), style=STYLE.get(r.verdict, "")))
    if r.where is not None:
        items.append(_where_table(r))
    items.extend(Text(f"warning: {inert(w)}", style="yellow") for w in r.warnings)
    return Group(*items)


def _common_module(names: list[str]) -> str:
    """``tests/test_x.py::`` when every benchmark name starts with the same one (pytest ids)."""
    if len(names) < 2:
        return ""
    heads = {n.rpartition("::")[0] for n in names}
    if len(heads) != 1 or not next(iter(heads)):
        return ""
    return next(iter(heads)) + "::"


def _where_table(r: BenchResult) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from obskit.inert import inert

    w = r.where
    assert w is not None
    t = Table(title=f"Where the time went ({w.runs_per_side} profiled runs a side at {w.rate} Hz, "
                    f"{w.base_samples}/{w.head_samples} samples; shares scaled by the median {w.time_metric} time)",
              title_justify="left")
    for col, just in (("function", "left"), ("file:line", "left"), ("share base → head", "right"),
                      (f"{w.time_metric} a run", "right"), ("grew", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for f in w.grown:
        t.add_row(inert(f.name), inert(f"{f.file}:{f.line}"), _shares(f), _times(f), _grew(f))
    parts: list[Any] = [t] if w.grown else []
    parts.extend(Text(inert(n), style="yellow") for n in w.notes)
    if w.files:
        parts.append(Text("written: " + ", ".join(inert(p) for p in w.files), style="dim"))
    return Group(*parts)


def _shares(f: WhereFunction) -> str:
    return f"{f.base_share * 100:.1f}% → {f.head_share * 100:.1f}%"


def _times(f: WhereFunction) -> str:
    return f"{fmt_value(f.base_time, 's')} → {fmt_value(f.head_time, 's')}"


def _grew(f: WhereFunction) -> str:
    return "+" + fmt_value(f.time_delta, "s") if f.time_delta is not None else f"{f.delta * 100:+.1f}pp"


def _md_code(text: str) -> str:
    """Text for a `code span` in a table cell: entities are not decoded there, only | and ` matter."""
    from obskit.inert import inert

    return inert(text).replace("`", "'").replace("|", "\\|")


def _md(text: str) -> str:
    from obskit.inert import inert

    return inert(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def markdown(r: BenchResult) -> str:
    """The summary for $GITHUB_STEP_SUMMARY or --markdown FILE (GitHub-flavoured Markdown)."""
    lines = [f"### {ICON.get(r.verdict, '')} obskit bench: {r.verdict}", "", _md(summary_line(r)), ""]
    if r.mode == "commands":
        for s in r.sides:
            if s.name == "calib":
                continue
            ref = f" at `{_md_code(s.ref)}` ({s.commit[:12]})" if s.ref else ""
            lines.append(f"- **{s.name}**: `{_md_code(' '.join(s.argv))}`{ref}")
        lines.append("")
    elif r.inputs:
        lines.extend([f"- **base**: `{_md_code(r.inputs[0])}`", f"- **head**: `{_md_code(r.inputs[1])}`", ""])
    multi = len(r.benchmarks) > 1 or r.mode == "files"
    head = (["benchmark"] if multi else []) + ["metric", "base", "head", "change", "ratio",
                                               f"{r.settings.confidence * 100:g}% interval", "noise floor", "runs",
                                               "verdict"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * (2 if multi else 1) + ["---:"] * 7 + ["---"]) + "|")
    for b in r.benchmarks:
        for m in b.metrics:
            cells = ([_md(b.name)] if multi else []) + [
                _md(_metric_label(m)), fmt_value(m.base_median, m.unit), fmt_value(m.head_median, m.unit),
                fmt_change(m), fmt_ratio(m), fmt_ci(m), fmt_floor(m), f"{m.n_base}/{m.n_head}",
                f"{ICON.get(m.verdict, '')} **{m.verdict}**" if m.verdict != "unchanged" else "unchanged"]
            lines.append("| " + " | ".join(cells) + " |")
    if r.where is not None:
        w = r.where
        lines.extend(["", f"#### Where the time went ({w.runs_per_side} profiled runs a side at {w.rate} Hz)", ""])
        if w.grown:
            lines.extend([f"| function | file:line | share base → head | {w.time_metric} a run | grew |",
                          "|---|---|---:|---:|---:|"])
            lines.extend(f"| `{_md_code(f.name)}` | {_md(f'{f.file}:{f.line}')} | {_shares(f)} | {_times(f)} | "
                         f"{_grew(f)} |" for f in w.grown)
        lines.extend(f"\n> {_md(n)}" for n in w.notes)
        if w.files:
            lines.append("\nDifferential flame graph and profiles: " + ", ".join(f"`{_md_code(p)}`" for p in w.files))
    mc = r.machine
    mach = [x for x in (mc.cpu_model, f"{mc.cpus} CPUs" if mc.cpus else "",
                        "load " + " ".join(f"{x:.2f}" for x in mc.load) if mc.load else "",
                        f"governor {mc.governor}" if mc.governor else "", mc.python) if x]
    lines.extend(["", f"<sub>{_md('; '.join(mach))}; measured with {r.settings.method}</sub>"])
    if r.warnings:
        lines.append("")
        lines.extend(f"> ⚠️ {_md(w)}" for w in r.warnings)
    return "\n".join(lines) + "\n"
