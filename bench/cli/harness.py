"""CLI commands of the harness (`bench run`, `bench grid ...`, `bench perf`), registered on the main app.

Multi-value options take a comma list, a repeated flag, or both:
``--subjects 1,4``, ``--subjects 1 --subjects 4`` and ``--subjects 1,4 --subjects 6`` all work.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import UserError
from bench.paths import PROFILES_DIR
from bench.data.eegcvpr40 import EEG_FILE

console = Console()
err_console = Console(stderr=True)



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


def load_profile(name: str) -> dict:
    """``bench/profiles/<name>.toml`` as a dict ({} if that file does not exist)."""
    entry = PROFILES_DIR / f"{name}.toml"
    if not entry.is_file():
        return {}
    try:
        return tomllib.loads(entry.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"profile {name}: bench/profiles/{name}.toml is not valid TOML ({exc})") from exc


def folder_dataset_id(root: Path) -> str:
    """``world.json``'s world id, else ``cvpr40:`` + a short hash of the EEG file's name, size and mtime."""
    manifest = root / "world.json"
    if manifest.is_file():
        try:
            wid = json.loads(manifest.read_text()).get("world_id")
            if wid:
                return str(wid)
        except (OSError, ValueError):
            pass
    st = (root / EEG_FILE).stat()
    blob = f"{EEG_FILE}:{st.st_size}:{int(st.st_mtime)}"
    return "cvpr40:" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def resolve_data(data: Path | None, *, say: Callable[[str], None] = lambda m: None) -> tuple[Path, str]:
    """(data root, dataset id). No ``data``: the mini world in the cache, built on first use."""
    if data is None:
        from bench.paths import world_dir
        from bench.world.build import build_world_isolated
        from bench.world.spec import make_spec

        spec = make_spec("mini")
        out = world_dir(spec.world_id)
        say(f"mini world {spec.world_id} at {out}")
        build_world_isolated(spec, out, progress=say)
        return out.absolute(), spec.world_id
    root = Path(data).expanduser().absolute()
    if not root.is_dir():
        raise UserError(f"--data {data}: no such folder")
    if not (root / EEG_FILE).is_file():
        raise UserError(f"--data {data}: {EEG_FILE} not found (expected the EEG-CVPR40 layout; see `bench data check`)")
    return root, folder_dataset_id(root)


def summary_width(out: Console, log_width: int = 160) -> int:
    """A terminal's width (or $COLUMNS); ``log_width`` when stdout is a file or pipe (rich would use 80)."""
    return out.width if out.is_terminal or "COLUMNS" in os.environ else log_width


def print_table(out: Console, table: Table) -> None:
    """Print at :func:`summary_width`, wider than rich's 80 columns when writing to a log."""
    width = summary_width(out)
    if width <= out.width:
        out.print(table)
    else:
        Console(file=out.file, width=width, color_system=None).print(table)


def metric_summary(frame, keys: list[str], width: int = 160) -> Table | None:
    """Method (x variant) x metric means over this run's ok records: the headline metrics first (the
    leaderboard's names), then the rest, as many as fit ``width`` columns without truncating a cell."""
    if frame.empty:
        return None
    df = frame[frame["key"].isin(keys)]
    if df.empty:
        return None
    from bench.metrics import METRICS, shown_metrics

    short = {f"metric.{m.name}": m.label for m in shown_metrics()}  # the leaderboard's columns, in its order
    present = [c for c in df.columns if c.startswith("metric.") and not c.endswith((".ci_low", ".ci_high"))]
    metrics = [m for m in short if m in present] + sorted(m for m in present if m not in short)
    short |= {m: METRICS[m.removeprefix("metric.")].label for m in present if m.removeprefix("metric.") in METRICS and m not in short}
    df = df.assign(row=df["method"] + df["variant"].fillna("").map(lambda v: f" [{v}]" if v else ""))
    rows = []
    for row, g in df.groupby("row", sort=False):
        ok = g[g["status"] == "ok"]
        cells = {"method": str(row), "ok": str(len(ok)), "failed": str(int((g["status"] != "ok").sum()))}
        for m in metrics:
            vals = ok[m].dropna() if m in ok else []
            cells[m] = f"{vals.mean():.3f}" if len(vals) else "-"
        rows.append(cells)

    def col_width(col: str, header: str) -> int:  # rich: one border + one space of padding each side
        return max(len(header), *(len(r[col]) for r in rows)) + 3

    used = 1 + sum(col_width(c, c) for c in ("method", "ok", "failed"))
    shown = []
    for m in metrics:
        need = col_width(m, short.get(m, m.removeprefix("metric.")))
        if used + need > width:
            break
        used += need
        shown.append(m)
    left = len(metrics) - len(shown)
    table = Table(title="mean over this grid's trials (ok only)", caption=f"{left} more metric(s) in the store's records" if left else None)
    table.add_column("method", no_wrap=True)
    table.add_column("ok", justify="right")
    table.add_column("failed", justify="right")
    for m in shown:
        table.add_column(short.get(m, m.removeprefix("metric.")), justify="right", no_wrap=True)
    for cells in rows:
        table.add_row(cells["method"], cells["ok"], cells["failed"], *(cells[m] for m in shown))
    return table


def run_command(
    *,
    grid: str,
    profile: str | None = None,
    data: Path | None = None,
    store: Path | None = None,
    subjects: list[int] | None = None,
    seeds: list[int] | None = None,
    methods: list[str] | None = None,
    max_concurrent: int | None = None,
    gpus_per_trial: float = 0.0,
    address: str | None = None,
    retry_failed: bool = False,
    backbones_dir: Path | None = None,
    live: bool | None = None,
    include: list[str] | None = None,
) -> int:
    """`bench run`: every check that needs no data first (grid values, methods, cluster address,
    store folder), then per dataset: build or validate it, lock the store, run, audit, leaderboard."""
    from bench.experiment.grid import check_all, load_grid
    from bench.experiment.memory import PeakMemory
    from bench.experiment.progress import LineLog
    from bench.results.store import check_writable_folder

    base = load_grid(grid, check=False)
    g = base.with_overrides(methods=methods, subjects=subjects, seeds=seeds, profile=profile)
    from bench.plugins import grid_plugins

    plugins = grid_plugins(g, include)
    check_all(g)  # values + methods (plugins' too), before any data or store is touched
    if address:
        from bench.experiment.runner import check_address

        check_address(address)
    store = check_writable_folder(store if store is not None else Path("runs") / g.name, "--store")
    if backbones_dir is not None and not Path(backbones_dir).expanduser().exists():
        raise UserError(f"--backbones-dir {backbones_dir}: not found")
    # Progress: plain timestamped lines with a heartbeat when stderr is a log, not a terminal.
    log = LineLog(err_console, heartbeat=not err_console.is_terminal)
    say = log.say if not err_console.is_terminal else (lambda m: err_console.print(m, highlight=False))
    run = dict(base=base, store=store, max_concurrent=max_concurrent, gpus_per_trial=gpus_per_trial, address=address,
               retry_failed=retry_failed, backbones_dir=backbones_dir, live=live, log=log, say=say, plugins=plugins)  # fmt: skip
    # The whole command's peak (world build and backbone check included), printed with each summary.
    with log, PeakMemory() as memory:
        if g.worlds and data is None:
            # A grid over several synthetic worlds (e.g. leakage: with and without block drift) runs
            # once per world into the same store; records differ by dataset id.
            codes = []
            for world in g.worlds:
                codes.append(_run_one_dataset(g, resolve_world(world, say=say), world=world, memory=memory, **run))
                if codes[-1] == 130:
                    break  # interrupted: the other worlds run next time
            return max(codes)
        return _run_one_dataset(g, resolve_data(data, say=say), memory=memory, **run)


def resolve_world(world: dict, *, say: Callable[[str], None] = lambda m: None) -> tuple[Path, str]:
    """Build or reuse a synthetic world of a grid's ``worlds`` list in the cache."""
    from bench.paths import world_dir
    from bench.world.build import build_world_isolated
    from bench.world.spec import spec_of_world

    spec = spec_of_world(world)
    out = world_dir(spec.world_id)
    say(f"world {spec.world_id} ({spec.label()}) at {out}")
    build_world_isolated(spec, out, progress=say)
    return out.absolute(), spec.world_id


def _run_one_dataset(g, data: tuple[Path, str], *, base, store: Path, max_concurrent, gpus_per_trial, address, retry_failed, backbones_dir, live, log, say, memory=None, world: dict | None = None, plugins: tuple[str, ...] = ()) -> int:
    root, dataset_id = data
    from bench.data.check import validate_dataset
    from bench.experiment.grid import check_subjects, expand_trials
    from bench.paths import cache_dir
    from bench.experiment.progress import RunProgress
    from bench.experiment.runner import run_grid
    from bench.results.store import Store, StoreLock
    from bench.experiment.trial import RunEnv, dataset_subjects

    check_subjects(g, dataset_subjects(root))
    # The checks of `bench data check`, in the driver and before Ray: a bad file stops here (exit 2)
    # rather than as one failed trial record per trial.
    validate_dataset(root, progress=say)

    st = Store(store)
    env = RunEnv(
        data_root=str(root),
        dataset_id=dataset_id,
        profile=load_profile(str(g.profile)),
        backbones="none" if not g.world_generates(world) else "paper" if g.profile == "paper" else "mini",
        backbones_dir=str(Path(backbones_dir).expanduser().absolute()) if backbones_dir else None,
        images_dir=str(st.root / "images"),
        cache_dir=str(cache_dir()),  # explicit: workers on other nodes do not share this environment
        plugins=tuple(plugins),
    )
    trials = expand_trials(g, world=world)
    live = err_console.is_terminal if live is None else live
    progress = RunProgress(st, title=f"grid {g.name}", console=err_console, live=live, log=None if live else log)
    with StoreLock(st.root):
        summary = run_grid(
            trials, env, st, max_concurrent=max_concurrent, gpus_per_trial=gpus_per_trial, address=address,
            retry_failed=retry_failed, progress=progress, name=g.name,
        )  # fmt: skip
        interrupted = bool(summary.not_run)
        console.print(
            f"grid {g.name}: {summary.total} trials; ran {summary.ran} ({summary.ok} ok, {summary.failed} failed); "
            f"skipped {summary.skipped_ok} already done" + (f", {summary.skipped_failed} failed before (use --retry-failed)" if summary.skipped_failed else "")
            + (f"; {summary.not_run} not run (interrupted; they run next time)" if summary.not_run else "")
            + f"; {summary.wall_s:.1f} s"
            + (f"; peak memory {max(summary.peak_pss_mib, memory.peak_pss if memory else 0) / 1024:.2f} GiB" if summary.ran or summary.not_run else "")
            + f"; store {st.root}",
            highlight=False,
            soft_wrap=True,
        )
        frame = st.load_frame()
        table = metric_summary(frame, summary.keys, width=summary_width(console))
        if table is not None:
            print_table(console, table)
        if summary.failed_keys:
            fails = frame[frame["key"].isin(summary.failed_keys)]
            for _, r in fails.head(10).iterrows():
                err_console.print(f"[red]failed[/] {r['method']} subject {r['subject']} fraction {r['fraction']:g} seed {r['seed']}: {r['error']} ({st.path(r['key'])})", highlight=False, soft_wrap=True)
            if len(fails) > 10:
                err_console.print(f"... and {len(fails) - 10} more failed trials", highlight=False)
        if interrupted:
            err_console.print("interrupted: the leakage audit and the leaderboard are left for the next run", highlight=False)
            return 130
        ensure_audit(st.root, root, dataset_id, name="audit.json" if not g.worlds else f"audit-{dataset_id}.json", say=say)
        from bench.world.card import keep_card

        keep_card(st.root, root, dataset_id)  # a synthetic world's card travels with its records
        if summary.ok or summary.skipped_ok:
            from dataclasses import replace

            from bench.results.leaderboard import write_leaderboard

            try:
                # The grid's whole table (every method in the store), widened by this run's --subjects/--seeds.
                board = replace(base, subjects=tuple(dict.fromkeys(base.subjects + g.subjects)), seeds=tuple(dict.fromkeys(base.seeds + g.seeds)))
                say("writing the leaderboard")
                written = write_leaderboard(st.root, board, out_dir=st.root / "leaderboard", data_root=root)
                console.print(f"leaderboard: {', '.join(map(str, written or []))}", highlight=False, soft_wrap=True)
            except Exception as exc:  # noqa: BLE001 - the results are in the store either way
                err_console.print(f"[yellow]leaderboard not written:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
    return 1 if summary.failed_keys else 0


def ensure_audit(store_root: Path, data_root: Path, dataset_id: str, name: str = "audit.json", say: Callable[[str], None] | None = None) -> None:
    """Run the leakage audit once per dataset and keep it in the store (the leaderboard footer
    shows its verdict). A failing audit never fails the run."""
    path = Path(store_root) / name
    try:
        if path.is_file() and json.loads(path.read_text()).get("dataset_id") == dataset_id:
            return
        from bench.evaluation.audit import audit_dataset, write_report

        say = say or (lambda m: err_console.print(m, highlight=False))
        say("running the leakage audit of this dataset (once; kept in the store)")
        report = audit_dataset(data_root, progress=say)
        report["dataset_id"] = dataset_id
        write_report(report, path)
    except Exception as exc:  # noqa: BLE001 - the audit is evidence, not a prerequisite
        err_console.print(f"[yellow]audit not run:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)


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
    ) -> int:
        """Run a grid of trials on Ray Tune; finished trials (status ok) are skipped on rerun."""
        return run_command(
            grid=grid, profile=profile, data=data, store=store,
            subjects=parse_multi(subjects, int, "subjects"), seeds=parse_multi(seeds, int, "seeds"),
            methods=parse_multi(methods, str, "methods"), max_concurrent=max_concurrent,
            gpus_per_trial=gpus_per_trial, address=address, retry_failed=retry_failed, backbones_dir=backbones_dir,
            include=include,
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
