"""`obskit ps`: List every Python process, as a tree of masters and workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ._common import JsonOpt, PidOpt, ProcRootOpt, emit, finite

if TYPE_CHECKING:
    from obskit.ps import PsReport


def register(app: typer.Typer) -> None:
    @app.command("ps")
    def ps_cmd(
        show_all: Annotated[bool, typer.Option("--all", "-a", help="Include processes that do not run Python.")] = False,
        pid: PidOpt = None,
        interval: Annotated[
            float, typer.Option("--interval", "-i", min=0.0, max=60.0, callback=finite, help="Seconds over which CPU % is measured (0: skip).")
        ] = 0.3,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """List every Python process, as a tree of masters and workers.

        Shows role (gunicorn/uvicorn/celery master or worker, multiprocessing child),
        the target's Python version (read from its binary, without attaching), CPU %,
        RSS, threads, uptime, container id and command line.  --pid limits the list
        to that process and its descendants.
        """
        from obskit.errors import Interrupted, TargetNotFound, TargetNotPython
        from obskit.proc import ProcFS
        from obskit.ps import collect
        from obskit.selftrace import span

        shown = _pids_for(pid, proc_root) if pid is not None else None
        with span("obskit.ps", all=show_all) as s:
            try:
                report = collect(include_all=show_all, interval=interval, procfs=ProcFS(proc_root), pid_filter=shown)
            except KeyboardInterrupt:
                # Typer turns a bare KeyboardInterrupt into a silent exit 130; say what happened.
                raise Interrupted("interrupted while measuring CPU %", "--interval 0 lists at once, without CPU %") from None
            s.set_attribute("obskit.processes", len(report.processes))
        if pid is not None and shown == [pid] and not any(e.pid == pid for e in report.processes):
            fs = ProcFS(proc_root)
            if not fs.exists(pid):
                raise TargetNotFound(f"process {pid} not found", "run `obskit ps` without --pid to list processes", pid=pid)
            if fs.is_zombie(pid):
                raise fs.zombie_error(pid)
            raise TargetNotPython(f"process {pid} does not run Python", "add --all to list every process", pid=pid)
        emit(report, as_json, render)


def _pids_for(pid: int, proc_root: str) -> list[int]:
    """--pid: that process, or the Python processes below a wrapper (tini, `sh -c`, ...), said in one line."""
    import os

    from obskit.errors import UsageError
    from obskit.output import info
    from obskit.targets import resolve

    if pid == os.getpid() and proc_root == "/proc":
        raise UsageError(f"process {pid} is this `obskit ps` itself", "give the PID of a service; `obskit ps` lists them",
                         pid=pid)
    res = resolve(pid, proc_root=proc_root)
    line = res.note() or res.below_line()
    if line:
        info(line)
    return [c.pid for c in res.candidates] or [res.pid]


def render(report: PsReport) -> None:
    from obskit.output import console, escape, human_bytes, human_seconds

    out = console()
    if not report.processes:
        what = "processes" if report.all else "Python processes"
        out.print(f"No {what} visible ({report.visible} processes in /proc). "
                  "From another container, share the PID namespace (`obskit doctor` explains how).")
        return
    containers = any(e.container_id for e in report.processes)
    headers = ["PID", "ROLE", "PY", "CPU%", "RSS", "THR", "UP", "USER"] + (["CONTAINER"] if containers else []) + ["COMMAND"]
    rows: list[list[str]] = []
    for e in report.processes:
        indent = "  " * (e.depth - 1) + "└─ " if e.depth else ""
        cells = [
            f"{indent}{e.pid}",
            "" if e.role == "plain" else e.role,
            e.python_version or ("?" if e.is_python else ""),
            "-" if e.cpu_percent is None else f"{e.cpu_percent:.1f}",
            human_bytes(e.rss_bytes),
            str(e.threads),
            human_seconds(e.uptime_s),
            e.user or (str(e.uid) if e.uid is not None else "-"),
        ]
        if containers:
            cells.append((e.container_id or "")[:12])
        cells.append(_short_command(e.command))
        rows.append(cells)
    # Plain columns: fixed fields keep their width, only the command line is cut to the terminal.
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    right = {"CPU%", "RSS", "THR", "UP"}

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if h in right else c.ljust(w) for c, w, h in zip(cells, widths, headers)]
        head = "  ".join(parts) + "  "
        room = max(20, out.width - len(head))
        cmd = cells[-1] if len(cells[-1]) <= room else cells[-1][: room - 1] + "…"
        return head + cmd

    out.print(f"[bold]{escape(line(headers))}[/]", soft_wrap=True)
    for r in rows:
        out.print(escape(line(r)), soft_wrap=True)
    shown = len(report.processes)
    note = f"{shown} shown; {report.python} Python of {report.visible} visible processes"
    if report.unreadable:
        note += f"; {report.unreadable} unreadable"
    out.print(f"[dim]{note}[/]")


def _short_command(command: str) -> str:
    """The command line on one line, argv[0] without its directory (the JSON keeps it whole)."""
    words = command.split()
    if words and words[0].startswith("/"):
        words[0] = words[0].rsplit("/", 1)[-1]
    return " ".join(words)
