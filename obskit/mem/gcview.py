"""`obskit gc` work: collect the summary, stream collections, render them for people."""

from __future__ import annotations

import errno
import sys
import time

from obskit.agent.client import AgentClient
from obskit.errors import ObskitError, TargetExited
from obskit.mem.gcstats import GCSummary, events_from, summarize
from obskit.output import dumps, mark_result_shown

POLL_S = 0.2


def collect(client: AgentClient, *, duration: float | None = None) -> GCSummary:
    hello = client.request("hello")
    first = client.request("gc")
    if not duration:
        return summarize(client.pid, hello, first)
    client.wait(duration)
    try:
        now = client.request("gc")
    except TargetExited:
        _note(f"process {client.pid} exited during the window: the numbers are since the agent started")
        return summarize(client.pid, hello, first)
    # Window maxima come from the ring of recent collections (the cumulative maxima are lifetime ones).
    events = events_from(client.request("events", since=int(first["seq"])))
    complete = bool(events) and events[0].seq == int(first["seq"]) + 1 and events[-1].seq >= int(now["seq"])
    return summarize(client.pid, hello, now, first, events if complete else None)


def trace(client: AgentClient, *, duration: float | None = None, as_json: bool = False) -> int:
    """Print each collection as it happens until Ctrl-C, --duration or the target exits; returns lines printed."""
    since = int(client.request("gc")["seq"])
    deadline = time.monotonic() + duration if duration else None
    printed = 0
    out = sys.stdout
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                reply = client.request("events", since=since)
            except TargetExited:
                if printed == 0 and deadline is None:
                    raise
                _note(f"process {client.pid} exited")
                break
            if reply.get("dropped"):
                _note(f"{reply['dropped']} collections not shown (faster than this poll; the summary counts them)")
            for ev in events_from(reply):
                out.write((dumps(ev, indent=None) if as_json else ev.line()) + "\n")
                printed += 1
                mark_result_shown()  # from now on a signal ends the trace, wherever it lands
                since = max(since, ev.seq)
            since = max(since, int(reply.get("seq", since)) if not reply.get("events") else since)
            out.flush()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        pass
    except ObskitError:
        if printed == 0:
            raise
    except OSError as e:
        # The terminal hung up (EIO) or the reader closed the pipe: the lines printed are the result.
        if printed == 0 or e.errno not in (errno.EIO, errno.EPIPE):
            raise
    return printed


def _note(text: str) -> None:
    from obskit.output import info

    info(text)


def render(s: GCSummary) -> None:
    from rich.table import Table

    from obskit.output import console, escape, human_seconds

    con = console()
    frozen = "?" if s.frozen is None else str(s.frozen)
    span = s.window if s.window.startswith("last") else f"{s.window}: {human_seconds(s.window_s)}"
    con.print(
        f"[bold]GC of pid {s.pid}[/] (Python {escape(s.python)}, {span}) "
        f"enabled={'yes' if s.enabled else '[red]no[/]'} thresholds={tuple(s.thresholds)} frozen={frozen}"
    )
    t = Table(box=None, pad_edge=False)
    wide = con.width >= 90
    cols = {"gen": 3, "runs": 7, "/min": 8, "pause": 8, "max": 8, "mean": 7, "collected": 9, "uncoll.": 7, "count/thr": 9}
    if not wide:
        del cols["mean"]
    for col, width in cols.items():
        t.add_column(col, justify="right", no_wrap=True, min_width=width)
    for g in s.generations:
        row = [
            str(g.generation),
            str(g.collections),
            f"{g.per_minute:.1f}",
            human_seconds(g.pause_total_s),
            human_seconds(g.pause_max_s),
            *([human_seconds(g.pause_mean_s)] if wide else []),
            str(g.collected),
            str(g.uncollectable),
            f"{g.count}/{g.threshold}",
        ]
        t.add_row(*row)
    con.print(t)
    share_style = "red" if s.pause_share >= 0.02 else "green"
    con.print(
        f"pauses: total {human_seconds(s.pause_total_s)}, max {human_seconds(s.pause_max_s)}, "
        f"[{share_style}]{s.pause_share:.2%} of wall time[/]; uncollectable {s.uncollectable}"
    )
    for a in s.advice:
        con.print(f"[yellow]advice:[/] {escape(a)}")


