"""entrolab benchmarks: ``python -m entrolab.bench NAME [--quick]``. Timings live here, never in tests.

Results are appended to ``entrolab/bench/results/<name>.jsonl`` (date, machine, versions, load, numbers) and the
latest are summarised in ``entrolab/bench/RESULTS.md``. The machine's load is read before and during a run; a
result measured on a busy machine is marked ``noisy``.
"""
