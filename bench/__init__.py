"""Benchmarks: each measures a layer against a baseline measured in the same run."""
