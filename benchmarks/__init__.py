"""Benchmarks, run on purpose: ``python -m pytest benchmarks --benchmark-enable``."""
