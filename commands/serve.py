"""`obskit serve`: Prometheus metrics of every Python process here, continuous profiles to Pyroscope."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ._common import JsonOpt, ProcRootOpt, emit

if TYPE_CHECKING:
    from obskit.serve.profiling import Slice


SCRAPE_SWITCH_INTERVAL = 0.0005


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        all_: Annotated[bool, typer.Option("--all", help="Every Python process visible here (the default without --pid).")] = False,
        pids: Annotated[Optional[list[int]], typer.Option("--pid", "-p", help="A process (with its Python children) to serve; repeat for more.", show_default=False)] = None,
        listen: Annotated[str, typer.Option("--listen", help="HOST:PORT for /metrics; loopback unless you choose otherwise.")] = "127.0.0.1:9464",
        interval: Annotated[str, typer.Option("--interval", help="How often metrics are collected (250ms, 15s, 1m).")] = "15s",
        by: Annotated[str, typer.Option("--by", help="Series labels: role, service, pid (pid churns with worker recycling).")] = "role,service",
        profile_to: Annotated[Optional[str], typer.Option("--profile-to", help="Pyroscope URL: push a profile slice of each process there.", show_default=False)] = None,
        profile_interval: Annotated[str, typer.Option("--profile-interval", help="How often profile slices are taken and pushed.")] = "15s",
        profile_duration: Annotated[str, typer.Option("--profile-duration", help="Length of one profile slice.")] = "5s",
        max_cpu: Annotated[float, typer.Option("--max-cpu", min=0.01, max=64.0, help="Cap on obskit's own CPU for profiling, in cores (0.1 = 10 % of one core); slices go round-robin when it does not allow every process.")] = 0.1,
        max_overhead: Annotated[float, typer.Option("--max-overhead", min=0.001, max=0.5, help="Pause budget per target process, as a share of its time (as `profile record`).")] = 0.05,
        spool_dir: Annotated[Optional[str], typer.Option("--spool-dir", help="Where profiles wait while Pyroscope is down (default: the state directory).", show_default=False)] = None,
        spool_max: Annotated[int, typer.Option("--spool-max-mb", min=1, max=100000, help="Spool size bound; the oldest profiles go first.")] = 64,
        no_agent: Annotated[bool, typer.Option("--no-agent", help="Do not ask in-process agents for GC numbers.")] = False,
        once: Annotated[bool, typer.Option("--once", help="Collect once, print the exposition (or the snapshot with --json) and exit.")] = False,
        as_json: JsonOpt = False,
        proc_root: ProcRootOpt = "/proc",
    ) -> None:
        """Serve Prometheus metrics of every Python process here; push continuous profiles to Pyroscope.

        Per process group (--by): CPU seconds, RSS/PSS/USS, threads, fds, the effective cgroup CPU
        quota and memory limit (smallest over ancestors), memory headroom, throttling, OOM kills,
        GC collections and pauses (where the obskit agent runs) and workers against the quota.
        Collection runs in the background; a scrape returns the last snapshot at once.
        """
        import socket
        import sys
        import time
        from pathlib import Path

        from obskit.durations import parse_duration
        from obskit.errors import UsageError
        from obskit.output import info, warn
        from obskit.proc import ProcFS

        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            from obskit.errors import Unavailable

            raise Unavailable("obskit serve needs prometheus-client", "pip install 'obskit[serve]'") from None
        from obskit.serve.collect import Collector
        from obskit.serve.exposition import Renderer, parse_by
        from obskit.serve.server import Loop, bind, is_loopback, own_usage, parse_listen

        every = parse_duration(interval, option="--interval")
        if every < 0.1:
            raise UsageError("--interval must be at least 100ms", "e.g. --interval 15s")
        try:
            labels = parse_by(by)
        except ValueError as e:
            raise UsageError(str(e), "e.g. --by role,service") from None
        if all_ and pids:
            raise UsageError("--all and --pid exclude each other", "give one of them")
        host, _port = parse_listen(listen)
        fs = ProcFS(proc_root)
        collector = Collector(fs, pids=list(pids or []) or None, verdict=_verdict, agent=not no_agent)
        if once or as_json:
            snap = collector.collect()
            if as_json:
                emit(snap, True)
            else:
                sys.stdout.write(Renderer(labels).render(snap).decode())
            return
        # Collections and profile slices are Python work in threads beside the scrape handler: a
        # short GIL switch interval lets a scrape in within half a millisecond, not 5 ms per thread.
        sys.setswitchinterval(SCRAPE_SWITCH_INTERVAL)
        loop = Loop(collector.collect, Renderer(labels), every)
        server = bind(listen, loop)
        if not is_loopback(host):
            warn(f"listening on {listen}, beyond loopback: anyone who reaches it reads process names and sizes "
                 "(see docs/kubernetes.md, obskit serve, for safe ways)")
        profiler = None
        if profile_to:
            from obskit.serve.profiling import Profiler
            from obskit.serve.pyroscope import Pusher

            p_every = parse_duration(profile_interval, option="--profile-interval")
            p_len = parse_duration(profile_duration, option="--profile-duration")
            if p_every < 1 or p_len < 1:
                raise UsageError("--profile-interval and --profile-duration must be at least 1s", "e.g. 15s and 5s")
            if spool_dir:
                spool = Path(spool_dir)
            else:
                from obskit.state import state_dir

                spool = state_dir() / "serve-spool"
            pusher = Pusher(profile_to, spool, max_bytes=spool_max << 20)

            def slice_fn(pid: int, seconds: float, stop: threading.Event) -> Slice | None:
                return _slice(pid, seconds, stop, max_overhead, proc_root)

            def targets() -> list:
                snap = loop.snapshot
                return list(snap.procs) if snap is not None else []

            profiler = Profiler(slice_fn, pusher, interval=p_every, duration=p_len, max_cpu=max_cpu,
                                cpu_fn=lambda: own_usage()[0], targets=targets, host=socket.gethostname(),
                                by=labels)

        def extra() -> dict:
            cpu, rss = own_usage()
            out: dict = {
                "obskit_serve_cpu_seconds": ("counter", "obskit's own CPU time, its py-spy children included.", cpu),
                "obskit_serve_resident_memory_bytes": ("gauge", "obskit's own RSS.", float(rss or 0)),
            }
            if profiler is not None:
                ps, st = profiler.pusher.stats, profiler.stats
                out.update({
                    "obskit_serve_profiles_pushed": ("counter", "Profile slices Pyroscope took (replays included).",
                                                     ps.pushed + ps.replayed),
                    "obskit_serve_profiles_spooled": ("counter", "Profile slices written to the spool.", ps.spooled),
                    "obskit_serve_profiles_dropped": ("counter", "Profile slices lost, by reason.",
                                                      dict(ps.dropped)),
                    "obskit_serve_profiles_skipped": ("counter", "Slices not taken, by reason (cpu-budget: --max-cpu).",
                                                      dict(st.skipped)),
                    "obskit_serve_profile_failures": ("counter", "Slices that could not be sampled.", st.failed),
                    "obskit_serve_spool_files": ("gauge", "Profile slices waiting in the spool.",
                                                 len(profiler.pusher.spooled_files())),
                })
            return out

        loop.health.extra = extra
        # The collector is Python-heavy (parsing /proc for every process): hand the GIL over sooner
        # than the default 5 ms, so a scrape waiting for it is served within a few milliseconds.
        sys.setswitchinterval(0.0005)
        thread = threading.Thread(target=server.serve_forever, name="obskit-serve-http", daemon=True)
        loop.start()
        thread.start()
        if profiler is not None:
            profiler.start()
        info(f"serving metrics on http://{listen}/metrics (every {interval}, --by {','.join(labels)})"
             + (f"; profiles to {_redacted(profile_to)}" if profile_to else ""))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            loop.stop()
            if profiler is not None:
                profiler.stop()
            server.shutdown()
            server.server_close()
        if profiler is not None:
            ps = profiler.pusher.stats
            left = len(profiler.pusher.spooled_files())
            info(f"stopped: {loop.health.collections} collections, {ps.pushed + ps.replayed} profiles pushed"
                 + (f", {left} left in the spool {profiler.pusher.dir} (sent when obskit serve runs again)" if left else ""))
        else:
            info(f"stopped: {loop.health.collections} collections")


def _redacted(url: str) -> str:
    from obskit.redact import redact_url

    return redact_url(url)


def _verdict(kind: str, workers: int, limit: float | None) -> tuple[int | None, int | None]:
    """Workers the CPU quota sustains (the rule of `obskit quota`) and how the running count compares."""
    import os

    from obskit.quota.verdicts import workers_for_cpu

    if kind not in ("gunicorn", "uvicorn", "celery"):
        return None, None
    cores = limit if limit is not None else float(len(os.sched_getaffinity(0)))
    rec = workers_for_cpu(kind, cores)
    return rec, (workers > rec) - (workers < rec)


def _slice(pid: int, seconds: float, stop: threading.Event, max_overhead: float, proc_root: str) -> Slice | None:
    """One profile slice of ``pid`` at the safe-by-default rate (the profile sampler's own budget)."""
    import time

    from obskit.errors import ObskitError
    from obskit.profile.pprof import encode_pprof
    from obskit.profile.sampler import SamplerConfig, record
    from obskit.serve.profiling import Slice

    t0 = time.time()
    try:
        rec = record(pid, SamplerConfig(max_overhead=max_overhead, proc_root=proc_root), duration=seconds, stop_event=stop)
    except ObskitError:
        return None
    t1 = time.time()
    prof = rec.profile
    m = prof.metadata
    start = m.start_time or t0
    end = start + m.duration_s if m.duration_s else t1
    rate = rec.accounting.effective_rate or rec.accounting.rate or 100.0
    return Slice(encode_pprof(prof), start, min(end, t1), rate, prof.total_samples)
