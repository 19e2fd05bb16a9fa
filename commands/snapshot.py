"""`obskit snapshot`: one archive with the whole incident (doctor, ps, stacks, profile, memory,
GC, quota, logs, environment) — and `obskit snapshot show ARCHIVE`.

The engine (`obskit/snapshot`) knows no feature package: the sections are built here, each a
closure calling a collector in-process, and handed to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, emit, finite

if TYPE_CHECKING:
    from obskit.snapshot.model import TargetInfo
    from obskit.snapshot.runner import Context, Section, SectionOutput

STACKS_INTERVAL = 3.0  # seconds between the two stack dumps
QUOTA_WINDOW = 3.0
BUDGET_EXTRA = 45.0  # seconds on top of -d for everything else


def register(app: typer.Typer) -> None:
    snap = typer.Typer(name="snapshot", invoke_without_command=True, no_args_is_help=False, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]})
    app.add_typer(snap, name="snapshot")

    @snap.callback()
    def snapshot_cmd(
        ctx: typer.Context,
        pid: PidOpt = None,
        duration: Annotated[float, typer.Option("--duration", "-d", min=1, max=600, callback=finite,
                                                help="Seconds of CPU profile (all workers).")] = 10.0,
        output: Annotated[Optional[str], typer.Option("--output", "-o", help="Archive to write (.tar.gz; default "
                                                      "snapshot-<UTC time>.tar.gz).", show_default=False)] = None,
        logs: Annotated[Optional[list[str]], typer.Option("--logs", help="Also the tail of these files (glob, as the "
                                                          "target sees its filesystem). Repeatable.",
                                                          show_default=False)] = None,
        budget: Annotated[Optional[float], typer.Option("--budget", min=5, max=3600, callback=finite,
                                                        help="Wall-clock budget in seconds (default: -d + 45).",
                                                        show_default=False)] = None,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """One archive with the whole incident: stacks, profile, memory, GC, quota, logs (for kubectl debug).

        Doctor, ps tree, two stack dumps, a CPU profile of -d (all workers), memory per process, GC
        (with an agent), quota findings, log tails, redacted environment.  Without --pid: every Python process visible (masters with their workers). Sections that
        cannot run (no ptrace, no agent, little memory) are listed with the reason; the archive is
        still written (exit 0).  `obskit snapshot show ARCHIVE` prints its verdicts.
        """
        if ctx.invoked_subcommand is not None:
            return
        _snapshot(pid=pid, duration=duration, output=output, logs=list(logs or []), budget=budget, as_json=as_json,
                  proc_root=proc_root)

    @snap.command("show")
    def show_cmd(
        archive: Annotated[str, typer.Argument(help="An archive `obskit snapshot` wrote.")],
        as_json: JsonOpt = False,
    ) -> None:
        """Print an archive's verdicts, hints and sections (its index.json with --json)."""
        from obskit.snapshot.archive import read_index

        index, _ = read_index(archive)
        if as_json:
            import json
            import sys

            sys.stdout.write(json.dumps(index, indent=2, ensure_ascii=False) + "\n")
            return
        from obskit.output import console
        from obskit.snapshot.render import render

        console().print(render(index, archive), crop=False)


def _snapshot(*, pid: int | None, duration: float, output: str | None, logs: list[str], budget: float | None,
              as_json: bool, proc_root: str) -> None:
    import time

    from obskit import __version__
    from obskit.output import info
    from obskit.proc import ProcFS
    from obskit.safefile import preflight
    from obskit.selftrace import span
    from obskit.snapshot.archive import build
    from obskit.snapshot.headroom import assess
    from obskit.snapshot.runner import Context, run
    from obskit.state import write_or_keep

    path = output or time.strftime("snapshot-%Y%m%dT%H%M%SZ.tar.gz", time.gmtime())
    preflight(path)
    targets = discover(pid, proc_root)
    fs = ProcFS(proc_root)
    processes = sum(1 + len(t.workers) for t in targets)
    ctx = Context(targets=targets, duration=duration, proc_root=proc_root, log_globs=logs)
    ctx.deadline = time.monotonic() + (budget if budget is not None else duration + BUDGET_EXTRA)
    ctx.headroom = assess(fs, targets[0].pid, processes)
    ctx.ptrace_error = _ptrace_error(proc_root)
    if not as_json:
        info(f"snapshot of {', '.join(f'{t.role} {t.pid}' for t in targets)} ({processes} processes), "
             f"profile {duration:g}s; memory: {ctx.headroom.plan} ({ctx.headroom.reason})")
    with span("obskit.snapshot", targets=len(targets), duration=duration) as s, _stop_on_signals(ctx):
        result = run(ctx, sections(), version=__version__,
                     on_progress=None if as_json else (lambda title: info(f"{title}…")))
        s.set_attribute("obskit.sections", len(result.index.sections))
    data = build(result)
    write_or_keep(path, data)
    if not as_json:
        import os

        from obskit.output import to_jsonable

        info(f"wrote {path} ({len(data) / 1024:.0f} KiB); copy it out with `kubectl cp POD:{os.path.abspath(path)} "
             f"{os.path.basename(path)} -c DEBUG-CONTAINER`")
        emit(to_jsonable(result.index), False, lambda idx: _render(idx, path))
    else:
        emit(result.index, True)


def _render(index: dict[str, Any], path: str) -> Any:
    from obskit.snapshot.render import render

    return render(index, path)


class _stop_on_signals:
    """The first Ctrl-C/SIGTERM/SIGHUP sets ``ctx.stop`` (recorders stop, the archive is written);
    a second one raises KeyboardInterrupt in the section running."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.old: dict[int, Any] = {}

    def __enter__(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, frame: object) -> None:
            if self.ctx.stop.is_set():
                raise KeyboardInterrupt
            self.ctx.stop.set()

        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.old[s] = signal.signal(s, on_signal)

    def __exit__(self, *exc: object) -> None:
        import signal

        for s, h in self.old.items():
            signal.signal(s, h)


def _ptrace_error(proc_root: str) -> Any:
    from obskit.attach import attach_failure

    return lambda pid: attach_failure(pid, proc_root=proc_root)


# -- targets ---------------------------------------------------------------------------------------


def _is_obskit(argv: list[str]) -> bool:
    import os

    head = argv[:3]
    return any(os.path.basename(a) in ("obskit", "py-spy") for a in head) or any(
        a == "-m" and i + 1 < len(argv) and argv[i + 1].split(".")[0] == "obskit" for i, a in enumerate(argv[:4]))


def discover(pid: int | None, proc_root: str) -> list[TargetInfo]:
    """The processes to snapshot: --pid (a wrapper such as tini is followed), or every Python
    process visible whose parent is not Python (a master with its workers), obskit excluded."""
    from obskit.errors import TargetNotFound
    from obskit.proc import ProcFS
    from obskit.ps import collect
    from obskit.redact import redact_argv
    from obskit.snapshot.model import TargetInfo

    from ._common import follow_target

    fs = ProcFS(proc_root)
    if pid is not None:
        if pid <= 0 or not fs.exists(pid):
            raise TargetNotFound(f"process {pid} not found", "list the Python processes with `obskit ps`", pid=pid)
        if fs.is_zombie(pid):
            raise fs.zombie_error(pid)
        roots = [follow_target(pid, proc_root, "snapshot").pid]
        if not fs.facts(roots[0]).is_python:
            from obskit.errors import TargetNotPython

            raise TargetNotPython(f"process {pid} runs no Python (nor does any process below it)",
                                  "list the Python processes with `obskit ps`", pid=pid)
        report = collect(include_all=True, interval=0, procfs=fs, pid_filter=roots)
    else:
        report = collect(include_all=False, interval=0, procfs=fs)
        listed = {e.pid for e in report.processes}
        mine = {e.pid for e in report.processes if _is_obskit(_argv(fs, e.pid))}
        roots = [e.pid for e in report.processes if e.ppid not in listed and e.pid not in mine]
        if not roots:
            raise TargetNotFound("no Python process is visible here",
                                 "give --pid; in a debug container the target's PID namespace must be shared "
                                 "(`kubectl debug --target=CONTAINER`, docker --pid=container:NAME)")
    by_pid = {e.pid: e for e in report.processes}
    out: list[TargetInfo] = []
    for r in roots:
        e = by_pid.get(r)
        workers = sorted(p for p in _descendants(report, r) if by_pid[p].is_python)
        out.append(TargetInfo(r, e.role if e else "python", " ".join(redact_argv(_argv(fs, r))),
                              e.uid if e else None, workers))
    return out


def _argv(fs: Any, pid: int) -> list[str]:
    from obskit.errors import ObskitError

    try:
        return list(fs.cmdline(pid))
    except ObskitError:
        return []


def _descendants(report: Any, pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for e in report.processes:
        kids.setdefault(e.ppid, []).append(e.pid)
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


# -- sections --------------------------------------------------------------------------------------


def sections() -> list[Section]:
    from obskit.snapshot.runner import Section

    return [
        Section("doctor", "doctor: can obskit attach here", doctor_section),
        Section("ps", "ps: process tree", ps_section),
        Section("env", "command lines and environment (redacted)", env_section),
        Section("logs", "log files the targets hold open", logs_section),
        Section("mem", "memory per process", mem_section),
        Section("gc", "GC statistics (agent)", gc_section),
        Section("quota", "CPU and memory quota", quota_section, min_seconds=2),
        Section("stacks", "stacks: two dumps", stacks_section, needs_ptrace=True, min_seconds=STACKS_INTERVAL + 2),
        Section("profile", "CPU profile", profile_section, needs_ptrace=True, min_seconds=3),
        Section("mem-trend", "memory trend", mem_trend_section),
    ]


def _per_target(ctx: Context, fn: Any) -> SectionOutput:
    """Run ``fn(target) -> {file: payload}`` for every target; one failing target makes the section partial."""
    from obskit.errors import ObskitError
    from obskit.snapshot.runner import SectionOutput

    out = SectionOutput()
    errors: list[ObskitError] = []
    for t in ctx.targets:
        if ctx.stop.is_set():
            break
        try:
            out.files.update(fn(t))
        except ObskitError as e:  # one target's failure must not cost the others
            errors.append(e)
            out.notes.append(f"{t.pid}: {e.message}" + (f" ({e.hint})" if e.hint else ""))
    if errors and not out.files:
        raise errors[0]
    if errors:
        out.partial = "; ".join(out.notes)
    return out


def doctor_section(ctx: Context) -> SectionOutput:
    from obskit.doctor import DoctorContext, run_checks

    def one(t: TargetInfo) -> dict[str, Any]:
        return {f"doctor{ctx.suffix(t.pid)}.json": run_checks(DoctorContext(pid=t.pid, proc_root=ctx.proc_root))}

    return _per_target(ctx, one)


def ps_section(ctx: Context) -> SectionOutput:
    from obskit.ps import collect
    from obskit.snapshot.runner import SectionOutput

    report = collect(include_all=False, interval=0.5, procfs=ctx.procfs, pid_filter=[t.pid for t in ctx.targets])
    return SectionOutput({"ps.json": report})


def env_section(ctx: Context) -> SectionOutput:
    from obskit.snapshot.collect import environment
    from obskit.snapshot.runner import SectionOutput

    pids = [p for t in ctx.targets for p in (t.pid, *t.workers)]
    report = environment(ctx.procfs, pids, environ_of={t.pid for t in ctx.targets})
    out = SectionOutput({"env.json": report})
    bad = [f"{p.pid}: {p.unreadable}" for p in report.processes if p.unreadable]
    if bad:
        out.partial = "environment unreadable: " + "; ".join(bad)
    return out


def logs_section(ctx: Context) -> SectionOutput:
    import glob
    import os

    from obskit.errors import ObskitError
    from obskit.logs.sources import pid_sources
    from obskit.snapshot.collect import TOTAL_BYTES, file_key, tail
    from obskit.snapshot.model import STDOUT_NOTE, LogSource, LogsReport
    from obskit.snapshot.runner import SectionOutput, Skipped

    root = ctx.proc_root
    candidates: list[tuple[int, str, str]] = []  # (pid, path as the target sees it, path to read)
    notes: list[str] = []
    refused: list[str] = []
    for t in ctx.targets:
        for p in (t.pid, *t.workers):
            try:
                found = pid_sources(p, root)
            except ObskitError as e:
                if p == t.pid:
                    refused.append(f"{p}: {e.message}")
                continue
            notes += [n for n in found.notes if n not in notes]
            for spec in found.specs:
                seen_as = spec.note or spec.path or ""
                through_root = os.path.join(root, str(p), "root", seen_as.lstrip("/"))
                # Read through the target's root: a debug container's own /var/log is not the target's.
                via = through_root if seen_as.startswith("/") and os.path.exists(through_root) else (spec.path or "")
                candidates.append((p, seen_as, via))
        for pattern in ctx.log_globs:
            base = os.path.join(root, str(t.pid), "root")
            hits = sorted(glob.glob(os.path.join(base, pattern.lstrip("/"))))[:50]
            if not hits:
                notes.append(f"--logs {pattern}: no file matches in the filesystem of {t.pid}")
            candidates += [(t.pid, "/" + os.path.relpath(h, base), h) for h in hits]
    sources: list[LogSource] = []
    files: dict[str, Any] = {}
    seen: set[tuple[int, int]] = set()
    total = 0
    for pid, seen_as, via in candidates:
        key = file_key(via)
        if key is None:
            if via and os.path.exists(via):
                notes.append(f"{seen_as}: not a regular file, not read (pipes, sockets and ttys belong to `kubectl logs`)")
            continue
        if key in seen:
            continue
        seen.add(key)
        if os.path.getsize(via) == 0:
            continue  # an empty file held open (gunicorn's worker heartbeat files): nothing to read
        if total >= TOTAL_BYTES:
            notes.append(f"{seen_as}: not read, {TOTAL_BYTES >> 20} MiB of log tails already")
            continue
        try:
            text, size, n, truncated = tail(via)
        except (OSError, ValueError) as e:
            notes.append(f"{seen_as}: {getattr(e, 'strerror', None) or e}")
            continue
        total += len(text)
        member = _unique(f"logs/{pid}-{os.path.basename(seen_as) or 'log'}", files)
        files[member] = text
        sources.append(LogSource(pid, seen_as, via, member, size, n, text.count(b"\n"), truncated))
    notes.append(STDOUT_NOTE)
    if not sources:
        if refused:
            from obskit.errors import PermissionDenied

            raise PermissionDenied("log files not readable: " + "; ".join(refused), "")
        raise Skipped("the targets hold no regular log file open (stdout/stderr go to the container runtime)",
                      "read them with `kubectl logs POD -c CONTAINER`; add --logs GLOB for files the service "
                      "opens only now and then")
    from obskit.snapshot.collect import TAIL_BYTES, TAIL_LINES

    files["logs.json"] = LogsReport(sources, notes, TAIL_BYTES, TAIL_LINES)
    out = SectionOutput(files, notes)
    if refused:
        out.partial = "; ".join(refused)
    return out


def _unique(name: str, files: dict[str, Any]) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9._/-]", "_", name)
    if not name.endswith(".log"):
        name += ".log"
    base, i = name, 1
    while name in files:
        i += 1
        name = base[:-4] + f"-{i}.log"
    return name


def mem_section(ctx: Context) -> SectionOutput:
    import time

    from obskit.mem.collect import python_memory, snapshot

    def one(t: TargetInfo) -> dict[str, Any]:
        report = snapshot(t.pid, subprocesses=True, proc_root=ctx.proc_root, detail=ctx.plan != "minimal")
        if _has_agent(t.pid, ctx.proc_root):
            report.python = python_memory(t.pid, proc_root=ctx.proc_root)
        if ctx.plan == "minimal":
            report.notes.append("no per-mapping breakdown: the pod has little memory left (see the headroom)")
        ctx.shared.setdefault("mem-before", {})[t.pid] = (time.monotonic(), report.total.pss, report.total.rss)
        return {f"mem{ctx.suffix(t.pid)}.json": report}

    return _per_target(ctx, one)


def _has_agent(pid: int, proc_root: str) -> bool:
    from obskit.agent.client import find_socket

    try:
        return find_socket(pid, proc_root=proc_root) is not None
    except Exception:  # an unreadable /proc entry is "no agent"
        return False


def gc_section(ctx: Context) -> SectionOutput:
    from obskit.agent.client import connect
    from obskit.errors import ObskitError
    from obskit.mem import gcview
    from obskit.snapshot.runner import SectionOutput, Skipped

    out = SectionOutput()
    for t in ctx.targets:
        for p in (t.pid, *t.workers):
            if ctx.stop.is_set() or not _has_agent(p, ctx.proc_root):
                continue
            try:
                out.files[f"gc-{p}.json"] = gcview.collect(connect(p, proc_root=ctx.proc_root, timeout=5.0))
            except ObskitError as e:
                out.notes.append(f"{p}: {e.message}")
    if not out.files:
        raise Skipped("no obskit agent in the target processes" + (f" ({'; '.join(out.notes)})" if out.notes else ""),
                      "start the service with `obskit run -- CMD` or OBSKIT_AGENT=1 (docs/gc.md)")
    if out.notes:
        out.partial = "; ".join(out.notes)
    return out


def quota_section(ctx: Context) -> SectionOutput:
    from obskit.errors import ObskitError
    from obskit.quota.collect import collect
    from obskit.snapshot.runner import SectionOutput

    window = max(1.0, min(QUOTA_WINDOW, ctx.duration))
    seen: set[str] = set()
    out = SectionOutput()
    errors: list[ObskitError] = []
    for t in ctx.targets:
        try:
            cg = ctx.procfs.read_text(t.pid, "cgroup")
        except ObskitError as e:
            errors.append(e)
            continue
        if cg in seen:
            continue  # the same container: one report
        seen.add(cg)
        try:
            report = collect(t.pid, window, sleep=ctx.sleep, procfs=ctx.procfs)
        except PermissionError as e:
            from obskit.errors import PermissionDenied
            from obskit.snapshot.model import PTRACE_FIX

            err = PermissionDenied(f"cannot read the target's cgroup files ({e.filename}: permission denied)",
                                   PTRACE_FIX)
            errors.append(err)
            out.notes.append(f"{t.pid}: {err.message}")
            continue
        except ObskitError as e:
            errors.append(e)
            out.notes.append(f"{t.pid}: {e.message}")
            continue
        out.files[f"quota{ctx.suffix(t.pid)}.json"] = report
    if errors and not out.files:
        raise errors[0]
    if errors:
        out.partial = "; ".join(e.message for e in errors)
    return out


def stacks_section(ctx: Context) -> SectionOutput:
    from obskit.snapshot.runner import Skipped
    from obskit.stacks.dump import collect

    if ctx.plan == "minimal":
        assert ctx.headroom is not None
        raise Skipped(f"not taken to spare the pod's memory: {ctx.headroom.reason}", "")

    def one(t: TargetInfo) -> dict[str, Any]:
        report = collect(t.pid, subprocesses=True, count=2, interval=STACKS_INTERVAL, procfs=ctx.procfs)
        return {f"stacks{ctx.suffix(t.pid)}.json": report}

    return _per_target(ctx, one)


def profile_section(ctx: Context) -> SectionOutput:
    import threading

    from obskit.errors import ObskitError
    from obskit.snapshot.runner import SectionOutput, Skipped

    if ctx.plan == "minimal":
        assert ctx.headroom is not None
        raise Skipped(f"not recorded to spare the pod's memory: {ctx.headroom.reason}", "")
    duration = max(1.0, min(ctx.duration, ctx.remaining() - 10))
    out = SectionOutput()
    results: dict[int, Any] = {}
    lock = threading.Lock()

    def one(t: TargetInfo) -> None:
        from obskit.profile.sampler import SamplerConfig, record

        pid, sub = t.pid, True
        if ctx.plan == "shrink" and t.workers:
            pid, sub = _busiest(ctx, t.workers), False
            with lock:
                out.notes.append(f"memory headroom: profiled worker {pid} alone instead of {t.pid} and its workers")
        try:
            rec = record(pid, SamplerConfig(subprocesses=sub, proc_root=ctx.proc_root), duration=duration,
                         stop_event=ctx.stop, on_warning=lambda m: _note(out, lock, f"{pid}: {m}"))
            results[t.pid] = rec.profile
        except ObskitError as e:
            results[t.pid] = e

    # One recorder per target at once: the archive's profiles cover the same seconds.
    threads = [threading.Thread(target=one, args=(t,), name=f"obskit-snapshot-{t.pid}", daemon=True)
               for t in ctx.targets]
    for th in threads:
        th.start()
    for th in threads:
        while th.is_alive():
            th.join(0.2)
    errors = [r for r in results.values() if isinstance(r, ObskitError)]
    for pid, prof in results.items():
        if isinstance(prof, ObskitError):
            out.notes.append(f"{pid}: {prof.message}")
            continue
        out.files.update(_profile_files(prof, ctx.suffix(pid)))
    if errors and not out.files:
        raise errors[0]
    if errors:
        out.partial = "; ".join(e.message for e in errors)
    return out


def _note(out: SectionOutput, lock: Any, text: str) -> None:
    with lock:
        out.notes.append(text)


def _busiest(ctx: Context, pids: list[int]) -> int:
    from obskit.ps import cpu_percents

    cpu = cpu_percents(ctx.procfs, pids, 0.5)
    return max(pids, key=lambda p: cpu.get(p, 0.0))


def _profile_files(prof: Any, suffix: str) -> dict[str, Any]:
    from obskit.profile.console import report
    from obskit.profile.html import render_html
    from obskit.snapshot.runner import redact_command

    # The flame graph page is bytes the archive does not scrub: redact the command lines first.
    for p in prof.processes:
        p.cmdline = redact_command(p.cmdline)
    prof.metadata.target_cmdline = redact_command(prof.metadata.target_cmdline)
    return {
        f"profile{suffix}.json": prof.to_dict(),
        f"profile-report{suffix}.json": report(prof, top=25, per_process=True),
        f"profile{suffix}.html": render_html(prof),
    }


def mem_trend_section(ctx: Context) -> SectionOutput:
    import time

    from obskit.mem.collect import snapshot
    from obskit.snapshot.model import MemTrend
    from obskit.snapshot.runner import Skipped

    before = ctx.shared.get("mem-before") or {}
    if not before:
        raise Skipped("no first memory reading (the memory section did not run)", "")

    def one(t: TargetInfo) -> dict[str, Any]:
        if t.pid not in before:
            return {}
        t0, pss0, rss0 = before[t.pid]
        after = snapshot(t.pid, subprocesses=True, proc_root=ctx.proc_root, detail=False)
        return {f"mem-trend{ctx.suffix(t.pid)}.json": MemTrend(
            round(time.monotonic() - t0, 2), len(after.processes), pss0, after.total.pss,
            after.total.pss - pss0, rss0, after.total.rss)}

    return _per_target(ctx, one)
