"""A grid run end to end, as `bench run` and :func:`bench.run_benchmark` do it: resolve the data (the
mini world, built on first use, or a folder), validate it in the driver, run the trials on Ray,
print the summary, then the leakage audit, the world card and the leaderboard. The CLI only parses
options and calls :func:`run_command`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Callable

from rich.console import Console

from bench.data.dataset import DEFAULT_FORMAT, open_dataset
from bench.errors import UserError
from bench.methods.generation import check_generation
from bench.paths import PROFILES_DIR
from bench.results.summary import metric_summary, print_table, summary_width

console = Console()
err_console = Console(stderr=True)


def load_profile(name: str) -> dict:
    """``bench/profiles/<name>.toml`` as a dict ({} if that file does not exist)."""
    entry = PROFILES_DIR / f"{name}.toml"
    if not entry.is_file():
        return {}
    try:
        profile = tomllib.loads(entry.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"profile {name}: bench/profiles/{name}.toml is not valid TOML ({exc})") from exc
    try:
        check_generation(profile.get("generation", {}))
    except UserError as exc:
        raise UserError(f"profile {name}: {exc}") from exc
    return profile


def resolve_data(data: Path | None, *, say: Callable[[str], None] = lambda m: None, dataset_format: str = DEFAULT_FORMAT) -> tuple[Path, str]:
    """(data root, dataset id). No ``data``: the mini world in the cache, built on first use; else the
    folder read as ``dataset_format`` (a registered :mod:`bench.data.dataset` format)."""
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
    try:
        dataset = open_dataset(root, dataset_format)
    except UserError as exc:
        raise UserError(f"--data {data}: {exc}") from exc
    return root, dataset.dataset_id


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
    dataset_format: str = DEFAULT_FORMAT,
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
               retry_failed=retry_failed, backbones_dir=backbones_dir, live=live, log=log, say=say, plugins=plugins,
               dataset_format=dataset_format)  # fmt: skip
    # The whole command's peak (world build and backbone check included), printed with each summary.
    with log, PeakMemory() as memory:
        if dataset_format != DEFAULT_FORMAT and data is None:
            raise UserError(f"--dataset-format {dataset_format}: give the dataset folder with --data")
        if g.worlds and data is None:
            # A grid over several synthetic worlds (e.g. leakage: with and without block drift) runs
            # once per world into the same store; records differ by dataset id.
            codes = []
            for world in g.worlds:
                codes.append(_run_one_dataset(g, resolve_world(world, say=say), world=world, memory=memory, **run))
                if codes[-1] == 130:
                    break  # interrupted: the other worlds run next time
            return max(codes)
        return _run_one_dataset(g, resolve_data(data, say=say, dataset_format=dataset_format), memory=memory, **run)


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


def _run_one_dataset(g, data: tuple[Path, str], *, base, store: Path, max_concurrent, gpus_per_trial, address, retry_failed, backbones_dir, live, log, say, memory=None, world: dict | None = None, plugins: tuple[str, ...] = (), dataset_format: str = DEFAULT_FORMAT) -> int:
    root, dataset_id = data
    from bench.experiment.grid import check_subjects, expand_trials
    from bench.paths import cache_dir
    from bench.experiment.progress import RunProgress
    from bench.experiment.runner import run_grid
    from bench.results.store import Store, StoreLock
    from bench.experiment.trial import RunEnv

    dataset = open_dataset(root, dataset_format)
    check_subjects(g, dataset.subjects())
    # The dataset's own checks (EEG-CVPR40: those of `bench data check`), in the driver and before
    # Ray: a bad file stops here (exit 2) rather than as one failed trial record per trial.
    dataset.validate(progress=say)

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
        dataset_format=dataset_format,
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
        if memory is not None:
            memory.include(summary.peak_pss_mib)  # the runner samples the trials on its own; the command's peak covers them
        console.print(
            f"grid {g.name}: {summary.total} trials; ran {summary.ran} ({summary.ok} ok, {summary.failed} failed); "
            f"skipped {summary.skipped_ok} already done" + (f", {summary.skipped_failed} failed before (use --retry-failed)" if summary.skipped_failed else "")
            + (f"; {summary.not_run} not run (interrupted; they run next time)" if summary.not_run else "")
            + f"; {summary.wall_s:.1f} s"
            + (f"; peak memory through the trials {max(summary.peak_pss_mib, memory.peak_pss if memory else 0) / 1024:.2f} GiB" if summary.ran or summary.not_run else "")
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
        if dataset.audited:
            ensure_audit(st.root, root, dataset_id, name="audit.json" if not g.worlds else f"audit-{dataset_id}.json", say=say)
        else:
            say(f"no leakage audit: it reads EEG-CVPR40 files, and this dataset is {dataset_format}")
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
    if memory is not None and (summary.ran or summary.not_run):
        # The summary line's figure stops at the trials; the audit (in this process) comes after them.
        console.print(f"peak memory of the command so far (world, trials, audit, leaderboard): {memory.peak_pss / 1024:.2f} GiB", highlight=False)
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
