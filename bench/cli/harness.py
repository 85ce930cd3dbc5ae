"""CLI commands of the harness (`bench run`, `bench grid ...`, `bench perf`), registered on the main app.

Multi-value options take a comma list, a repeated flag, or both:
``--subjects 1,4``, ``--subjects 1 --subjects 4`` and ``--subjects 1,4 --subjects 6`` all work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.table import Table

from bench.errors import UserError
from bench.experiment.run import console, err_console, resolve_data, run_command


# ----------------------------------------------------------------------------------------------
# Helpers (plain functions; the commands below are thin)
# ----------------------------------------------------------------------------------------------


def parse_multi(values: list[str] | None, conv: Callable, what: str) -> list | None:
    """``["1,4", "6"]`` -> ``[1, 4, 6]``; None when the flag is absent. Every bad item is named in
    one UserError, and a flag given with nothing in it (``--subjects ''``) is an error too."""
    if values is None or (isinstance(values, (list, tuple)) and len(values) == 0):
        return None
    items = [x.strip() for v in values for x in str(v).split(",") if x.strip()]
    if not items:
        raise UserError(f"--{what}: no values given (e.g. --{what} 1,4); leave the flag out to keep the grid's")
    out, bad = [], []
    for x in items:
        try:
            out.append(conv(x))
        except ValueError:
            bad.append(x)
    if bad:
        raise UserError(f"--{what}: not valid: {', '.join(map(repr, bad))}")
    return out


def grid_table_rows(g) -> list[tuple]:
    from bench.experiment.grid import expand_trials

    return [
        (t.spec.method, t.variant or "", str(t.spec.subject), f"{t.spec.fraction:g}", f"{t.spec.w:g}", str(t.spec.seed),
         ", ".join(f"{k}={v}" for k, v in t.spec.options))
        for t in expand_trials(g)
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add the harness commands to ``app``."""
    grid_app = typer.Typer(no_args_is_help=True, help="List and inspect experiment grids (bench/grids/*.toml).")
    app.add_typer(grid_app, name="grid")

    @app.command("run")
    def run(
        grid: str = typer.Option(..., "--grid", help="Shipped grid name (see `bench grid list`) or path to a grid .toml file."),
        profile: Optional[str] = typer.Option(None, "--profile", help="mini or paper (default: the grid's profile)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (EEG-CVPR40 layout). Default: the mini world, built on first use."),
        store: Optional[Path] = typer.Option(None, "--store", help="Results store folder. Default: ./runs/<grid name>. With --address it must be on a filesystem every node shares (trials write their own records)."),
        subjects: Optional[List[str]] = typer.Option(None, "--subjects", help="Override the subject axis: --subjects 1,4 or repeated."),
        seeds: Optional[List[str]] = typer.Option(None, "--seeds", help="Override the seed axis: --seeds 0,1 or repeated."),
        methods: Optional[List[str]] = typer.Option(None, "--methods", help="Override the method axis: --methods brainvis,chance or repeated."),
        max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", help="Trials at once (default: CPU count; one CPU and one torch thread each)."),
        gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="GPUs per trial (fractions allowed)."),
        address: Optional[str] = typer.Option(None, "--address", help="Ray cluster HOST:PORT (from `ray start --head`); default: a local instance. A token in ~/.ray/auth_token turns on RAY_AUTH_MODE=token unless it is set."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run trials whose stored record is 'failed'."),
        backbones_dir: Optional[Path] = typer.Option(None, "--backbones-dir", help="Mini weights folder, or the paper backbone config (.toml)."),
        include: Optional[List[str]] = typer.Option(None, "--include", help="Plugin: a folder of .py files, a .py file, or a module (mypkg.methods[:MyMethod]) that registers methods or metrics; repeatable. Every trial actor imports it."),
        dataset_format: str = typer.Option("eeg-cvpr40", "--dataset-format", help="How --data is read: a registered dataset format (bench.data.dataset; a plugin may add one)."),
    ) -> int:
        """Run a grid of trials on Ray Tune; finished trials (status ok) are skipped on rerun."""
        return run_command(
            grid=grid, profile=profile, data=data, store=store,
            subjects=parse_multi(subjects, int, "subjects"), seeds=parse_multi(seeds, int, "seeds"),
            methods=parse_multi(methods, str, "methods"), max_concurrent=max_concurrent,
            gpus_per_trial=gpus_per_trial, address=address, retry_failed=retry_failed, backbones_dir=backbones_dir,
            include=include, dataset_format=dataset_format,
        )  # fmt: skip

    @grid_app.command("list")
    def grid_list() -> None:
        """Shipped grids: name, description, trial count."""
        from bench.experiment.grid import expand, expand_trials, load_grid, shipped_grids

        table = Table(title="grids (bench/grids/*.toml)")
        table.add_column("name")
        table.add_column("description")
        table.add_column("trials", justify="right")
        for name in shipped_grids():
            g = load_grid(name)
            n = sum(len(expand_trials(g, world=w)) for w in g.worlds) if g.worlds else len(expand(g))
            table.add_row(name, g.description, str(n))
        console.print(table)

    @grid_app.command("show")
    def grid_show(
        name: str = typer.Argument(..., help="Grid name or path to a grid .toml file."),
        subjects: Optional[List[str]] = typer.Option(None, "--subjects", help="Override the subject axis."),
        seeds: Optional[List[str]] = typer.Option(None, "--seeds", help="Override the seed axis."),
        methods: Optional[List[str]] = typer.Option(None, "--methods", help="Override the method axis."),
    ) -> None:
        """A grid's axes, variants and expanded trials."""
        from bench.experiment.grid import check_values, load_grid
        from bench.methods.base import METHODS
        from bench.methods.registry import load_builtin_methods

        g = load_grid(name, check=False).with_overrides(
            subjects=parse_multi(subjects, int, "subjects"), seeds=parse_multi(seeds, int, "seeds"), methods=parse_multi(methods, str, "methods")
        )
        from bench.plugins import grid_plugins

        grid_plugins(g)  # the grid's own plugins register their methods
        check_values(g)
        axes = Table(title=f"grid {g.name} ({g.source})", show_header=True)
        axes.add_column("axis")
        axes.add_column("values")
        for axis, values in g.axes().items():
            axes.add_row(axis, ", ".join(map(str, values)))
        for v in g.variants:
            opts = ", ".join(f"{k}={json.dumps(x)}" for k, x in v.options.items()) or "(none)"
            axes.add_row(f"variant {v.name}", f"{opts}  -> {', '.join(v.methods) if v.methods else 'all methods'}")
        console.print(g.description, highlight=False)
        if g.note:
            console.print(f"note: {g.note}", highlight=False)
        console.print(axes)
        if g.worlds:
            from bench.experiment.grid import expand_trials
            from bench.world.spec import spec_of_world

            wt = Table(title=f"{len(g.worlds)} worlds (run in turn without --data)")
            for col in ("world", "id", "variants", "trials"):
                wt.add_column(col)
            for w in g.worlds:
                spec = spec_of_world(w)
                only = g.world_variants(w)
                wt.add_row(spec.label(), spec.world_id, ", ".join(only) if only is not None else "all", str(len(expand_trials(g, world=w))))
            console.print(wt)
        for c in g.checks:
            console.print(f"check {c.get('name', c['effect'])}: effect {c['effect']}, {c['a']} - {c['b']} on {c['metric']} (expect {c.get('expect', 'positive')})", highlight=False)
        load_builtin_methods()
        unregistered = [m for m in dict.fromkeys(g.methods) if m not in METHODS]
        rows = grid_table_rows(g)
        trials = Table(title=f"{len(rows)} trials")
        for col in ("#", "method", "variant", "subject", "fraction", "w", "seed", "options"):
            trials.add_column(col, justify="right" if col in ("#", "subject", "fraction", "w", "seed") else "left")
        for i, r in enumerate(rows):
            trials.add_row(str(i), *r)
        console.print(trials)
        if unregistered:
            console.print(f"[yellow]not registered yet[/] (a run would stop with an error): {', '.join(unregistered)}; their w axis is kept", highlight=False)

    @app.command("perf")
    def perf(
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder. Default: the mini world (built on first use)."),
        noop_trials: int = typer.Option(16, "--noop-trials", help="noop trials for the overhead figure (>= 16 recommended)."),
        burn_trials: int = typer.Option(6, "--burn-trials", help="burn trials per concurrency level."),
        burn_seconds: float = typer.Option(2.0, "--burn-seconds", help="Approximate single-thread seconds of work per burn trial."),
        as_json: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON to this file."),
    ) -> None:
        """Measure harness overhead per trial, 2-vs-1 concurrency throughput and world load time."""
        from bench.experiment.perf import perf_table, run_perf

        root, dataset_id = resolve_data(data, say=lambda m: err_console.print(m, highlight=False) if err_console.is_terminal else None)
        with err_console.status("measuring (about a minute)") as status:
            report = run_perf(root, dataset_id, noop_trials=noop_trials, burn_trials=burn_trials, burn_seconds=burn_seconds, say=status.update)
        console.print(perf_table(report))
        if as_json:
            Path(as_json).write_text(json.dumps(report, indent=1))
            console.print(f"written {as_json}")
