"""Benchmarks (`make bench`): each writes bench/results/<name>.json and its own section of docs/performance.md.

Performance is measured here, never in timed tests. Numbers come from DynamoDB Local on the machine that ran them, so
they are only comparable with each other: what a bench shows is a trend (e.g. conflicts against shard count).
"""
