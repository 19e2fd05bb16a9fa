"""The snapshot's own documents: the index (``obskit.snapshot/1``) and what it records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What a missing capability costs, said once (index, page, docs).
PTRACE_FIX = ("add CAP_SYS_PTRACE: `kubectl debug -it POD --image=IMAGE --target=CONTAINER --profile=general` "
              "(docker: --cap-add SYS_PTRACE)")
STDOUT_NOTE = "stdout/stderr of a container are read with `kubectl logs POD -c CONTAINER` (never from here)"

STATUSES = ("ok", "partial", "skipped", "failed", "interrupted", "not-run")


@dataclass
class TargetInfo:
    pid: int
    role: str
    command: str  # redacted
    uid: int | None
    workers: list[int] = field(default_factory=list)


@dataclass
class SectionRecord:
    name: str
    title: str
    status: str  # one of STATUSES
    reason: str = ""
    fix: str = ""
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Verdict:
    kind: str  # hot | stuck | quota | oom | memory | workers | environment
    severity: str  # info | warning | error (obskit.severity)
    title: str
    detail: str = ""
    file: str = ""  # the section file with the evidence


@dataclass
class Headroom:
    """The pod's memory room for obskit and py-spy, from the target's cgroup."""

    limit_bytes: int | None
    usage_bytes: int | None
    headroom_bytes: int | None
    level: str | None
    need_bytes: int
    plan: str  # full | shrink | minimal
    reason: str


@dataclass
class Accounting:
    elapsed_s: float
    budget_s: float
    peak_rss_bytes: int | None  # obskit itself
    peak_children_rss_bytes: int | None  # the largest py-spy it ran
    ptrace: bool
    headroom: Headroom | None
    skipped: list[str] = field(default_factory=list)  # "section: reason"
    thin: str | None = None  # why the archive is thin, when it is


@dataclass
class SnapshotIndex:
    SCHEMA = "obskit.snapshot/1"

    created: float
    obskit_version: str
    duration_s: float
    targets: list[TargetInfo]
    sections: list[SectionRecord]
    verdicts: list[Verdict]
    accounting: Accounting
    hints: list[str] = field(default_factory=list)
    interrupted: bool = False
    files: dict[str, str] = field(default_factory=dict)  # archive file -> schema (or media type)


def index_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A loaded index, checked enough to be shown (raises ValueError otherwise)."""
    if not isinstance(data, dict) or data.get("schema") != SnapshotIndex.SCHEMA:
        raise ValueError(f"not an obskit snapshot index (schema {data.get('schema') if isinstance(data, dict) else None!r})")
    for key in ("sections", "verdicts", "targets"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"index field {key!r} is missing")
    return data


@dataclass
class EnvProcess:
    pid: int
    argv: list[str]  # redacted
    environ: dict[str, str] | None  # redacted; None when unreadable
    unreadable: str = ""


@dataclass
class EnvReport:
    SCHEMA = "obskit.snapshot.env/1"

    processes: list[EnvProcess]
    redacted_by: str = "obskit.redact"


@dataclass
class LogSource:
    pid: int
    path: str  # as the target sees it
    read_via: str
    file: str  # the archive member
    bytes_total: int
    bytes_read: int
    lines: int
    truncated: bool


@dataclass
class LogsReport:
    SCHEMA = "obskit.snapshot.logs/1"

    sources: list[LogSource]
    notes: list[str]
    max_bytes_per_file: int
    max_lines_per_file: int


@dataclass
class MemTrend:
    SCHEMA = "obskit.snapshot.mem-trend/1"

    seconds: float
    processes: int
    pss_before_bytes: int
    pss_after_bytes: int
    pss_delta_bytes: int
    rss_before_bytes: int
    rss_after_bytes: int
