"""Does a masked-modeling pretext teach BrainVis' time encoder anything a frozen linear reader can use?

For one subject of a world, the mini profile's time encoder (decimated to 125 Hz, as the profile) is
pretrained on the subject's unlabelled training and validation EEG (``--pool own``) or every
subject's (``--pool all``) with one of the pretexts below, then frozen; a logistic regression (C
chosen on the validation trials) reads the class from its features (``mean``: the pooled feature the
method uses; ``flat``: every unit's output), trained on all or a quarter of the labelled training
trials and scored on the test split. ``random`` is the same encoder untrained: a pretext that helps
should beat it.

- ``latent``: BrainVis' latent masked modeling (EMA targets, codeword CE), as published;
- ``latent_sig``: the same plus a raw-signal target (``pretrain_signal_weight = 1``);
- ``signal``: the raw-signal (MAE) target alone.

``--readout finetune`` reads the class the way the method does instead: the pretrained encoder (or,
with ``--keep backbone.patch``, only the listed parts of it; the rest as initialised) is fine-tuned
with the profile's time-encoder fine-tuning (mean-pooled head, learning rate, budget, patience,
floor) on a fixed random ``--fractions`` share of each class's training trials, once per ``--seeds`` seed
(pretraining included), and scored on the test split.

Usage::

    python benchmarks/pretext_probe.py WORLD_DIR [--pretexts random,latent,latent_sig,signal] [--epochs 30] [--pool own]
    python benchmarks/pretext_probe.py WORLD_DIR --readout finetune --pool all --fractions 0.25 --seeds 0,1 [--keep backbone.patch]
"""

from __future__ import annotations

import argparse
import copy
import time
import tomllib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from bench.data.eegcvpr40 import EEG_FILE, DataConfig, TrialSet, load_release, load_split_data
from bench.methods.signal import Decimate
from bench.methods.training import train_classifier
from bench.paths import PROFILES_DIR
from brainvis.method import BrainVisConfig
from brainvis.models.time_encoder import TimeEncoder

PRETEXTS = {
    "random": None,
    "latent": {},
    "latent_sig": {"signal_weight": 1.0},
    "signal": {"signal_weight": 1.0, "mse_weight": 0.0, "ce_weight": 0.0},
}
ENCODER_KEYS = ("patch_size", "d_model", "n_layers", "n_heads", "d_ffn", "dropout", "mask_ratio", "momentum", "n_regressor_layers", "n_codewords", "rezero")


def class_share(y: np.ndarray, fraction: float) -> np.ndarray:
    """A fixed random ``fraction`` of each class's trials (at least one), sorted."""
    rng = np.random.default_rng(0)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[: max(1, round(fraction * (y == c).sum()))] for c in np.unique(y)]))


def linear_probe(f: dict[str, np.ndarray], y: dict[str, np.ndarray], fraction: float) -> float:
    """Test accuracy of a logistic regression on ``fraction`` of each class's training trials (C on validation)."""
    keep = class_share(y["train"], fraction)
    scale = StandardScaler().fit(f["train"][keep])
    best = (-1.0, None)
    for c in (0.001, 0.01, 0.1, 1.0):
        model = LogisticRegression(C=c, max_iter=300).fit(scale.transform(f["train"][keep]), y["train"][keep])
        acc = model.score(scale.transform(f["val"]), y["val"])
        if acc > best[0]:
            best = (acc, model)
    return float(best[1].score(scale.transform(f["test"]), y["test"]))


def pretrain(enc: TimeEncoder, pool: torch.Tensor, profile: dict, epochs: int, g: torch.Generator) -> None:
    """``epochs`` epochs of ``enc``'s pretext on the unlabelled ``pool`` (the profile's optimiser and batch)."""
    params = [p for n, p in enc.named_parameters() if not n.startswith(("ema_backbone", "head"))]
    opt = torch.optim.AdamW(params, lr=profile["pretrain_lr"], weight_decay=profile["weight_decay"])
    for _ in range(epochs):
        enc.train()
        order = torch.randperm(len(pool), generator=g)
        for i in range(0, len(pool), profile["batch_size"]):
            loss = enc.pretrain_loss(pool[order[i : i + profile["batch_size"]]], generator=g)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            enc.update_ema()


def finetune_accuracy(enc: TimeEncoder, x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], fraction: float, profile: dict, seed: int) -> float:
    """Test top-1 of ``enc`` fine-tuned as the method fine-tunes its time encoder, on ``fraction`` of the labels."""
    keep = torch.as_tensor(class_share(y["train"].numpy(), fraction))

    def trials(eeg: torch.Tensor, label: torch.Tensor) -> TrialSet:
        n = len(label)
        return TrialSet(eeg=eeg, label=label, image=torch.zeros(n, dtype=torch.long), subject=torch.zeros(n, dtype=torch.long), index=np.arange(n), image_names=[""] * n)

    train_classifier(
        enc, enc.classify, trials(x["train"][keep], y["train"][keep]), trials(x["val"], y["val"]), epochs=profile["finetune_epochs"],
        lr=profile["finetune_lr"], batch=profile["batch_size"], wd=profile["weight_decay"], g=torch.Generator().manual_seed(100 + seed),
        patience=profile["patience"], min_epochs=profile["finetune_min_epochs"],
    )  # fmt: skip
    enc.eval()
    with torch.no_grad():
        return float((enc.classify(x["test"]).argmax(1) == y["test"]).float().mean())


def embedding_stats(enc: TimeEncoder, x: torch.Tensor) -> tuple[float, float]:
    """Effective rank (exp entropy of the covariance spectrum) and mean spread of the patch
    embedding's outputs over every unit of ``x``: a pretext that collapses the embedding lowers the first."""
    with torch.no_grad():
        units = enc.backbone.embed(x).reshape(-1, enc.d_model)
    ev = torch.linalg.eigvalsh(torch.cov(units.T)).clamp_min(1e-12)
    q = ev / ev.sum()
    return float(torch.exp(-(q * q.log()).sum())), float(units.std(0).mean())


def features(enc: TimeEncoder, x: torch.Tensor, how: str) -> np.ndarray:
    enc.eval()
    with torch.no_grad():
        out = torch.cat([enc.backbone.encode(x[i : i + 256]) for i in range(0, len(x), 256)])
    return (out.mean(1) if how == "mean" else out.flatten(1)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path)
    ap.add_argument("--subject", type=int, default=4)
    ap.add_argument("--pretexts", default=",".join(PRETEXTS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--pool", choices=("own", "all"), default="own")
    ap.add_argument("--readout", choices=("linear", "finetune"), default="linear")
    ap.add_argument("--fractions", default="1,0.25", help="finetune: label fractions (comma-separated)")
    ap.add_argument("--seeds", default="0", help="finetune: seeds (pretraining and fine-tuning), comma-separated")
    ap.add_argument("--keep", default="", help="finetune: keep only these pretrained parts (name prefixes joined by +)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a [brainvis] profile field (TOML value), repeatable")
    args = ap.parse_args()
    torch.set_num_threads(1)
    profile = asdict(BrainVisConfig()) | tomllib.loads((PROFILES_DIR / "mini.toml").read_text())["brainvis"]  # the method's defaults under the profile
    profile |= tomllib.loads("\n".join(args.set))
    release = load_release(args.world / EEG_FILE, check_finite=False)
    prep = Decimate(profile["decimate"])

    def split(s: int):
        return load_split_data(DataConfig(root=str(args.world), subject=s), release=release)

    d = split(args.subject)
    x = {k: prep.in_batches(getattr(d, k).eeg.float()) for k in ("train", "val", "test")}
    y = {k: getattr(d, k).label.numpy() for k in ("train", "val", "test")}
    subjects = [args.subject] if args.pool == "own" else release.subjects
    pool = torch.cat([x[k] if s == args.subject else prep.in_batches(getattr(split(s), k).eeg.float()) for s in subjects for k in ("train", "val")])
    print(f"subject {args.subject}: {len(pool)} unlabelled trials ({args.pool}); reader trained on all / a quarter of {len(y['train'])} labelled", flush=True)
    cfg = {k: profile[k] for k in ENCODER_KEYS} | {"n_chans": x["train"].shape[1], "n_times": x["train"].shape[2]}
    if args.readout == "finetune":
        y = {k: torch.as_tensor(v) for k, v in y.items()}
        fractions = [float(f) for f in args.fractions.split(",")]
        for name in args.pretexts.split(","):
            row: dict[float, list[float]] = {f: [] for f in fractions}
            t = time.perf_counter()
            for seed in (int(s) for s in args.seeds.split(",")):
                torch.manual_seed(seed)
                enc = TimeEncoder(**cfg, **(PRETEXTS[name] or {}), n_outputs=int(y["train"].max()) + 1)
                fresh = copy.deepcopy(enc.state_dict())
                if PRETEXTS[name] is not None:
                    pretrain(enc, pool, profile, args.epochs, torch.Generator().manual_seed(seed))
                start = enc.state_dict()
                if args.keep:
                    start = {k: v if k.startswith(tuple(args.keep.split("+"))) else fresh[k] for k, v in start.items()}
                start = copy.deepcopy(start)
                enc.load_state_dict(start)
                erank, spread = embedding_stats(enc, x["train"])
                for f in fractions:
                    enc.load_state_dict(start)
                    row[f].append(finetune_accuracy(enc, x, y, f, profile, seed))
            cells = "  ".join(f"{f:g}: {np.mean(a):.3f} {[round(v, 3) for v in a]}" for f, a in row.items())
            print(f"{name:11s} fine-tuned test top-1 by label fraction (mean [per seed])  {cells}  ({time.perf_counter() - t:.0f} s)", flush=True)
            print(f"{'':11s} patch embedding before fine-tuning (last seed): effective rank {erank:.1f}, spread {spread:.2f}", flush=True)
        return
    for name in args.pretexts.split(","):
        t = time.perf_counter()
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        enc = TimeEncoder(**cfg, **(PRETEXTS[name] or {}))
        if PRETEXTS[name] is not None:
            pretrain(enc, pool, profile, args.epochs, g)
        with threadpool_limits(1):
            row = {how: [linear_probe({k: features(enc, x[k], how) for k in x}, y, f) for f in (1.0, 0.25)] for how in ("mean", "flat")}
        cells = "  ".join(f"{how}: {a:.3f} / {b:.3f}" for how, (a, b) in row.items())
        erank, spread = embedding_stats(enc, x["train"])
        print(f"{name:11s} test top-1 (all / a quarter of the labels)  {cells}  patch embedding: effective rank {erank:.1f}, spread {spread:.2f}  ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
