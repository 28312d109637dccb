"""Throughput and latency benchmarks of the hub (``make bench`` = ``python -m benchmarks``).

Not tests: they print numbers next to the targets and say how far off they are. The whole
run starts its own local broker in a temporary state dir and stops everything it started.
"""
