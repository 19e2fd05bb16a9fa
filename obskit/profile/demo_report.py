"""What `obskit demo` prints: the GIL profile, and beside it the threads that profile cannot show.

A GIL-only profile shows what burns CPU; threads waiting on a lock, on I/O or sleeping
never hold the GIL, so they are absent from it (and must not be counted as CPU).  The
demo therefore adds one stacks-style dump taken right after sampling: each thread that was
off CPU, its state and where it waited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.markup import escape

from obskit.inert import inert
from obskit.output import console
from obskit.profile.console import ProfileReport, print_report


@dataclass
class ThreadNote:
    """One thread of a stacks dump: its name, state (``waiting_lock``, ``sleeping`` ...) and where."""

    thread: str
    state: str
    state_label: str
    where: str


@dataclass
class DemoReport(ProfileReport):
    """The GIL profile of the demo service plus the threads off CPU at the end of sampling."""

    SCHEMA = "obskit.demo/1"

    off_cpu: list[ThreadNote] = field(default_factory=list)
    off_cpu_note: str = ""  # why the dump is missing, when it is


def print_demo(r: DemoReport, *, title: str = "Top functions of the demo service") -> None:
    from rich.table import Table

    print_report(r, title=f"{title}, threads holding the GIL")
    out = console()
    if r.off_cpu:
        t = Table(title=f"Threads off CPU, not in the profile above ({len(r.off_cpu)}, from a stacks dump)",
                  title_justify="left")
        t.add_column("thread", overflow="fold")
        t.add_column("state")
        t.add_column("waiting in", overflow="fold", style="dim")
        for n in r.off_cpu:
            t.add_row(escape(inert(n.thread)), escape(n.state_label), escape(inert(n.where)))
        out.print(t)
    elif r.off_cpu_note:
        out.print(f"[yellow]note:[/] {escape(r.off_cpu_note)}")
