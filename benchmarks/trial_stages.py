"""Benchmark: per-stage wall times of single trials on the mini world (one torch thread).

    python benchmarks/trial_stages.py [--methods brainvis,lstm] [--subject 4] [--fraction 1.0] [--backbones mini|none]

Prints load / caption / fit (with BrainVis' internal stages) / predict / generate / score seconds,
each training stage's best validation epoch against the epochs it ran (and its budget), and the
test metrics of each trial. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from bench.methods.base import TrialSpec
from bench.paths import world_dir
from bench.experiment.trial import RunEnv, run_trial
from bench.world.build import build_world
from bench.world.spec import make_spec

PROFILES = Path(__file__).resolve().parent.parent / "bench" / "profiles"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="brainvis")
    ap.add_argument("--subject", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--data", default=None, help="dataset folder (default: the cached mini world)")
    ap.add_argument("--backbones", default="mini", choices=("mini", "none"), help="none: classification only")
    ap.add_argument("--backbones-dir", default=None, help="mini weights folder (default: the shipped ones)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = make_spec("mini")
    root = Path(args.data) if args.data else world_dir(spec.world_id)
    if args.data is None:
        build_world(spec, root)
    profile = tomllib.loads((PROFILES / "mini.toml").read_text())
    env = RunEnv(data_root=str(root), dataset_id=spec.world_id if args.data is None else f"bench:{root.name}", profile=profile,
                 backbones=args.backbones, backbones_dir=args.backbones_dir)
    table = Table(title=f"trial stages on {root.name} (subject {args.subject}, fraction {args.fraction})")
    for col in ("method", "stage", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        out = run_trial(TrialSpec(method, subject=args.subject, fraction=args.fraction), env)
        total = time.perf_counter() - t0
        for stage, sec in out["timings"].items():
            table.add_row(method, stage, f"{sec:.1f}")
        for stage, sec in out["fit"].get("stage_seconds", {}).items():
            table.add_row(method, f"  fit: {stage}", f"{sec:.1f}")
        stages = {"train": out["fit"]} if "best_epoch" in out["fit"] else out["fit"]  # baselines: one flat stage report
        for stage, rep in stages.items():
            if isinstance(rep, dict) and "best_epoch" in rep:
                table.add_row(method, f"  best epoch: {stage}", f"{rep['best_epoch']} / {rep.get('epochs_run')} (of {rep.get('epochs')})")
        table.add_row(method, "[bold]total[/]", f"{total:.1f}")
        metrics = ", ".join(f"{k} {v['value']:.3f}" for k, v in out["metrics"].items() if k in ("top1", "n_way_top_k", "clip_similarity", "ssim", "attribute_fidelity"))
        table.add_row(method, "metrics", metrics)
    Console().print(table)


if __name__ == "__main__":
    main()
