"""`obskit bench`: a CI performance-regression gate (compare base and head, decide, show where)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ._common import JsonOpt, emit

if TYPE_CHECKING:
    from obskit.bench.model import BenchResult
    from obskit.bench.runner import SideSpec

FAIL_ON = ("regressed", "inconclusive")
METHODS = ("auto", "cgroup", "rusage")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(name="bench", help="CI performance gate: compare base and head (commands or result files), decide, show where the time went.",
                      no_args_is_help=True, rich_markup_mode=None)

    @sub.command("compare")
    def compare_cmd(
        files: Annotated[Optional[list[str]], typer.Argument(
            help="BASE.json HEAD.json: pytest-benchmark --benchmark-json, pyperf -o, or obskit bench --json output "
                 "(instead of --base/--head).", show_default=False)] = None,
        base: Annotated[Optional[str], typer.Option("--base", help="Base command (split like a shell would, run "
                                                    "without one: write sh -c '...' for pipes).",
                                                    show_default=False)] = None,
        head: Annotated[Optional[str], typer.Option("--head", help="Head command (the change to judge).",
                                                    show_default=False)] = None,
        cwd_base: Annotated[Optional[str], typer.Option("--cwd-base", help="Directory the base command runs in.",
                                                        show_default=False)] = None,
        cwd_head: Annotated[Optional[str], typer.Option("--cwd-head", help="Directory the head command runs in.",
                                                        show_default=False)] = None,
        base_ref: Annotated[Optional[str], typer.Option("--base-ref", help="Run the base side in a git worktree of "
                                                        "REF (each tree with its own venv).",
                                                        show_default=False)] = None,
        setup: Annotated[Optional[str], typer.Option("--setup", help="With --base-ref: run once in each tree "
                                                     "first, e.g. 'python -m pip install -e .'.", show_default=False)] = None,
        runs: Annotated[int, typer.Option("--runs", "-n", min=6, max=10000, help="Runs of each side before the "
                                          "first verdict.")] = 10,
        warmup: Annotated[int, typer.Option("--warmup", min=0, max=100, help="Unmeasured runs of each side "
                                            "first.")] = 1,
        threshold: Annotated[str, typer.Option("--threshold", help="Smallest change that counts (percent).")] = "5%",
        confidence: Annotated[float, typer.Option("--confidence", min=50, max=99.9, help="Confidence of the "
                                                  "intervals, percent.")] = 95.0,
        max_runs: Annotated[int, typer.Option("--max-runs", min=6, max=100000, help="Stop adding rounds at this "
                                              "many runs a side.")] = 60,
        max_time: Annotated[str, typer.Option("--max-time", help="Stop adding rounds after this long "
                                              "(250ms, 30s, 5m).")] = "5m",
        metric: Annotated[Optional[list[str]], typer.Option("--metric", help="NAME=REGEX[:higher|lower]: a figure "
                                                            "the command prints (first group of REGEX). "
                                                            "Repeatable.", show_default=False)] = None,
        json_metrics: Annotated[bool, typer.Option("--json-metrics", help="Also read JSON lines on the command's "
                                                   "stdout as metrics.")] = False,
        calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Run a second base series "
                                                "(A/A) for the noise floor; without it, the floor comes from the "
                                                "base runs' two halves.")] = True,
        method: Annotated[str, typer.Option("--method", help="How CPU and peak memory are measured: auto "
                                            "(a cgroup per run when root), cgroup, rusage.")] = "auto",
        fail_on: Annotated[str, typer.Option("--fail-on", help="Exit 3 on: regressed, or also on "
                                             "inconclusive.")] = "regressed",
        where: Annotated[bool, typer.Option("--profile/--no-profile", help="On a confirmed regression, profile a "
                                            "few extra runs of each side and diff them.")] = True,
        profile_runs: Annotated[int, typer.Option("--profile-runs", min=0, max=500, help="Profiled runs of each "
                                                  "side (0: enough for about 3000 samples, 3 to 30).")] = 0,
        markdown: Annotated[Optional[str], typer.Option("--markdown", help="Write the Markdown summary here (also "
                                                        "appended to $GITHUB_STEP_SUMMARY when set).",
                                                        show_default=False)] = None,
        artifacts: Annotated[Optional[str], typer.Option("--artifacts", help="Directory for result.json, "
                                                         "summary.md, diff.html and the profiles (default: "
                                                         "./bench-artifacts, only for profiles).",
                                                         show_default=False)] = None,
        as_json: JsonOpt = False,
        cgroup_root: Annotated[str, typer.Option("--cgroup-root", hidden=True)] = "/sys/fs/cgroup",
    ) -> None:
        """Compare a base and a head: commands run interleaved, or two result files; verdict per metric.

        Exit 0 when nothing regressed, 3 when something did (--fail-on inconclusive: also when
        undecided), 9 when a command failed (no verdict) or a file cannot be read.
        """
        import os

        from obskit.bench.runner import RunPlan, parse_metric_option
        from obskit.durations import parse_duration
        from obskit.errors import UsageError

        plan = RunPlan(runs=runs, warmup=warmup, max_runs=max(max_runs, runs), confidence=confidence / 100.0,
                       calibrate=calibrate, json_metrics=json_metrics, cgroup_root=cgroup_root)
        plan.threshold = _percent(threshold)
        plan.max_time = parse_duration(max_time, option="--max-time")
        if fail_on not in FAIL_ON:
            raise UsageError(f"--fail-on must be regressed or inconclusive, not {fail_on!r}",
                             "see `obskit bench compare --help`")
        plan.fail_on = fail_on
        if method not in METHODS:
            raise UsageError(f"--method must be auto, cgroup or rusage, not {method!r}",
                             "see `obskit bench compare --help`")
        plan.metrics = [parse_metric_option(m) for m in metric or []]
        if len({m.name for m in plan.metrics}) != len(plan.metrics):
            raise UsageError("two --metric options with the same name", "give each metric its own name")
        for d in (cwd_base, cwd_head):
            if d is not None and not os.path.isdir(d):
                raise UsageError(f"no such directory: {d}", "check --cwd-base/--cwd-head")
        _preflight(markdown, artifacts)

        if files:
            if len(files) != 2:
                raise UsageError("give two result files, BASE.json HEAD.json", "or --base 'CMD' --head 'CMD'")
            if base or head or base_ref or cwd_base or cwd_head or setup or plan.metrics:
                raise UsageError("result files and --base/--head/--base-ref/--metric do not mix",
                                 "compare either two files or two commands")
            res = _compare_files(files[0], files[1], plan)
        else:
            if base_ref is None and not (base and head):
                raise UsageError("give --base 'CMD' and --head 'CMD' (or --base-ref REF), or two result files",
                                 "e.g. obskit bench compare --base 'python old.py' --head 'python new.py'")
            if base_ref is None and setup:
                raise UsageError("--setup goes with --base-ref", "run setup yourself for --cwd-base/--cwd-head")
            if base_ref is not None and cwd_base:
                raise UsageError("--base-ref and --cwd-base both say where the base runs", "give one of them")
            if base_ref is not None and not (base or head):
                raise UsageError("--base-ref needs the command: --head 'CMD' (or --base), run in both trees",
                                 "e.g. --base-ref origin/main --head 'python bench.py'")
            from obskit.bench.measure import choose_method

            plan.method = choose_method(method, cgroup_root)
            res = _compare_commands(base or head or "", head or base or "", cwd_base, cwd_head, base_ref, setup,
                                    plan, where, profile_runs, artifacts)
        _finish(res, as_json, markdown, artifacts)

    app.add_typer(sub)


def _percent(text: str) -> float:
    """``5%`` or ``5`` -> 0.05."""
    import math

    from obskit.errors import UsageError

    t = text.strip().rstrip("%").strip()
    try:
        v = float(t)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or not 0 <= v < 1000:
        raise UsageError(f"bad --threshold {text[:20]!r}", "a percentage such as 5% (0 to 1000)")
    return v / 100.0


def _preflight(markdown: str | None, artifacts: str | None) -> None:
    import os

    from obskit.errors import UsageError
    from obskit.safefile import preflight

    if markdown:
        preflight(markdown)
    if artifacts and os.path.exists(artifacts) and not os.path.isdir(artifacts):
        raise UsageError(f"--artifacts {artifacts} is not a directory", "give a directory (it is created if missing)")


def _split(cmd: str, what: str) -> list[str]:
    import shlex

    from obskit.errors import UsageError

    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        raise UsageError(f"cannot split the {what} command: {e}", "check its quotes") from None
    if not argv:
        raise UsageError(f"the {what} command is empty", f"give --{what} 'CMD ARGS'")
    return argv


def _compare_files(base: str, head: str, plan: Any) -> BenchResult:
    from obskit.bench.imports import compare_files
    from obskit.bench.machine import collect
    from obskit.bench.model import BenchResult, Settings

    settings = Settings(plan.threshold, plan.confidence, 0, 0, 0, 0.0, False, "files", plan.fail_on)
    res = BenchResult("files", settings, collect(), stop_reason="files", inputs=[base, head])
    res.benchmarks = compare_files(base, head, threshold=plan.threshold, confidence=plan.confidence,
                                   warnings=res.warnings)
    return res


def _compare_commands(base: str, head: str, cwd_base: str | None, cwd_head: str | None, base_ref: str | None,
                      setup: str | None, plan: Any, where: bool, profile_runs: int,
                      artifacts: str | None) -> BenchResult:
    import contextlib
    import os

    from obskit.bench.machine import collect
    from obskit.bench.runner import CommandFailed, SideSpec, compare_commands
    from obskit.output import info

    base_argv, head_argv = _split(base, "base"), _split(head, "head")
    with contextlib.ExitStack() as stack:
        if base_ref is not None:
            from obskit.bench.gitref import trees

            info(f"preparing a worktree of {base_ref} and a virtual environment for each side")
            bt, ht = stack.enter_context(trees(base_ref, cwd_head or os.getcwd(), setup))
            bs = SideSpec("base", base_argv, bt.path, bt.env, base_ref, bt.commit)
            hs = SideSpec("head", head_argv, ht.path, ht.env, "HEAD", ht.commit)
        else:
            bs = SideSpec("base", base_argv, cwd_base)
            hs = SideSpec("head", head_argv, cwd_head)
        try:
            with _interrupt_on_term():
                res = compare_commands(bs, hs, plan, collect(), progress=info)
        except CommandFailed as e:
            import sys

            tail = getattr(e, "stderr_tail", "")
            if tail:
                sys.stderr.write(f"--- stderr of the {getattr(e, 'side', '')} command (last lines) ---\n"
                                 + "\n".join(tail.splitlines()[-15:]) + "\n---\n")
            raise
        timing = {m.metric: m.verdict for b in res.benchmarks for m in b.metrics}
        if where and "regressed" in (timing.get("wall"), timing.get("cpu")):
            _where(res, bs, hs, artifacts or "bench-artifacts", profile_runs)
    return res


@contextlib.contextmanager
def _interrupt_on_term() -> Iterator[None]:
    """SIGTERM and SIGHUP end the rounds like Ctrl-C: the verdicts of the rounds done are still written."""
    import signal

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(OSError, ValueError):  # ValueError: not the main thread
            old[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _where(res: BenchResult, base: SideSpec, head: SideSpec, directory: str, runs: int) -> None:
    """Profile a few extra runs of each side, write diff.html and the profiles, name what grew."""
    import os
    import tempfile

    from obskit.bench import stats
    from obskit.bench.model import WhereFunction, WhereReport
    from obskit.bench.where import MIN_SAMPLES, rate_for, record, runs_for
    from obskit.output import info, warn
    from obskit.profile.diff import diff_profiles
    from obskit.profile.formats import load_profile, render
    from obskit.profile.html import render_diff_html
    from obskit.profile.model import Profile
    from obskit.safefile import write_bytes

    walls = [r.wall for r in res.runs if r.side == "base" and r.round >= 0]
    rate = rate_for(stats.median(walls) if walls else 0.0)
    runs = runs or runs_for(stats.median(walls) if walls else 0.0, rate)
    report = WhereReport(runs, rate, 0, 0)
    res.where = report
    info(f"confirmed regression: profiling {runs} more runs of each side at {rate} Hz")
    merged: dict[str, Profile] = {}
    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as tmp:
        for spec in (base, head):
            rec = record(spec, tmp, runs=runs, rate=rate, median_wall=stats.median(walls) if walls else 0.0)
            report.notes.extend(rec.notes)
            prof = Profile()
            for path in rec.files:
                try:
                    one = load_profile(path)
                except Exception as e:
                    report.notes.append(f"{spec.name}: cannot read a profile ({e})")
                    continue
                for smp in one.samples:
                    # Samples without a Python frame (the interpreter starting, `env` exec'ing it) say
                    # nothing about the code and would dilute every share.
                    if smp.frames:
                        prof.add_stack(smp.pid, smp.tid, [one.frames[i] for i in smp.frames], smp.count)
            if rec.files:
                prof.metadata.target_cmdline = " ".join(res.sides[0 if spec.name == "base" else 1].argv)
            merged[spec.name] = prof
    report.base_samples, report.head_samples = merged["base"].total_samples, merged["head"].total_samples
    for name, n in (("base", report.base_samples), ("head", report.head_samples)):
        if n < MIN_SAMPLES and not any(x.startswith(f"{name}: too short") for x in report.notes):
            report.notes.append(f"{name}: too short to sample ({n} samples in {runs} runs at {rate} Hz; "
                                f"make the benchmark run longer)")
    if min(report.base_samples, report.head_samples) < MIN_SAMPLES:
        return
    d = diff_profiles(merged["base"], merged["head"])
    # Shares alone cannot show a function that was already most of the run growing (95 % -> 96 %):
    # each share is scaled by the side's measured median time, and functions rank by the time they
    # gained per run.
    metric = "cpu" if all(r.cpu is not None for r in res.runs) else "wall"
    medians = {}
    for side in ("base", "head"):
        vals = [float(getattr(r, metric)) for r in res.runs if r.side == side and r.round >= 0]
        medians[side] = stats.median(vals) if vals else 0.0
    report.time_metric = metric
    ranked = []
    for f in d.functions:
        bt, ht = f.base_self_share * medians["base"], f.new_self_share * medians["head"]
        ranked.append(WhereFunction(f.name, f.file, f.line, f.base_self_share, f.new_self_share, f.delta,
                                    bt, ht, ht - bt))
    ranked.sort(key=lambda w: -(w.time_delta or 0.0))
    report.grown = [w for w in ranked if (w.time_delta or 0.0) > 0][:5]
    try:
        os.makedirs(directory, exist_ok=True)
        outputs = ((os.path.join(directory, "diff.html"), lambda: render_diff_html(merged["base"], merged["head"])),
                   (os.path.join(directory, "base-profile.json"), lambda: render(merged["base"], "json")),
                   (os.path.join(directory, "head-profile.json"), lambda: render(merged["head"], "json")))
        for path, data in outputs:
            write_bytes(path, data())
            report.files.append(path)
    except Exception as e:
        warn(f"cannot write the profiles to {directory}: {e}")
        report.notes.append(f"profiles not written: {e}")


def _finish(res: BenchResult, as_json: bool, markdown: str | None, artifacts: str | None) -> None:
    import os

    from obskit.bench.report import markdown as to_markdown
    from obskit.bench.report import render
    from obskit.errors import FindingsError
    from obskit.output import console, dumps, warn
    from obskit.safefile import write_bytes

    md = to_markdown(res)
    if markdown:
        write_bytes(markdown, md.encode())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            old = b""
            if os.path.isfile(summary):
                with open(summary, "rb") as f:
                    old = f.read(8 << 20)
            write_bytes(summary, old + (b"\n" if old and not old.endswith(b"\n") else b"") + md.encode())
        except Exception as e:
            warn(f"cannot write $GITHUB_STEP_SUMMARY: {e}")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        write_bytes(os.path.join(artifacts, "result.json"), (dumps(res) + "\n").encode())
        write_bytes(os.path.join(artifacts, "summary.md"), md.encode())
    emit(res, as_json, lambda r: console().print(render(r)))
    counts = res.counts()
    if counts["regressed"] or (res.settings.fail_on == "inconclusive" and counts["inconclusive"]):
        what = [f"{b.name} {m.metric}" if len(res.benchmarks) > 1 or res.mode == "files" else m.metric
                for b in res.benchmarks for m in b.metrics
                if m.verdict == "regressed" or (res.settings.fail_on == "inconclusive" and m.verdict == "inconclusive")]
        raise FindingsError(f"{counts['regressed']} regressed, {counts['inconclusive']} inconclusive: "
                            f"{', '.join(what[:8])}", f"--fail-on {res.settings.fail_on}; see the table above")
