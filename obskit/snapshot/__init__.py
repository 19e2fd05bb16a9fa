"""`obskit snapshot`: one archive with everything an incident needs, collected within a time budget.

This package is the aggregator's engine and knows no feature package: the sections (doctor, ps,
stacks, profile, memory, GC, quota, logs, environment) are callables that ``commands/snapshot.py``
builds from the collectors and hands to :func:`obskit.snapshot.runner.run`.  Here live the
orchestration (budget, Ctrl-C, failures recorded per section), the memory headroom check, the
verdicts (computed from the sections' JSON documents), the offline index page and the archive.
"""
