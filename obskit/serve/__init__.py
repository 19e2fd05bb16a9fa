"""`obskit serve`: per-Python-process metrics for Prometheus and continuous profiles for Pyroscope.

The pieces, each usable alone:

* :mod:`obskit.serve.collect` reads /proc (through :class:`obskit.proc.ProcFS`), the cgroups
  (through :func:`obskit.cgroups.for_pid`) and the in-process agent into a :class:`Snapshot`.
* :mod:`obskit.serve.exposition` renders a snapshot to Prometheus text bytes (prometheus-client).
* :mod:`obskit.serve.server` collects in the background, swaps the rendered bytes atomically and
  serves the last bytes over HTTP, so a scrape never waits for /proc, a cgroup file or an agent.
* :mod:`obskit.serve.pyroscope` pushes pprof slices to Pyroscope's ingest API with an on-disk spool.
* :mod:`obskit.serve.profiling` schedules the slices: per-target pause budget, a CPU cap for the
  node, round-robin.

Layering: this package imports only shared services and base modules.  The profile slice and
the worker-count verdict come from feature packages and are passed in as callables by
``commands/serve.py``.
"""
