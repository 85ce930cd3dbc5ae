"""Diagnostic: how much of each image attribute BrainVis' encoder features carry, before and after alignment.

    python benchmarks/brainvis_attribute_probe.py WORLD_DIR [--w 0.5] [--subject 4] [--seed 0] [--set KEY=VALUE ...]

Trains BrainVis on one subject of a synthetic world exactly as a trial does (mini profile, pooled
pretraining, the mini backbones for the alignment's text targets), and reads colour, size, position and
background from its encoder's features with a linear probe (standardised logistic regression, training
split -> test split): once before the alignment stage and once after it at weight ``w``. Compare with the
world's own ERP probes on its card (what a linear reader of the EEG gets) and with ``--w 0`` (what the
class prompts alone leave). Used for the caption check of ``known_answers``: on the default world
(generator 3, subject 4), with the alignment at the paper's CE weight 1 and lr 5e-4, the features read
colour 0.295, size 0.625, position 0.40, background 0.325 before alignment, and after it colour 0.26, size
0.72 at w = 0.5 (0.255, 0.58 at w = 0): the class loss kept the attributes out. With ``--set
align_ce_weight=0.1 --set align_lr=0.002`` (the mini profile since): colour 0.34, size 0.90, position
0.495, background 0.385 at w = 0.5; 0.225, 0.635, 0.42, 0.315 at w = 0 (about 5 minutes on one core with
the pooled pretraining cached in ``--work``).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import brainvis.method as bm
from bench.data.captions import cached_captions
from bench.backbones.mini import WEIGHTS_DIR, load_mini_backbones
from bench.data.dataset import open_dataset
from bench.methods.base import FitContext, TrialSpec, UnlabelledPool
from bench.methods.training import SharedWork
from bench.world.images import ATTRIBUTES, ATTRIBUTES_FILE

PROFILE = Path(__file__).resolve().parent.parent / "bench" / "profiles" / "mini.toml"


def attribute_probe(model: bm.BrainVis, train, test, attrs: dict) -> dict[str, float]:
    """Test accuracy of a linear probe of the encoder's features for each attribute."""
    model.encoder.eval()
    with torch.no_grad():
        f_tr = model.encoder(model._prep_eeg(train.eeg))["features"].numpy()
        f_te = model.encoder(model._prep_eeg(test.eeg))["features"].numpy()
    out = {}
    for key in ATTRIBUTES:
        y_tr = np.array([attrs[n][key] for n in train.image_names])
        y_te = np.array([attrs[n][key] for n in test.image_names])
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500)).fit(f_tr, y_tr)
        out[key] = round(float((clf.predict(f_te) == y_te).mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path)
    ap.add_argument("--w", type=float, default=0.5)
    ap.add_argument("--subject", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a BrainVis option (TOML value), e.g. align_ce_weight=0.1")
    ap.add_argument("--work", type=Path, default=Path("runs/attribute_probe"), help="captions and shared pretraining cache")
    args = ap.parse_args()
    torch.set_num_threads(1)

    ds = open_dataset(args.world)
    d = ds.load_split(args.subject, 1.0, 0)
    attrs = json.loads((args.world / ATTRIBUTES_FILE).read_text())
    profile = tomllib.load(open(PROFILE, "rb"))
    backbones = load_mini_backbones(WEIGHTS_DIR, stimulus_id=ds.stimulus_id)
    names = sorted(set(d.train.image_names) | set(d.val.image_names))
    args.work.mkdir(parents=True, exist_ok=True)
    description, n_train, n_val, load = ds.unlabelled_eeg()
    pool = UnlabelledPool({"dataset_id": ds.dataset_id, **description}, n_train, n_val, load)
    options = tuple((k.strip(), tomllib.loads(f"v = {v}")["v"]) for k, v in (item.split("=", 1) for item in args.set))
    torch.manual_seed(args.seed)
    ctx = FitContext(
        spec=TrialSpec("brainvis", subject=args.subject, w=args.w, seed=args.seed, options=options),
        profile=profile["brainvis"] | {"generation": profile["generation"]}, backbones=backbones,
        class_prompts=ds.class_prompts(), captions=cached_captions(names, ds.image_root(), backbones.captioner, args.work / "captions.json"),
        image_root=ds.image_root(), pretrain_pool=lambda: pool, shared=SharedWork(args.work / "shared" / ds.dataset_id),
    )  # fmt: skip

    model = bm.BrainVis()
    align = model._align

    def probe_then_align(train, val, g):
        print("features before alignment:", attribute_probe(model, d.train, d.test, attrs), flush=True)
        return align(train, val, g)

    model._align = probe_then_align
    report = model.fit(d.train, d.val, ctx)
    print(f"features after alignment at w = {args.w:g}:", attribute_probe(model, d.train, d.test, attrs))
    with torch.no_grad():
        top1 = float((model.predict(d.test.eeg).logits.argmax(1) == d.test.label).float().mean())
    print(f"test top-1 {top1:.3f}; alignment best epoch {report['align']['best_epoch']} of {report['align']['epochs_run']}")


if __name__ == "__main__":
    main()
