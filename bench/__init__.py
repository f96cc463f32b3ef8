"""Benchmarks: scripts that print a table, with a reference peer run on the same data.

Run them from the repository root, for example `.venv/bin/python -m bench.routing`;
results and the commands that produced them are kept in `bench/README.md`.
"""
