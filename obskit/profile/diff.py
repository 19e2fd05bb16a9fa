"""Comparing two profiles by function share, normalised by each profile's total samples.

Functions are matched by (name, file), not line: a diff across two versions of the code
must not treat every moved line as a new function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from obskit.profile.model import Profile


@dataclass
class FunctionDelta:
    name: str
    file: str
    line: int
    base_self_share: float
    new_self_share: float
    delta: float  # new_self_share - base_self_share
    base_total_share: float
    new_total_share: float
    total_delta: float
    status: str  # grown | shrunk | same | new | vanished


@dataclass
class ProfileDiff:
    SCHEMA = "obskit.profile.diff/1"

    base_samples: int
    new_samples: int
    functions: list[FunctionDelta] = field(default_factory=list)
    base_label: str = ""
    new_label: str = ""

    def grown(self, limit: int = 10, *, min_delta: float = 0.0) -> list[FunctionDelta]:
        return [f for f in self.functions if f.delta > min_delta][:limit]

    def shrunk(self, limit: int = 10, *, min_delta: float = 0.0) -> list[FunctionDelta]:
        return [f for f in self.functions if f.delta < -min_delta][:limit]

    def vanished(self) -> list[FunctionDelta]:
        return [f for f in self.functions if f.status == "vanished"]


def _label(p: Profile) -> str:
    m = p.metadata
    if m.target_cmdline:
        return m.target_cmdline
    return f"pid {m.target_pid}" if m.target_pid else ""


# Changes smaller than this share are "same": sampling noise at any realistic sample count.
SAME_EPSILON = 1e-4


def diff_profiles(base: Profile, new: Profile) -> ProfileDiff:
    """Every function of either profile with its self and total share in each, by |self delta|."""
    b = {(f.name, f.file): f for f in base.top_functions(None)}
    n = {(f.name, f.file): f for f in new.top_functions(None)}
    out: list[FunctionDelta] = []
    for key in b.keys() | n.keys():
        fb, fn = b.get(key), n.get(key)
        bs, ns = (fb.self_share if fb else 0.0), (fn.self_share if fn else 0.0)
        bt, nt = (fb.total_share if fb else 0.0), (fn.total_share if fn else 0.0)
        delta = ns - bs
        if fb is None:
            status = "new"
        elif fn is None:
            status = "vanished"
        elif abs(delta) < SAME_EPSILON and abs(nt - bt) < SAME_EPSILON:
            status = "same"
        else:
            status = "grown" if delta > 0 or (delta == 0 and nt > bt) else "shrunk"
        line = (fn or fb).line if (fn or fb) else 0  # type: ignore[union-attr]
        out.append(FunctionDelta(key[0], key[1], line, bs, ns, delta, bt, nt, nt - bt, status))
    out.sort(key=lambda d: (-abs(d.delta), -abs(d.total_delta), d.name, d.file))
    return ProfileDiff(base.total_samples, new.total_samples, out, _label(base), _label(new))
