"""Head sampling as OTEL_TRACES_SAMPLER defines it, stdlib only.

The decision is needed before ``trace exec`` starts its child (the child's
TRACEPARENT carries the sampled flag), and the SDK's import must not delay the child,
so the rule is re-implemented here with the SDK's exact arithmetic (a test checks
that both agree trace id by trace id).
"""

from __future__ import annotations

from obskit.tracing.propagation import SpanContext

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_LIMIT = (1 << 64) - 1


class Sampler:
    """One of the OTEL_TRACES_SAMPLER samplers (immutable; a plain class, not a dataclass:
    ``trace exec`` imports this before its child starts)."""

    __slots__ = ("name", "ratio")
    name: str
    ratio: float

    def __init__(self, name: str = "parentbased_always_on", ratio: float = 1.0) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "ratio", ratio)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"Sampler is immutable (cannot set {key})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sampler) and (self.name, self.ratio) == (other.name, other.ratio)

    def __hash__(self) -> int:
        return hash((self.name, self.ratio))

    def __repr__(self) -> str:
        return f"Sampler(name={self.name!r}, ratio={self.ratio!r})"

    @property
    def bound(self) -> int:
        return round(self.ratio * (_LIMIT + 1))

    def _root(self, trace_id: str) -> bool:
        base = self.name.removeprefix("parentbased_")
        if base == "always_on":
            return True
        if base == "always_off":
            return False
        return (int(trace_id, 16) & _LIMIT) < self.bound

    def should_sample(self, trace_id: str, parent: SpanContext | None) -> bool:
        if self.name.startswith("parentbased_") and parent is not None:
            return parent.sampled
        return self._root(trace_id)

    def describe(self) -> str:
        return f"{self.name}({self.ratio:g})" if "ratio" in self.name else self.name


def parse(name: str | None, arg: str | None) -> tuple[Sampler, list[str]]:
    """A Sampler from the OTEL_TRACES_SAMPLER/_ARG values, and warnings (never an error)."""
    warnings: list[str] = []
    n = (name or "parentbased_always_on").strip().lower()
    if n not in SAMPLERS:
        warnings.append(f"unknown sampler {name!r}; using parentbased_always_on")
        n = "parentbased_always_on"
    ratio = 1.0
    if "ratio" in n and arg not in (None, ""):
        try:
            ratio = float(str(arg))
            if not 0.0 <= ratio <= 1.0:
                raise ValueError
        except ValueError:
            warnings.append(f"sampler argument {arg!r} is not a ratio in [0, 1]; using 1.0")
            ratio = 1.0
    return Sampler(n, ratio), warnings


def sdk_sampler(s: Sampler) -> object:
    """The OpenTelemetry SDK sampler equivalent to ``s`` (for exporting through the SDK)."""
    from opentelemetry.sdk.trace import sampling as sdk

    root: sdk.Sampler
    base = s.name.removeprefix("parentbased_")
    if base == "always_on":
        root = sdk.ALWAYS_ON
    elif base == "always_off":
        root = sdk.ALWAYS_OFF
    else:
        root = sdk.TraceIdRatioBased(s.ratio)
    return sdk.ParentBased(root) if s.name.startswith("parentbased_") else root
