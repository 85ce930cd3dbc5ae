"""The library entry point: run a grid and get its results as a table (as ``moabb.benchmark`` and
``lm_eval.simple_evaluate`` do). `bench run` is the same function behind a command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["run_benchmark"]


def run_benchmark(
    grid: str | Path,
    *,
    data: str | Path | None = None,
    store: str | Path | None = None,
    profile: str | None = None,
    methods: Sequence[str] | None = None,
    subjects: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    include: Sequence[str] | None = None,
    max_concurrent: int | None = None,
    address: str | None = None,
    retry_failed: bool = False,
    backbones_dir: str | Path | None = None,
    dataset_format: str = "eeg-cvpr40",
) -> "pd.DataFrame":
    """Run every pending trial of ``grid`` (a shipped grid's name or a grid file) and return the
    grid's records in the store, one row per trial (:meth:`bench.results.store.Store.load_frame`: the trial's
    axes, ``metric.<name>`` with ``.ci_low`` / ``.ci_high``, ``time.<stage>``).

    ``data``: a dataset folder (default: the grid's synthetic worlds, or the mini world, built on first
    use), read as ``dataset_format`` (:mod:`bench.data.dataset`); ``store``: the results folder
    (default ``runs/<grid>``); ``include``: plugin references (:mod:`bench.plugins`). Raises :class:`bench.errors.UserError` for bad input and
    ``RuntimeError`` when a trial failed (its record, with the error, is in the store).
    """
    from bench.experiment.run import run_command
    from bench.experiment.grid import load_grid
    from bench.results.leaderboard import load_records, records_of_grid
    from bench.results.store import Store

    g = load_grid(grid, check=False)
    store = Path(store) if store is not None else Path("runs") / g.name
    rc = run_command(grid=str(grid), profile=profile, data=Path(data) if data is not None else None, store=store,
                     subjects=list(subjects) if subjects else None, seeds=list(seeds) if seeds else None,
                     methods=list(methods) if methods else None, max_concurrent=max_concurrent, address=address,
                     retry_failed=retry_failed, backbones_dir=Path(backbones_dir) if backbones_dir else None,
                     include=list(include) if include else None, dataset_format=dataset_format)  # fmt: skip
    if rc == 130:
        raise KeyboardInterrupt
    frame = Store(store).load_frame()
    wanted = {r["key"] for r in records_of_grid(load_records(store), g.with_overrides(methods=methods, subjects=subjects, seeds=seeds, profile=profile))}
    frame = frame[frame["key"].isin(wanted)].reset_index(drop=True)
    if rc != 0:
        failed = frame[frame["status"] != "ok"]
        raise RuntimeError(f"{len(failed)} trial(s) failed; their records (with the error) are in {store}")
    return frame
