"""Population-scale harness: ``python -m benchmarks.population --help``.

Measures the offline phase (index build) over a series of custodian sizes N and the online
phase (one query through both services over mTLS) over a series of agency request sizes n,
runs the baselines on the same keys, fits a cost model per phase and extrapolates it to
population scale. See ``harness`` for the flow and ``benchmarks/README.md`` for how to read
the output.
"""
