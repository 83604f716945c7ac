"""Benchmarks against the peers (issue 6): ``make bench``, ``make bench-full``; see README.md."""
