"""The rich view of a :class:`QuotaReport` (rendered from the same data as ``--json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from obskit.output import escape, human_bytes

from .model import QuotaReport

if TYPE_CHECKING:
    from rich.console import RenderableType

_SEV = {"error": "[bold red]ERROR[/]", "warn": "[yellow]WARN[/]", "info": "[cyan]info[/]"}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _cores(x: float | None) -> str:
    return "none" if x is None else f"{x:g} CPU"


class _Lines:
    """Collects the view's parts; a line too long for the terminal is left for it to wrap (print with crop=False)."""

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def print(self, item: Any = "", soft_wrap: bool = False) -> None:
        from rich.text import Text

        if isinstance(item, str):
            text = Text.from_markup(item)
            if soft_wrap:
                text.no_wrap, text.overflow = True, "ignore"
            self.parts.append(text)
        else:
            self.parts.append(item)


def render(report: QuotaReport) -> RenderableType:
    """The terminal view of a quota report (print it with ``crop=False``: long lines are left to the terminal)."""
    from rich.console import Group
    from rich.table import Table

    con = _Lines()
    r = report
    cpu, mem, ev = r.cpu, r.memory, r.evidence
    head = f"[bold]obskit quota[/] cgroup {r.cgroup_version}, view {escape(r.view)}"
    if r.kernel:
        head += f", kernel {escape(r.kernel)}"
    con.print(head)
    for p in r.paths:
        if p.controller in ("cpu", "memory", "unified"):
            con.print(f"  {p.controller:<7} v{p.version} {escape(p.cgroup_path)} → {escape(p.directory)} "
                      f"({p.visible_levels} visible level{'s' if p.visible_levels != 1 else ''})", soft_wrap=True)

    t = Table(title="Budgets", title_justify="left", show_edge=False, box=None, pad_edge=False)
    t.add_column("", style="bold")
    t.add_column("value")
    t.add_column("detail", overflow="fold")
    lim = "none (unlimited)" if cpu.limit is None else f"{cpu.limit:g} CPU"
    levels = ", ".join(f"{_cores(lv.limit)}" for lv in cpu.levels) or "-"
    t.add_row("CPU limit", lim, f"min over {len(cpu.levels)} level(s): {levels}; effective {cpu.effective:g} CPU")
    t.add_row("CPUs", f"host {cpu.host_cpus}", f"affinity {cpu.affinity}, cpuset {cpu.cpuset or '-'}, "
              f"shares/weight {cpu.shares if cpu.shares is not None else '-'} (a weight, not a budget)")
    rd = cpu.rounding
    t.add_row("rounding", f"floor {rd['floor']} / ceil {rd['ceil']}",
              f"automaxprocs {rd['automaxprocs']}, Go 1.25 {rd['go125']}, nproc {rd['nproc']}")
    t.add_row("memory limit", human_bytes(mem.limit) if mem.limit is not None else "none (unlimited)",
              f"high {human_bytes(mem.high)}, swap {human_bytes(mem.swap_limit)}, oom.group "
              f"{'-' if mem.oom_group is None else int(mem.oom_group)}")
    t.add_row("memory now", human_bytes(mem.current),
              f"working set {human_bytes(mem.working_set)}, peak {human_bytes(mem.peak)}, anon "
              f"{human_bytes(mem.anon)}, file {human_bytes(mem.file)}, shmem {human_bytes(mem.shmem)}")
    if r.pids.limit is not None or r.pids.current is not None:
        t.add_row("pids", str(r.pids.current if r.pids.current is not None else "-"),
                  f"max {r.pids.limit if r.pids.limit is not None else 'unlimited'} (threads count)")
    con.print(t)

    title = f"Evidence over {ev.window_s:g}s" if ev.window_s > 0 else "Evidence (window skipped: counters since start only)"
    e = Table(title=title, title_justify="left", show_edge=False, box=None, pad_edge=False)
    e.add_column("", style="bold")
    e.add_column("window")
    e.add_column("since start", overflow="fold")
    use = "-" if ev.cpu_usage_cores is None else f"{ev.cpu_usage_cores:.2f} CPU"
    if ev.cpu_usage_of_limit is not None:
        use += f" ({ev.cpu_usage_of_limit:.0%} of limit)"
    e.add_row("CPU used", use, "")
    if ev.lifetime is not None:
        e.add_row("throttled", "-" if ev.window is None else
                  f"{ev.window.throttled}/{ev.window.periods} periods ({_pct(ev.throttle_ratio)}), "
                  f"{ev.window.throttled_s:.2f}s",
                  f"{ev.lifetime.throttled}/{ev.lifetime.periods} ({_pct(ev.lifetime_throttle_ratio)}), "
                  f"{ev.lifetime.throttled_s:.1f}s")
    if ev.psi:
        psi = ", ".join(f"{k} " + "/".join(f"{kk} {vv:g}%" for kk, vv in v.items()) for k, v in ev.psi.items())
        e.add_row("pressure avg10", psi, escape(ev.psi_scope or ""))
    if ev.memory_events:
        e.add_row("memory events", " ".join(f"{k}+{v}" for k, v in ev.memory_events_delta.items()) or "-",
                  " ".join(f"{k}={v}" for k, v in ev.memory_events.items()))
    con.print(e)

    if r.services:
        con.print("[bold]Services[/]")
        for s in r.services:
            label = s.kind + (f" ({s.worker_class})" if s.worker_class else "")
            threads = s.threads_per_worker.value if s.threads_per_worker else 1
            line = f"  [bold]{escape(label)}[/] pid {s.master_pid}: "
            if s.kind != "python":
                line += f"{s.workers.value} workers ({s.running_workers} running), "
            line += f"{threads} thread{'s' if threads != 1 else ''} each"
            if s.native_threads:
                line += f", {s.native_threads.value} native (BLAS/OpenMP) threads"
            if s.preload is not None:
                line += f", preload {'on' if s.preload else 'off'}"
            con.print(line, soft_wrap=True)
            con.print(f"      [dim]{escape(' '.join(s.command.split())[:100])}[/]", soft_wrap=True)  # `python -c` code has newlines
            if s.kind != "python":
                con.print(f"      workers: {escape(s.workers.provenance)}", soft_wrap=True)
            if s.native_threads:
                con.print(f"      native threads: {escape(s.native_threads.explanation)}", soft_wrap=True)
            m = s.memory
            if m is not None:
                if m.worker_uss_median is not None:
                    con.print(f"      memory: master USS {human_bytes(m.master_uss)}, worker USS median "
                              f"{human_bytes(m.worker_uss_median)} max {human_bytes(m.worker_uss_max)}, shared "
                              f"{human_bytes(m.shared)} → {human_bytes(m.projected)} at {s.workers.value} workers "
                              f"({human_bytes(m.projected_worst)} with the largest)", soft_wrap=True)
                else:
                    con.print(f"      memory: USS {human_bytes(m.master_uss)}, shared {human_bytes(m.shared)}",
                              soft_wrap=True)
            if s.recommended_workers is not None:
                con.print(f"      fits: [bold]{s.recommended_workers}[/] worker{'' if s.recommended_workers == 1 else 's'} — {escape(s.recommendation_formula)}",
                          soft_wrap=True)
    if r.oom.victim_pid is not None:
        con.print(f"[bold]OOM[/]: {escape(r.oom.explanation)}", soft_wrap=True)

    con.print()
    if r.findings:
        con.print("[bold]Findings[/]")
        for f in r.findings:
            con.print(f"  {_SEV[f.severity]} {escape(f.title)}: {escape(f.detail)}", soft_wrap=True)
            if f.formula:
                con.print(f"       [dim]{escape(f.formula)}[/]", soft_wrap=True)
    else:
        con.print("[green]No findings.[/]")
    if r.recommendations:
        con.print("[bold]Recommendations[/]")
        for rec in r.recommendations:
            con.print(f"  [bold]{escape(rec.setting)}[/]  [dim]{escape(rec.applies_to)}[/]", soft_wrap=True)
            con.print(f"       {escape(rec.formula)} — {escape(rec.reason)}", soft_wrap=True)
    for w in r.warnings:
        con.print(f"[yellow]note:[/] {escape(w)}", soft_wrap=True)
    return Group(*con.parts)
