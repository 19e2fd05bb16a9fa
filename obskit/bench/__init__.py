"""`obskit bench`: a CI performance-regression gate.

- :mod:`obskit.bench.stats`: ratio of medians, its bootstrap interval, the A/A noise floor, verdicts.
- :mod:`obskit.bench.measure`: one run of a command (wall, CPU and peak memory of its process tree).
- :mod:`obskit.bench.runner`: interleaved base/head/calibration rounds, adaptive until decided.
- :mod:`obskit.bench.imports`: pytest-benchmark, pyperf and obskit result files.
- :mod:`obskit.bench.model`: the result document (``obskit.bench/1``).
- :mod:`obskit.bench.report`: the terminal table and the Markdown summary.
- :mod:`obskit.bench.gitref`: ``--base-ref``: a git worktree with its own virtual environment.
- :mod:`obskit.bench.where`: profiles of both sides after a confirmed regression.
"""
