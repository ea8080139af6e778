"""Benchmarks (numbers, not tests): `python -m bench` runs the performance suite (bench/suite.py)."""
