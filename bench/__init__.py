"""brainvis-bench: a benchmark and evaluation harness for reconstructing images from EEG.

``bench.run_benchmark(grid, data=..., store=...)`` runs a grid and returns its records as a table
(:mod:`bench.api`); the `bench` command line is the same functions behind a CLI.
"""

from __future__ import annotations

__all__ = ["run_benchmark"]


def __getattr__(name: str):  # lazy: importing bench stays cheap (no torch, no Ray)
    if name == "run_benchmark":
        from bench.api import run_benchmark

        return run_benchmark
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
