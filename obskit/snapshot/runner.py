"""Run the sections within the time budget; record each one's outcome; build the index.

A section is a callable given the :class:`Context`; it returns a :class:`SectionOutput` (the
archive files it made, each a dataclass/dict written as JSON or bytes as they are) or raises:
:class:`Skipped` for a deliberate skip, an :class:`~obskit.errors.ObskitError` (its message and
hint are recorded) or any other exception (recorded as a failure, the rest goes on).  The first
Ctrl-C/SIGTERM/SIGHUP sets ``Context.stop``: the running section ends early with what it has
(recorders watch the event), the ones after it are not run, and the archive is still written.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from obskit.errors import ObskitError, PermissionDenied
from obskit.output import to_jsonable
from obskit.proc import ProcFS
from obskit.redact import redact_argv, redact_text

from .model import PTRACE_FIX, Accounting, Headroom, SectionRecord, SnapshotIndex, TargetInfo

MIB = 1 << 20


class Skipped(Exception):
    """A section that does not apply here, with the reason and what would make it apply."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


@dataclass
class SectionOutput:
    files: dict[str, Any] = field(default_factory=dict)  # archive name -> dataclass/dict (JSON) or bytes
    notes: list[str] = field(default_factory=list)
    partial: str = ""  # some targets/processes failed: why


@dataclass
class Context:
    targets: list[TargetInfo]
    duration: float
    proc_root: str = "/proc"
    log_globs: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    headroom: Headroom | None = None
    deadline: float = 0.0  # monotonic; sections not started by then are not run
    shared: dict[str, Any] = field(default_factory=dict)  # between sections (memory before/after)
    ptrace_error: Callable[[int], ObskitError | None] | None = None

    @property
    def procfs(self) -> ProcFS:
        return ProcFS(self.proc_root)

    @property
    def plan(self) -> str:
        return self.headroom.plan if self.headroom is not None else "full"

    def wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        return self.stop.wait(max(0.0, seconds))

    def sleep(self, seconds: float) -> None:
        """time.sleep that a stop ends early (for collectors that take a sleep function)."""
        self.stop.wait(max(0.0, seconds))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def suffix(self, pid: int) -> str:
        """``""`` for a single target, ``-PID`` with several (one file per target)."""
        return "" if len(self.targets) == 1 else f"-{pid}"


@dataclass
class Section:
    name: str
    title: str
    collect: Callable[[Context], SectionOutput]
    needs_ptrace: bool = False
    min_seconds: float = 0.0  # not started with less budget left than this


@dataclass
class Result:
    index: SnapshotIndex
    files: dict[str, bytes]  # archive name -> content (index.json and index.html added by the archive)


def _check_ptrace(ctx: Context) -> tuple[str, str] | None:
    """(reason, fix) when no target can be attached to, else None (per-target failures are the section's)."""
    if ctx.ptrace_error is None:
        return None
    errors = [ctx.ptrace_error(t.pid) for t in ctx.targets]
    if errors and all(e is not None for e in errors):
        e = errors[0]
        assert e is not None
        fix = e.hint if "ptrace" not in e.message.lower() and "CAP_SYS_PTRACE" not in e.hint else PTRACE_FIX
        return e.message, fix
    return None


def run(ctx: Context, sections: list[Section], *, on_progress: Callable[[str], None] | None = None,
        version: str = "") -> Result:
    started = time.monotonic()
    created = time.time()
    records: list[SectionRecord] = []
    files: dict[str, bytes] = {}
    schemas: dict[str, str] = {}
    ptrace_refused = _check_ptrace(ctx)
    thin = thin_reason(ctx)
    interrupted = False
    for sec in sections:
        rec = SectionRecord(sec.name, sec.title, "not-run")
        records.append(rec)
        if ctx.stop.is_set():
            rec.reason = "interrupted before it started (Ctrl-C, SIGTERM or SIGHUP)"
            interrupted = True
            continue
        if sec.min_seconds and ctx.remaining() < sec.min_seconds:
            rec.status, rec.reason = "skipped", f"time budget exhausted ({ctx.remaining():.0f}s left)"
            rec.fix = "give a longer budget with --budget"
            continue
        if sec.needs_ptrace and ptrace_refused is not None:
            rec.status, (rec.reason, rec.fix) = "skipped", ptrace_refused
            continue
        if on_progress is not None:
            on_progress(sec.title)
        t0 = time.monotonic()
        try:
            out = sec.collect(ctx)
        except Skipped as e:
            rec.status, rec.reason, rec.fix = "skipped", e.reason, e.fix
        except ObskitError as e:
            rec.status, rec.reason, rec.fix = "failed", e.message, e.hint
            if thin and isinstance(e, PermissionDenied):
                rec.fix = PTRACE_FIX  # root without CAP_SYS_PTRACE reading a non-root target
        except PermissionError as e:
            rec.status, rec.reason = "failed", f"{e.filename or 'a file'}: permission denied"
            rec.fix = PTRACE_FIX if thin else "run obskit as root (or the target's user)"
        except KeyboardInterrupt:
            # A second signal (the first only sets ctx.stop): give up this section, keep the rest.
            ctx.stop.set()
            rec.status, rec.reason = "interrupted", "interrupted (Ctrl-C, SIGTERM or SIGHUP)"
        except Exception as e:  # one broken section must not cost the archive
            rec.status, rec.reason = "failed", f"{type(e).__name__}: {e}"
            rec.fix = "a bug in obskit: re-run with --verbose and report it"
        else:
            rec.status = "partial" if out.partial else "ok"
            rec.reason = out.partial
            rec.notes = list(out.notes)
            for name, payload in out.files.items():
                files[name], schemas[name] = _encode(name, payload)
                rec.files.append(name)
            if ctx.stop.is_set() and rec.status == "ok":
                rec.status, rec.reason = "interrupted", "cut short by Ctrl-C, SIGTERM or SIGHUP; what it had is kept"
        if ctx.stop.is_set():
            interrupted = True
        rec.seconds = round(time.monotonic() - t0, 3)
    from .verdicts import compute

    docs = {name: _json_doc(data) for name, data in files.items() if name.endswith(".json") and len(data) < 64 * MIB}
    verdicts = compute(docs)
    hints: list[str] = []
    if ptrace_refused is not None or any(r.status in ("skipped", "failed") and "ptrace" in (r.reason + r.fix).lower()
                                         for r in records):
        hints.append(f"stacks and the CPU profile need ptrace: {PTRACE_FIX}")
    if thin:
        hints.append(thin)
    if any(r.name == "logs" and r.status in ("ok", "partial", "skipped") for r in records):
        from .model import STDOUT_NOTE

        hints.append(STDOUT_NOTE)
    acc = Accounting(
        elapsed_s=round(time.monotonic() - started, 3),
        budget_s=round(ctx.deadline - started, 3) if ctx.deadline else 0.0,
        peak_rss_bytes=_peak(resource.RUSAGE_SELF),
        peak_children_rss_bytes=_peak(resource.RUSAGE_CHILDREN),
        ptrace=ptrace_refused is None,
        headroom=ctx.headroom,
        skipped=[f"{r.name}: {r.reason}" for r in records if r.status not in ("ok",)],
        thin=thin,
    )
    index = SnapshotIndex(created, version, ctx.duration, ctx.targets, records, verdicts, acc, hints, interrupted,
                          schemas)
    return Result(index, files)


def _peak(who: int) -> int | None:
    try:
        return int(resource.getrusage(who).ru_maxrss) * 1024
    except (OSError, ValueError):
        return None


COMMAND_KEYS = frozenset({"command", "cmdline", "target_cmdline", "cmd"})
ARGV_KEYS = frozenset({"argv", "args"})
COMPACT = 1 << 20  # documents larger than this are written without indentation


def redact_command(command: str) -> str:
    """A command line shown as one string (argv joined by spaces), redacted argument by argument."""
    return " ".join(redact_argv(command.split(" ")))


def scrub(doc: Any, key: str = "") -> Any:
    """A JSON document with every command line redacted (:func:`obskit.redact.redact_argv`) and
    URL passwords and auth headers removed from every other string: the collectors' documents
    carry the target's argv as they found it, the archive never does."""
    if isinstance(doc, dict):
        return {k: scrub(v, str(k)) for k, v in doc.items()}
    if isinstance(doc, list):
        if key in ARGV_KEYS and all(isinstance(x, str) for x in doc):
            return redact_argv(doc)
        return [scrub(v, key) for v in doc]
    if isinstance(doc, str):
        return redact_command(doc) if key in COMMAND_KEYS else redact_text(doc)
    return doc


def _encode(name: str, payload: Any) -> tuple[bytes, str]:
    import json

    if isinstance(payload, bytes):
        kind = {"html": "text/html", "log": "text/plain", "txt": "text/plain"}.get(name.rsplit(".", 1)[-1], "bytes")
        return payload, kind
    doc = scrub(to_jsonable(payload))
    schema = doc.get("schema", "json") if isinstance(doc, dict) else "json"
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if len(data) < COMPACT:
        data = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False)
    return data.encode("utf-8"), str(schema)


def _json_doc(data: bytes) -> Any:
    import json

    try:
        return json.loads(data)
    except ValueError:
        return None


def thin_reason(ctx: Context) -> str | None:
    """Why the target's files, environment, fds and memory map are unreadable, when they are.

    For a target of another uid, /proc/PID/{root,environ,fd,smaps} need ptrace-read permission
    (CAP_SYS_PTRACE); without it the archive holds only what /proc shows to everyone.
    """
    fs = ctx.procfs
    refused: list[str] = []
    who = None
    for t in ctx.targets:
        for name in ("root", "environ", "fd", "smaps_rollup"):
            p = fs.path(t.pid, name)
            try:
                if name in ("root", "fd"):
                    os.listdir(p)
                else:
                    with open(p, "rb") as f:
                        f.read(1)
            except PermissionError:
                refused.append(f"/proc/{t.pid}/{name.replace('_rollup', '')}")
                who = t
            except OSError:
                continue
    if not refused or who is None:
        return None
    uid = f"uid {who.uid}" if who.uid is not None else "another user"
    return (f"thin archive: the target runs as {uid} and {', '.join(sorted(set(refused)))} need ptrace-read "
            f"permission, so its files, logs, environment and memory map are missing; {PTRACE_FIX}")
