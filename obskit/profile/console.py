"""Results of `obskit profile record/show/diff` and their terminal view (rendered from the same data as --json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from obskit.output import console, escape
from obskit.profile.model import FunctionStat, Metadata, Profile


@dataclass
class OutputFile:
    path: str
    format: str
    bytes: int
    notes: list[str] = field(default_factory=list)  # what the file leaves out (e.g. a pruned flame graph)


@dataclass
class ProcessRow:
    pid: int
    role: str
    cmdline: str
    samples: int
    sample_share: float
    cpu_seconds: float | None  # CPU time used during the recording (None: not measured, e.g. a loaded file)
    cpu_share: float | None  # of one core, over the recording's wall time
    top_function: str
    top_function_share: float
    exited: bool
    hot: bool  # far more CPU (or samples) than its peers: the worker to look at


def process_rows(profile: Profile) -> list[ProcessRow]:
    wall = profile.metadata.duration_s or 0.0
    rows = []
    for st in profile.per_process():
        meta = profile.process(st.pid)
        cpu = meta.cpu_seconds if meta else None
        rows.append(ProcessRow(st.pid, st.role, st.cmdline, st.samples, st.share, cpu,
                               round(cpu / wall, 4) if cpu is not None and wall > 0 else None,
                               st.top_function, st.top_function_share, st.exited, False))
    measured = [r for r in rows if r.cpu_share is not None]
    if len(measured) >= 2:
        for r in measured:
            others = [o.cpu_share or 0.0 for o in measured if o is not r]
            mean = sum(others) / len(others)
            r.hot = (r.cpu_share or 0.0) >= 0.2 and (r.cpu_share or 0.0) > 1.5 * mean
    elif len(rows) >= 3:
        busy = [r for r in rows if r.samples]
        for r in busy:
            r.hot = r.sample_share > 1.5 / len(busy)
    rows.sort(key=lambda r: (-(r.cpu_share or 0.0), -r.samples, r.pid))
    return rows


@dataclass
class ProfileReport:
    """What `profile record` and `profile show` print: the profile's summary, not its stacks."""

    SCHEMA = "obskit.profile-report/1"

    metadata: Metadata
    total_samples: int
    top_functions: list[FunctionStat]
    processes: list[ProcessRow]
    threads: int
    outputs: list[OutputFile] = field(default_factory=list)
    source: str = ""  # the file shown, for `profile show`


def report(profile: Profile, *, top: int = 15, outputs: list[OutputFile] | None = None, source: str = "",
           per_process: bool | None = None) -> ProfileReport:
    if per_process is None:
        per_process = profile.metadata.subprocesses or len({s.pid for s in profile.samples}) > 1
    return ProfileReport(
        metadata=profile.metadata,
        total_samples=profile.total_samples,
        top_functions=profile.top_functions(top),
        processes=process_rows(profile) if per_process else [],
        threads=len({(s.pid, s.tid) for s in profile.samples}),
        outputs=list(outputs or []),
        source=source,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _where(f: FunctionStat) -> str:
    if not f.file:
        return ""
    return f"{f.file.rsplit('/', 1)[-1]}:{f.line}" if f.line else f.file.rsplit("/", 1)[-1]


def accounting_line(m: Metadata) -> str:
    """One line: what was asked, what was done, what it cost the target."""
    if m.samples_attempted is None:
        return f"{m.source_format or 'saved'} profile; no sampling accounting recorded"
    att = m.samples_attempted or 0
    valid = m.samples_valid or 0
    share = f" ({valid / att:.0%} valid)" if att else ""
    eff = f"{m.effective_rate:.0f} Hz" if m.effective_rate else "-"
    req = f"{m.requested_rate:g} Hz" if m.requested_rate else "-"
    pause = _pct(m.pause_share)
    budget = f", budget {m.max_overhead:.0%}" if m.max_overhead is not None else ""
    dur = f"{m.duration_s:.1f}s" if m.duration_s is not None else "-"
    chosen = m.segments[-1].get("rate") if m.segments else None
    rate = f"{chosen:g} Hz chosen, {eff} effective" if chosen else eff
    return (f"{dur}, {m.mode} at {rate} (requested {req}); samples {att} attempted, {valid} valid, "
            f"{m.samples_failed or 0} failed{share}; target stopped ~{pause} of the time{budget}; "
            f"ended by {m.end_reason or '-'}")


def print_report(r: ProfileReport, *, title: str = "Top functions") -> None:
    from rich.table import Table

    out = console()
    if not r.total_samples:
        out.print("[yellow]No samples were collected[/] (the target may have been idle: try --idle).")
    else:
        threads = f"{r.threads} thread" + ("" if r.threads == 1 else "s")
        from rich import box

        t = Table(title=f"{title} ({r.total_samples} samples, {threads})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        t.add_column("self %", justify="right", no_wrap=True)
        t.add_column("total %", justify="right", no_wrap=True)
        names = [inert_name(f.name) for f in r.top_functions]
        room = max(24, _table_width() - 20)
        name_w = min(max((len(n) for n in names), default=8), max(room - 16, room * 2 // 3))
        file_w = max(10, room - name_w - 2)
        # The function name is never cut (it wraps if it must); the file is shortened from the left.
        t.add_column("function", min_width=name_w, overflow="fold")
        t.add_column("file:line", overflow="fold", style="dim", max_width=file_w)
        for f, name in zip(r.top_functions, names):
            t.add_row(_pct(f.self_share), _pct(f.total_share), escape(name),
                      escape(short_path(inert_name(f.file), f.line, file_w)))
        out.print(t)
    if r.processes:
        print_processes(r.processes)
    m = r.metadata
    out.print(f"[dim]{escape(accounting_line(m))}[/]")
    for w in m.warnings:
        out.print(f"[yellow]note:[/] {escape(w)}")
    for o in r.outputs:
        out.print(f"wrote {escape(o.path)} ({o.format}, {_size(o.bytes)})")
        for n in o.notes:
            out.print(f"[yellow]note:[/] {escape(n)}")


def print_processes(procs: list[ProcessRow]) -> None:
    from rich.table import Table

    t = Table(title="Per process", title_justify="left")
    for col, just in (("pid", "right"), ("role", "left"), ("samples", "right"), ("CPU share", "right"),
                      ("top function", "left"), ("state", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for p in procs:
        style = "bold red" if p.hot else ("dim" if p.exited or not p.samples else None)
        top = f"{escape(p.top_function)} ({_pct(p.top_function_share)})" if p.top_function else "-"
        cpu = f"{p.cpu_share * 100:.0f}% of a core" if p.cpu_share is not None else f"{_pct(p.sample_share)} of samples"
        state = ", ".join(x for x in ("HOT" if p.hot else "", "exited" if p.exited else "",
                                      "no samples" if not p.samples else "") if x)
        t.add_row(str(p.pid), escape(p.role), str(p.samples), cpu, top, state, style=style)
    console().print(t)


def _size(n: int) -> str:
    from obskit.output import human_bytes

    return human_bytes(n)


@dataclass
class DiffReport:
    SCHEMA = "obskit.profile-diff-report/1"

    diff: Any  # obskit.profile.diff.ProfileDiff
    outputs: list[OutputFile] = field(default_factory=list)


def short_path(file: str, line: int, width: int) -> str:
    """``file:line`` in at most ``width`` characters, cut from the left at a path separator.

    The end of a path (package, module) tells functions apart; its start (site-packages,
    /srv/app) rarely does.
    """
    tail = f":{line}" if line else ""
    full = file + tail
    if len(full) <= width or not file:
        return full
    parts = file.split("/")
    out = parts[-1] + tail
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(out) + 2 > width:
            break
        out = f"{part}/{out}"
    return "…/" + out


def _table_width() -> int:
    return console().width


def print_diff(r: DiffReport, *, top: int = 15) -> None:
    from rich import box
    from rich.table import Table

    d = r.diff
    changed = [f for f in d.functions if f.status != "same"][:top]
    width = _table_width()
    # Narrow terminals lose the least important columns first: status, then Δ total; the function
    # name is never cut (it wraps), and file paths are shortened from the left.
    extra = width >= 100
    t = Table(title=f"Functions whose share changed most (base {d.base_samples} samples, new {d.new_samples})",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cols = [("base", "right"), ("new", "right"), ("Δ self", "right")]
    if extra:
        cols.append(("Δ total", "right"))
    for col, just in cols:
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    numbers = sum(len(c) + 2 for c, _ in cols) + 8
    names = [inert_name(f.name) for f in changed]
    longest = max((len(n) for n in names), default=8)
    room = max(20, width - numbers - (12 if extra else 0))
    name_w = min(longest, max(room - 14, room * 2 // 3))
    t.add_column("function", min_width=name_w, overflow="fold")
    file_w = max(10, room - name_w - 2)
    t.add_column("file:line", overflow="fold", style="dim", max_width=file_w)
    if extra:
        t.add_column("", no_wrap=True)
    for f, name in zip(changed, names):
        color = "red" if f.delta > 0 else "green"
        row = [_pct(f.base_self_share), _pct(f.new_self_share), f"[{color}]{f.delta * 100:+.1f}[/]"]
        if extra:
            row.append(f"{f.total_delta * 100:+.1f}")
        row += [escape(name), escape(short_path(inert_name(f.file), f.line, file_w))]
        if extra:
            row.append(f.status)
        t.add_row(*row)
    out = console()
    if changed:
        out.print(t)
    else:
        out.print("No function changed its share.")
    for o in r.outputs:
        out.print(f"wrote {escape(o.path)} ({o.format}, {_size(o.bytes)})")
        for n in o.notes:
            out.print(f"[yellow]note:[/] {escape(n)}")


def inert_name(text: str) -> str:
    from obskit.inert import inert

    return inert(text)
