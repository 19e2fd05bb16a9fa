"""`obskit top`: sampled top functions beside process stats and the container's CPU throttling.

A :class:`TopSession` drives the shared :class:`obskit.profile.sampler.LiveSampler`
(which applies the safe-by-default sampling policy) and reads process stats (through
:class:`~obskit.proc.ProcFS`) and the ``cpu.stat`` of the cgroup level whose quota binds
(:mod:`obskit.cgroups`, as `obskit quota` does) at the same instants, so each
:class:`TopWindow` pairs "where the time went" with "how much CPU the process got and how
often it was throttled".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from obskit import cgroups
from obskit.errors import ObskitError, PermissionDenied, TargetExited, TargetNotFound
from obskit.proc import ProcFS

if TYPE_CHECKING:
    from rich.console import RenderableType


@dataclass
class TopFunction:
    name: str
    file: str
    line: int
    self_share: float  # of the window's samples
    total_share: float
    self_samples: int
    total_samples: int


@dataclass
class ProcessStats:
    pid: int
    cpu_percent: float | None  # 100 = one core, over the window
    rss_bytes: int | None
    threads: int | None
    fds: int | None
    exited: bool = False


@dataclass
class CpuThrottle:
    """CFS bandwidth control over the window, counted at the cgroup level whose quota binds (only with a quota)."""

    cgroup_dir: str  # the binding level (may be a parent of the target's own cgroup)
    version: int
    quota_cpus: float
    periods: int  # enforcement periods elapsed in the window
    throttled_periods: int
    throttled_s: float
    throttled_ratio: float | None  # throttled_periods / periods


@dataclass
class TopWindow:
    SCHEMA = "obskit.top/1"

    pid: int
    subprocesses: bool
    started_at: float
    duration_s: float
    samples: int
    functions: list[TopFunction]
    processes: list[ProcessStats]
    cpu_percent: float | None  # all listed processes together
    rss_bytes: int | None
    throttle: CpuThrottle | None
    quota_note: str
    sampler: dict[str, Any] = field(default_factory=dict)
    target_exited: bool = False


class Sampler(Protocol):
    accounting: Any

    def start(self) -> None: ...
    def collect(self) -> Any: ...
    def stop(self) -> Any: ...


# -- the session --------------------------------------------------------------------------------------
class TopSession:
    def __init__(self, pid: int, *, subprocesses: bool = False, procfs: ProcFS | None = None,
                 sampler: Sampler | None = None, limit: int = 25,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.pid = pid
        self.subprocesses = subprocesses
        self.fs = procfs or ProcFS()
        self.limit = limit
        self._sampler = sampler
        self._on_warning = on_warning
        self._cpu_before: dict[int, float] = {}
        self._t_before = 0.0
        self._started_at = 0.0
        self._quota: cgroups.CpuQuota | None = None
        self._cg_note = "no cgroup cpu controller visible"
        try:
            located = cgroups.for_pid(self.fs, pid, controllers=("cpu",))
        except ObskitError:
            located = None
        if located is not None and located.get("cpu") is not None:
            self._quota = located.cpu_quota()
            self._cg_note = "no CPU quota on the target's cgroup or its parents"
        self._cg_before = cgroups.read_throttling(self._quota.level) if self._quota else None
        self.exited = False
        self.total: Any = None  # every window merged: the live view's cumulative columns

    def cumulative_functions(self) -> list[TopFunction]:
        if self.total is None:
            return []
        return [TopFunction(f.name, f.file, f.line, round(f.self_share, 4), round(f.total_share, 4), f.self_count,
                            f.total_count) for f in self.total.top_functions(None)]

    def start(self) -> None:
        if self._sampler is None:
            from obskit.profile.sampler import LiveSampler, SamplerConfig

            self._sampler = LiveSampler(self.pid, SamplerConfig(subprocesses=self.subprocesses,
                                                                proc_root=str(self.fs.root)),
                                        on_warning=self._on_warning)
        self._started_at = time.time()
        self._prime_stats()
        self._sampler.start()

    def window(self) -> TopWindow:
        """Everything since the previous window (or since start)."""
        assert self._sampler is not None
        return self._build(self._samples(self._sampler.collect))

    def stop(self) -> TopWindow:
        assert self._sampler is not None
        return self._build(self._samples(self._sampler.stop))

    def _samples(self, take: Callable[[], Any]) -> Any:
        """What ``take`` returns; None once the target has exited."""
        try:
            return take()
        except TargetExited:
            self.exited = True
            return None

    def poll_exit(self) -> bool:
        if not self.fs.exists(self.pid):
            self.exited = True
        return self.exited

    def sampler_accounting(self) -> dict[str, Any]:
        from obskit.output import to_jsonable

        acc = getattr(self._sampler, "accounting", None)
        out = to_jsonable(acc) if acc is not None else {}
        return out if isinstance(out, dict) else {"accounting": out}

    # -- internals ---------------------------------------------------------------------------------
    def _pids(self) -> list[int]:
        pids = [self.pid]
        if self.subprocesses:
            try:
                pids += self.fs.descendants(self.pid)
            except ObskitError:
                pass
        return pids

    def _prime_stats(self) -> None:
        self._t_before = time.monotonic()
        self._cpu_before.update(self.fs.cpu_seconds_of(self._pids()))

    def _stats(self) -> tuple[list[ProcessStats], float]:
        now = time.monotonic()
        elapsed = max(now - self._t_before, 1e-6)
        out: list[ProcessStats] = []
        pids = self._pids()
        for pid in pids:
            try:
                if self.fs.is_zombie(pid):
                    raise TargetNotFound(f"process {pid} exited", "", pid=pid)
                cpu_now = self.fs.cpu_seconds(pid)
                status = self.fs.status(pid)
            except (TargetNotFound, TargetExited):
                out.append(ProcessStats(pid, None, None, None, None, exited=True))
                if pid == self.pid:
                    self.exited = True
                continue
            except (PermissionDenied, ObskitError):
                continue
            before = self._cpu_before.get(pid)
            cpu = round(max(0.0, (cpu_now - before) / elapsed * 100), 1) if before is not None else None
            self._cpu_before[pid] = cpu_now
            rss = status.get("VmRSS")
            threads = status.get("Threads")
            out.append(ProcessStats(pid, cpu, int(rss.split()[0]) * 1024 if rss else None,
                                    int(threads) if threads and threads.isdigit() else None, self.fs.fd_count(pid)))
        self._t_before = now
        for gone in set(self._cpu_before) - set(pids):
            self._cpu_before.pop(gone, None)
        return out, elapsed

    def _throttle(self) -> tuple[CpuThrottle | None, str]:
        q = self._quota
        if q is None:
            return None, self._cg_note
        now = cgroups.read_throttling(q.level)
        before, self._cg_before = self._cg_before, now
        if now is None or before is None:
            return None, f"{q.level}/cpu.stat not readable"
        d = now.since(before)
        return (
            CpuThrottle(q.level, q.version, round(q.limit, 3), d.periods, d.throttled, round(d.throttled_s, 4),
                        round(d.ratio, 3) if d.ratio is not None else None),
            f"quota {q.limit:g} CPUs",
        )

    def _build(self, profile: Any) -> TopWindow:
        if getattr(self._sampler, "end_reason", "") == "target-exited":
            self.exited = True
        stats, elapsed = self._stats()
        throttle, note = self._throttle()
        functions: list[TopFunction] = []
        samples = 0
        if profile is not None:
            if self.total is None:
                from obskit.profile.model import Profile

                self.total = Profile()
            self.total.merge(profile)
            samples = int(profile.total_samples)
            functions = [TopFunction(f.name, f.file, f.line, round(f.self_share, 4), round(f.total_share, 4),
                                     f.self_count, f.total_count) for f in profile.top_functions(self.limit)]
        live = [s for s in stats if not s.exited]
        cpus = [s.cpu_percent for s in live if s.cpu_percent is not None]
        rss = [s.rss_bytes for s in live if s.rss_bytes is not None]
        started = self._started_at
        self._started_at = time.time()
        return TopWindow(
            pid=self.pid,
            subprocesses=self.subprocesses,
            started_at=started,
            duration_s=round(elapsed, 3),
            samples=samples,
            functions=functions,
            processes=stats,
            cpu_percent=round(sum(cpus), 1) if cpus else None,
            rss_bytes=sum(rss) if rss else None,
            throttle=throttle,
            quota_note=note,
            sampler=self.sampler_accounting(),
            target_exited=self.exited,
        )


# -- terminal views (rendered from the same TopWindow as --json) ------------------------------------
def _stats_line(w: TopWindow) -> str:
    from obskit.output import escape, human_bytes

    threads = sum(p.threads or 0 for p in w.processes if not p.exited)
    fds = [p.fds for p in w.processes if p.fds is not None]
    cpu = "-" if w.cpu_percent is None else f"{w.cpu_percent:.0f}%"
    parts = [f"CPU [bold]{cpu}[/]", f"RSS [bold]{human_bytes(w.rss_bytes)}[/]", f"threads [bold]{threads}[/]",
             f"fds [bold]{sum(fds) if fds else '-'}[/]"]
    if len(w.processes) > 1:
        parts.append(f"processes {sum(not p.exited for p in w.processes)}")
    t = w.throttle
    if t is not None:
        ratio = "-" if t.throttled_ratio is None else f"{t.throttled_ratio:.0%}"
        style = "bold red" if t.throttled_periods else "green"
        parts.append(f"throttled [{style}]{ratio}[/] of periods ({t.throttled_s:.2f}s; quota {t.quota_cpus:g} CPUs)")
    else:
        parts.append(f"[dim]{escape(w.quota_note)}[/]")
    return " · ".join(parts)


def _function_table(rows: list[tuple[TopFunction, TopFunction | None]], title: str) -> RenderableType:
    from rich.table import Table

    from obskit.output import escape

    table = Table(box=None, pad_edge=False, header_style="bold", title=title, title_justify="left", title_style="dim")
    table.add_column("%Own", justify="right")
    table.add_column("%Total", justify="right")
    table.add_column("Own", justify="right")
    table.add_column("Total", justify="right")
    # The function name identifies a row: it wraps (file:line goes to the next line) rather than being cut.
    table.add_column("Function (file:line)", overflow="fold", ratio=1)
    for f, cum in rows:
        own = cum.self_samples if cum is not None else f.self_samples
        tot = cum.total_samples if cum is not None else f.total_samples
        short = f.file.rsplit("/", 1)[-1] if f.file else ""
        table.add_row(f"{f.self_share:.1%}", f"{f.total_share:.1%}", str(own), str(tot),
                      f"{escape(f.name)} [dim]({escape(short)}:{f.line})[/]")
    return table


def render_live(pid: int, w: TopWindow | None, cumulative: list[TopFunction], command: str,
                limit: int) -> RenderableType:
    """The live view of the last window (None before the first): header, stats line, sampler line and
    the function table, shares of the window beside ``cumulative`` sample counts since the start."""
    from rich.console import Group
    from rich.text import Text

    from obskit.output import escape

    head = Text.from_markup(f"[bold]obskit top[/] · pid {pid} · {escape(_one_line(command))}  [dim](q quits)[/]")
    if w is None:
        return Group(head, Text("sampling…", style="dim"))
    cum = {(f.name, f.file): f for f in cumulative}
    rows = [(f, cum.get((f.name, f.file))) for f in w.functions[:limit]]
    acc = w.sampler
    rate = acc.get("effective_rate") or acc.get("rate")
    sampler = f"{w.samples} samples in {w.duration_s:.1f}s" + (f" · {rate:.0f} Hz" if isinstance(rate, (int, float)) else "")
    parts: list[Any] = [head, Text.from_markup(_stats_line(w)), Text(sampler, style="dim")]
    parts += [Text(f"sampler: {msg}", style="yellow") for msg in acc.get("warnings") or []]
    parts.append(_function_table(rows, "%Own/%Total: last second · Own/Total: samples since start"))
    return Group(*parts)


def render_window(w: TopWindow, command: str) -> RenderableType:
    """One window (`top --once`): header, stats line and the function table."""
    from rich.console import Group
    from rich.text import Text

    from obskit.output import escape

    return Group(
        Text.from_markup(f"[bold]obskit top[/] · pid {w.pid} · {escape(_one_line(command))}"),
        Text.from_markup(_stats_line(w)),
        Text(f"{w.samples} samples in {w.duration_s:.1f}s", style="dim"),
        _function_table([(f, None) for f in w.functions], "functions by own samples in the window"),
    )


def _one_line(command: str, limit: int = 100) -> str:
    """The command line on one line: `python -c` code has newlines that would break the header."""
    return " ".join(command.split())[:limit]
