"""recsys-db benchmarks: each figure next to the peer a user would otherwise use, measured in
the same run, written to BENCHMARKS.md. Run with ``python -m benchmarks --scale 1m``."""
