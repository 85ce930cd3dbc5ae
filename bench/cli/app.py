"""The `bench` command line. Each command is a thin layer over a plain function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.errors import UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help="EEG-to-image reconstruction benchmark.")
world_app = typer.Typer(no_args_is_help=True, help="Build and inspect synthetic worlds (EEG-CVPR40 format).")
data_app = typer.Typer(no_args_is_help=True, help="Validate dataset folders.")
backbones_app = typer.Typer(no_args_is_help=True, help="Train and check the mini backbones.")
app.add_typer(world_app, name="world")
app.add_typer(data_app, name="data")
app.add_typer(backbones_app, name="backbones")

console = Console()
err_console = Console(stderr=True)


@app.callback()
def _options(
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help="Where shared work is kept (worlds, captions); default $BRAINVIS_BENCH_CACHE, else the user's cache dir."
    ),
) -> None:
    """EEG-to-image reconstruction benchmark."""
    if cache_dir is not None:
        import os

        from bench.paths import CACHE_ENV

        os.environ[CACHE_ENV] = str(cache_dir.expanduser().absolute())  # reaches Ray's workers too


def _effects_option(values: list[str] | None) -> dict[str, float]:
    """``["induced_class=0", "shared=0.5"]`` -> ``{"induced_class": 0.0, "shared": 0.5}``."""
    out: dict[str, float] = {}
    for v in values or []:
        name, sep, value = str(v).partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--effect {v!r}: expected NAME=STRENGTH, e.g. --effect induced_class=0") from None
        if not sep:
            raise UserError(f"--effect {v!r}: expected NAME=STRENGTH, e.g. --effect induced_class=0")
    return out


EFFECT_HELP = "Change a planted effect's strength, NAME=STRENGTH (0 = off: its null world); repeatable. See `bench world effects`."


@world_app.command("build")
def world_build(
    scale: str = typer.Option("mini", help="smoke (tests, seconds), mini (the default world) or full (real-set size)."),
    out: Path = typer.Option(..., help="Folder to write the world into."),
    seed: int = typer.Option(0, help="World seed: same command, same world on any machine."),
    block_drift: bool = typer.Option(False, "--block-drift", help="Present trials in class blocks with block-specific state (the confound)."),
    effect: Optional[List[str]] = typer.Option(None, "--effect", help=EFFECT_HELP),
    no_raw: bool = typer.Option(False, "--no-raw", help="Skip the raw file with slow content (the audit's band check then reports n/a)."),
    force: bool = typer.Option(False, "--force", help="Replace whatever is at --out."),
) -> None:
    """Write a synthetic world in the real dataset's exact on-disk format, probe it and write its card."""
    from bench.world.build import REPORT, build_world
    from bench.world.spec import make_spec

    spec = make_spec(scale, seed=seed, block_drift=block_drift, effects=_effects_option(effect), raw_file=not no_raw)
    with console.status(f"building world {spec.world_id}") as status:
        report = build_world(spec, out, force=force, progress=lambda msg: status.update(msg))
    probe = report["probe"]
    table = Table(title=f"world {spec.world_id} ({spec.label()}) at {out}", show_header=True)
    table.add_column("probe (test split, mean over subjects)")
    table.add_column("accuracy", justify="right")
    table.add_column("chance", justify="right")
    table.add_row("class from ERP features (evoked code)", f"{probe['class_accuracy']:.3f}", f"{probe['chance']:.3f}")
    table.add_row("class from 13-27 Hz band power (induced code)", f"{probe['induced_accuracy']:.3f}", f"{probe['chance']:.3f}")
    if "cross_subject_accuracy" in probe:
        table.add_row("class from other subjects' ERP probe (shared code)", f"{probe['cross_subject_accuracy']:.3f}", f"{probe['chance']:.3f}")
    for key, how in (("unlabelled_own_accuracy", "own"), ("unlabelled_pooled_accuracy", "all subjects'")):
        if key in probe:
            table.add_row(f"class from the ERP probe on PCs of {how} unlabelled EEG", f"{probe[key]:.3f}", f"{probe['chance']:.3f}")
    for k, v in probe.get("attribute_accuracy", {}).items():
        table.add_row(f"attribute: {k}", f"{v:.3f}", f"{probe['attribute_chance'][k]:.3f}")
    table.add_row("block state (stimulus-blind)", f"{probe['drift_accuracy']:.3f}", f"{probe['chance']:.3f}")
    console.print(table)
    bb = report.get("backbones", {})
    if bb.get("status") == "ok":
        console.print(
            f"mini backbones verified for this world: classifier {bb['classifier_accuracy']:.3f}, CLIP retrieval "
            f"{bb['clip_retrieval_top1']:.3f}, generator class fidelity {bb['generator_class_fidelity']:.3f} "
            f"(shuffled {bb['generator_class_fidelity_shuffled']:.3f}; chance {bb['chance']:.3f})"
        )
    elif bb:
        console.print(f"[yellow]mini backbones: {bb.get('reason', bb.get('status'))}[/]")
    console.print(f"report: {Path(out) / REPORT}; card: {Path(out) / 'world_card.md'}  ({report.get('timings_s', {}).get('total', 0):.1f} s)")


@world_app.command("show")
def world_show(
    world: Optional[Path] = typer.Argument(None, help="A built world's folder (default: the world of --scale/--seed/--effect in the cache, if built)."),
    scale: str = typer.Option("mini", help="Scale of the cached world to show (without WORLD)."),
    seed: int = typer.Option(0, help="Seed of the cached world to show (without WORLD)."),
    block_drift: bool = typer.Option(False, "--block-drift", help="The block-drift variant (without WORLD)."),
    effect: Optional[List[str]] = typer.Option(None, "--effect", help=EFFECT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the card as JSON."),
) -> None:
    """Print a world's card: its planted effects, their strengths, its own probe figures and the known answers."""
    from rich.markdown import Markdown

    from bench.world.card import CARD_JSON, CARD_MD, write_card

    if world is None:
        from bench.paths import world_dir
        from bench.world.spec import make_spec

        spec = make_spec(scale, seed=seed, block_drift=block_drift, effects=_effects_option(effect))
        world = world_dir(spec.world_id)
        if not world.is_dir():
            raise UserError(f"world {spec.world_id} ({spec.label()}) is not built yet; `bench world build --out DIR` or any `bench run` on it builds it")
    if not (world / "world.json").is_file() or not (world / "world_report.json").is_file():
        raise UserError(f"{world}: not a synthetic world (no world.json / world_report.json)")
    if not (world / CARD_MD).is_file():
        write_card(world)
    if as_json:
        console.print_json((world / CARD_JSON).read_text())
    else:
        console.print(Markdown((world / CARD_MD).read_text()))


@world_app.command("effects")
def world_effects() -> None:
    """The effects a world can plant: default strength, what finds it, the known answer."""
    from bench.world.effects import effect_table

    table = Table(title="planted effects (bench/world/effects.py); --effect NAME=0 builds the null world")
    for col in ("effect", "default", "plants", "found by", "expected"):
        table.add_column(col, overflow="fold")
    for r in effect_table():
        table.add_row(r["effect"], f"{r['default']:g}", r["description"], r["found_by"], r["expected"])
    console.print(table)


@data_app.command("check")
def data_check(
    root: Path = typer.Argument(..., help="Dataset folder: eeg_5_95_std.pth, block_splits_*.pth, images/."),
    image_root: Optional[Path] = typer.Option(None, help="Image folder if not ROOT/images."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quick: bool = typer.Option(False, "--quick", help="Decode a seeded sample of 200 images instead of all (all are still checked to exist)."),
) -> None:
    """Validate a dataset folder (real or synthetic): every file, every trial, every image (decoded), and print a summary."""
    from bench.data.check import check_dataset

    summary = check_dataset(root, image_root=image_root, quick=quick)
    if as_json:
        console.print_json(json.dumps(summary.to_dict()))
        return
    modes = [m for m in ("all", "single") if any(m in r for r in summary.subjects.values())]
    table = Table(title=f"{root}: {', '.join(f'{k} ({v} trials)' for k, v in summary.eeg_files.items())}")
    for col in ["subject", "trials", "450<=L<=600", "full 20..460"] + [f"{m} train/val/test" for m in modes]:
        table.add_column(col, justify="right")
    for s, row in summary.subjects.items():
        cells = [str(s), str(row["trials"]), str(row["kept"]), str(row["full_window"])]
        cells += ["/".join(str(row[m][k]) for k in ("train", "val", "test")) for m in modes]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"classes: {summary.n_classes} ({summary.known_classes} EEG-CVPR40 WNIDs); images: {summary.n_images}, none missing, "
        f"{summary.images_decoded} decoded"
        + (f"; captions for {summary.captions}" if summary.captions is not None else "")
    )
    if summary.world:
        console.print(f"synthetic world {summary.world['world_id']} ({summary.world.get('command', '')})")
    console.print("[green]ok[/]")


@backbones_app.command("train")
def backbones_train(
    world: Path = typer.Option(..., help="The synthetic world to train for (built with `bench world build`)."),
    out: Path = typer.Option(..., help="Folder for the weights (*.safetensors) and manifest.json."),
    seed: int = typer.Option(0, help="Training seed."),
    quick: bool = typer.Option(False, "--quick", help="A few steps per model: checks the pipeline, not for use."),
) -> None:
    """Train the mini CLIP, VAE, UNet, classifier, fidelity net and captioner for a world (CPU, ~1 h)."""
    from dataclasses import replace

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.backbones.train_mini import QUICK, TrainConfig, train_backbones

    cfg = replace(QUICK if quick else TrainConfig(), seed=seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"), TimeElapsedColumn(), console=console) as bar:
        tasks: dict[str, int] = {}

        def update(state: dict) -> None:
            for name, (step, total, loss) in sorted(state.items()):
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total, loss="-")
                bar.update(tasks[name], completed=step, loss=f"{loss:.3f}")

        manifest = train_backbones(world, out, cfg, progress=update)
    _print_quality(manifest["quality"], f"mini backbones for stimuli {manifest['stimulus_id']} ({manifest['train_minutes']} min)")


@backbones_app.command("check")
def backbones_check(
    world: Optional[Path] = typer.Option(None, help="World folder to check the weights against (default: the shipped weights' manifest only)."),
    weights: Optional[Path] = typer.Option(None, help="Weights folder (default: the shipped bench/weights)."),
) -> None:
    """Verify mini weights against a world's id and print their recorded quality figures."""
    from bench.backbones import mini as M
    from bench.world.build import read_manifest

    folder = weights or M.WEIGHTS_DIR
    if world is not None:
        wm = read_manifest(world)
        if wm is None:
            raise UserError(f"{world}: not a synthetic world (no world.json)")
        manifest = M.check_stimuli(wm.get("stimulus_id", ""), folder)
    else:
        manifest = M.read_manifest(folder)
    _print_quality(manifest.get("quality", {}), f"mini backbones at {folder} (stimuli {manifest.get('stimulus_id')}, trained on world {manifest['world_id']})")


def _print_quality(quality: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in quality.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.3f}")
    settings = quality.get("settings", {})
    if settings:
        table.add_row("generator settings", f"{settings.get('sampling_steps')} steps, guidance {settings.get('guidance')}")
    console.print(table)


@app.command("score")
def score(
    gt_dir: Path = typer.Argument(..., help="Ground-truth images, one per name (<name>.<ext>)."),
    gen_dir: Path = typer.Argument(..., help="Generated images <name>_<k>.png, k = 0, 1, ... samples per ground truth."),
    backbones: str = typer.Option("mini", help="mini (shipped weights) or paper (real weights; see --paper-config)."),
    paper_config: Optional[Path] = typer.Option(None, help="TOML with the paper backbones' paths (bench.backbones.paper)."),
    weights: Optional[Path] = typer.Option(None, help="Mini weights folder (default: the shipped ones)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
    n: int = typer.Option(50, help="N of N-way Top-K (clamped to the classifier's classes, recorded)."),
    k: int = typer.Option(1, help="K of N-way Top-K."),
    trials: int = typer.Option(50, help="N-way draws per image."),
    seed: int = typer.Option(0, help="Seed of the N-way draws."),
    is_splits: int = typer.Option(1, help="Inception Score splits (a protocol setting, recorded; never derived from the number of images)."),
) -> None:
    """Score a folder of reconstructions against ground truth: N-way Top-K, IS, SSIM, CLIP similarity, FID, KID.

    Intervals: Wilson for N-way, Student t for SSIM/CS, a jackknife over ground truths for IS/FID/KID,
    from the same feature pass as the headline (each result names its ci_method)."""
    import time

    from bench.evaluation.score_folders import match_folders, score_matched
    from bench.evaluation.scoring import ScoreSettings

    t0 = time.perf_counter()
    if json_out is not None:
        from bench.results.store import check_writable_folder

        if json_out.expanduser().is_dir():
            raise UserError(f"--json {json_out}: is a folder; give a file name")
        check_writable_folder(json_out.expanduser().absolute().parent, "--json")
    if is_splits < 1:
        raise UserError(f"--is-splits must be >= 1; got {is_splits}")
    matched = match_folders(gt_dir, gen_dir)  # every folder problem is reported before models load
    if is_splits > len(matched[0]):
        raise UserError(f"--is-splits {is_splits}: more splits than the {len(matched[0])} ground truths")
    if backbones == "mini":
        from bench.backbones.mini import WEIGHTS_DIR, load_mini_backbones

        bb = load_mini_backbones(weights or WEIGHTS_DIR)
    elif backbones == "paper":
        from bench.backbones.paper import load_paper_backbones, load_paper_config

        if paper_config is None:
            raise UserError("--backbones paper needs --paper-config FILE.toml naming the weights (see bench.backbones.paper)")
        bb = load_paper_backbones(load_paper_config(paper_config), roles=("image_encoder", "classifier", "fidelity"))
    else:
        raise UserError(f"--backbones must be 'mini' or 'paper'; got {backbones!r}")
    metrics, meta = score_matched(*matched, bb, ScoreSettings(n=n, k=k, trials=trials, seed=seed, is_splits=is_splits))
    table = Table(title=f"{meta['n_ground_truth']} ground truths x {meta['samples_per_ground_truth']} samples ({time.perf_counter() - t0:.1f} s)")
    for col in ("metric", "value", "95% CI", "protocol"):
        table.add_column(col, justify="right" if col != "protocol" else "left")
    for name, m in metrics.items():
        ci = f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]" if m.get("ci_low") is not None else "-"
        proto = ", ".join(f"{kk}={vv}" for kk, vv in m.items() if kk not in ("value", "ci_low", "ci_high") and not isinstance(vv, (list, dict)))
        table.add_row(name, f"{m['value']:.4f}", ci, proto)
    console.print(table)
    for name, why in meta.get("not_computable", {}).items():
        console.print(f"{name}: not computable ({why})", highlight=False)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({**metrics, "not_computable": meta.get("not_computable", {})}, indent=1))
        console.print(f"wrote {json_out}")


@app.command("leaderboard")
def leaderboard(
    store: Path = typer.Option(Path("runs/data_scaling"), help="Results store (its records/ folder)."),
    grid: Optional[str] = typer.Option(None, help="Grid name (default: every grid with records in the store)."),
    out: Path = typer.Option(Path("leaderboards"), help="Output folder."),
    fmt: str = typer.Option("md", "--format", help="md, latex or csv."),
    data: Optional[Path] = typer.Option(None, help="Dataset folder (ground-truth images for the gallery)."),
    include: Optional[list[str]] = typer.Option(None, "--include", help="Plugin (folder, .py file or module) whose metrics or methods the records name; repeatable. A grid's own include is loaded anyway."),
) -> None:
    """Write a grid's leaderboard (tables with CIs, plots, gallery) purely from stored records."""
    from bench.plugins import grid_plugins
    from bench.results.leaderboard import write_leaderboard

    grid_plugins(None, include)

    if fmt not in ("md", "latex", "csv"):
        raise UserError(f"--format must be md, latex or csv; got {fmt!r}")
    from bench.results.leaderboard import load_records
    from bench.results.store import check_writable_folder

    if not store.is_dir():
        raise UserError(f"--store {store}: no such folder")
    out = check_writable_folder(out, "--out")

    grids = [grid] if grid else sorted({r.get("grid") or store.name for r in load_records(store) if r.get("status") == "ok"})
    if not grids:
        raise UserError(f"{store}: no trial records (expected {store}/records/<key>.json)")
    for g in grids:
        for path in write_leaderboard(store, g, out, fmt, data_root=data):
            console.print(f"wrote {path}")


@app.command("compare")
def compare(
    method_a: str = typer.Argument(..., help="A method, or a grid variant as METHOD[VARIANT] (e.g. 'brainvis[no_freq]'); @W picks one w (e.g. 'brainvis[full]@0'; default: the w closest to 0.5)."),
    method_b: str = typer.Argument(..., help="The method A is compared against (same forms)."),
    store: Path = typer.Option(Path("runs/data_scaling"), help="Results store."),
    grid: Optional[str] = typer.Option(None, help="Only records of this grid."),
    subject: Optional[int] = typer.Option(None, help="Only this subject."),
    dataset: Optional[str] = typer.Option(None, help="Only this dataset id (default: pairs from every dataset in the store, pooled)."),
    fraction: Optional[float] = typer.Option(None, help="Only this training-data fraction (default: pairs from every fraction, pooled)."),
    metric: Optional[list[str]] = typer.Option(None, help="Metrics (repeatable; default: all per-trial metrics)."),
    markdown: Optional[Path] = typer.Option(None, help="Also write the table as markdown here."),
    include: Optional[list[str]] = typer.Option(None, "--include", help="Plugin (folder, .py file or module) whose metrics the records name; repeatable."),
) -> None:
    """Paired difference A - B with 95% CI and p-values, on the same test trials (and across subjects, with d_z, when there are several)."""
    from bench.plugins import grid_plugins
    from bench.results.compare import compare_markdown, compare_methods

    grid_plugins(None, include)

    if not store.is_dir():
        raise UserError(f"--store {store}: no such folder")
    if markdown is not None and markdown.expanduser().is_dir():
        raise UserError(f"--markdown {markdown}: is a folder; give a file name")
    res = compare_methods(store, method_a, method_b, subject=subject, metrics=metric, grid=grid, dataset=dataset, fraction=fraction)
    table = Table(title=f"{method_a} (w = {res['w_a']:g}) - {method_b} (w = {res['w_b']:g}) over test trials ({len(res['pairs'])} paired trial sets; {', '.join(res['datasets'])}); p Holm-corrected over metrics")
    for col in ("metric", "mean A", "mean B", "A - B", "95% CI", "p perm", "p Holm", "p Wilcoxon", "n"):
        table.add_column(col, justify="right")
    for m, r in res["metrics"].items():
        table.add_row(m, f"{r['mean_a']:.4f}", f"{r['mean_b']:.4f}", f"{r['diff']:+.4f}", f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]", f"{r['p_value']:.3g}", f"{r['p_value_holm']:.3g}", f"{r['p_value_wilcoxon']:.3g}", str(r["n"]))
    console.print(table)
    subjects = {m: r["subjects"] for m, r in res["metrics"].items() if "subjects" in r}
    if subjects:
        test = next(iter(subjects.values()))["test"]
        table = Table(title=f"{method_a} - {method_b} across subjects (subject means; {test}; p Holm-corrected over metrics)")
        for col in ("metric", "mean A", "mean B", "A - B", "95% CI", "d_z", "p", "p Holm", "subjects"):
            table.add_column(col, justify="right")
        for m, r in subjects.items():
            ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
            table.add_row(m, f"{r['mean_a']:.4f}", f"{r['mean_b']:.4f}", f"{r['diff']:+.4f}", ci, "-" if r["d_z"] is None else f"{r['d_z']:+.2f}", f"{r['p_value']:.3g}", f"{r['p_value_holm']:.3g}", str(r["n"]))
        console.print(table)
    else:
        console.print("one subject: trial-level test only (a subject-level test needs pairs on two or more subjects)", highlight=False)
    if markdown:
        markdown.write_text(compare_markdown(res))
        console.print(f"wrote {markdown}")


from bench.cli import audit as cli_audit, harness as cli_harness, methods as cli_methods  # noqa: E402

cli_harness.register(app)
cli_audit.register(app)
cli_methods.register(app)


def _click_classes() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(ClickException, Exit, Abort) classes of click *and* of the click copy typer may vendor
    (typer >= 0.29 ships its own as ``typer._click``): usage errors come from whichever one it uses."""
    errors = {click.ClickException}
    errors |= {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"}
    exits = {click.exceptions.Exit, typer.Exit}
    aborts = {click.exceptions.Abort, typer.Abort}
    return tuple(errors), tuple(exits), tuple(aborts)


def _show_usage_error(exc: Exception) -> int:
    """Click's own message (usage line, hint, error) on stderr; exit 2 for usage errors. A command or
    group called with nothing (``bench``, ``bench world``) prints its help on stdout and exits 0."""
    if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
        typer.echo(exc.ctx.get_help())
        return 0
    exc.show()
    return int(getattr(exc, "exit_code", 2) or 2)


def main(argv: list[str] | None = None) -> int:
    """Entry point (the console script calls ``sys.exit(main())``).

    User errors print one line and return 2; usage errors (missing or unknown options and commands,
    values of the wrong type) print click's usage message and return 2; never a traceback.
    """
    import sys
    import warnings

    click_errors, exits, aborts = _click_classes()
    with warnings.catch_warnings():
        # The harness's own warnings (e.g. a skipped malformed record) as one line each; libraries'
        # warnings are for their developers (shown with PYTHONWARNINGS set).
        warnings.showwarning = _one_line_warning
        if not sys.warnoptions:
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", category=UserWarning, module=r"bench(\.|$)")
        try:
            rv = app(args=argv, prog_name="bench", standalone_mode=False)
        except UserError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True, markup=True)
            return 2
        except exits as exc:
            return int(getattr(exc, "exit_code", 0) or 0)
        except click_errors as exc:
            return _show_usage_error(exc)
        except (*aborts, KeyboardInterrupt):
            err_console.print("interrupted", highlight=False)
            return 130
    return rv if isinstance(rv, int) else 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of the harness (e.g. a skipped malformed record) as one ``warning:`` line on stderr."""
    if issubclass(category, UserWarning) and category.__module__.startswith("bench"):
        err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        import warnings

        err_console.print(warnings.formatwarning(message, category, filename, lineno, line).rstrip(), highlight=False, markup=False)
