"""Benchmarks: `make bench` (or `python -m bench [--short]`) prints figures beside their baselines and ratios."""
