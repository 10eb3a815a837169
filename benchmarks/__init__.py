"""Benchmarks of reportexport_async; run each module with `python -m benchmarks.<name>`."""
