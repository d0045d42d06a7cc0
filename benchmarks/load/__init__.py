"""A bounded load and soak test of both services over mTLS on loopback.

``python -m benchmarks.load --minutes 10 --out DIR`` starts one custodian and several
agencies as real processes (the installed CLIs), drives each agency with several case
systems that submit queries of mixed sizes and modes in a closed loop for the set time,
samples both services' resident memory every second, and writes ``DIR/load.json``,
``DIR/LOAD.md`` and ``DIR/rss.png``: throughput, p50/p95/p99 latency per phase, errors by
status code, and memory over time with its growth after warm-up. Every request goes only
to 127.0.0.1 and the run stops by itself.
"""
