"""Does a world's unlabelled EEG carry structure that helps a low-label reader? (a pretraining known answer)

For one subject, a linear ERP reader (logistic regression on 40 ms binned means, the world probe's
reader) is trained on the first ``f`` of each class's training images and scored on the test split:

- ``raw``: on the binned means themselves;
- ``pca_own`` / ``pca_others`` / ``pca_pooled``: on their projection onto the top ``k`` principal
  components of *unlabelled* binned means (training and validation trials, never a test image's) of
  this subject, of every other subject, or of all subjects.

Whatever the PCA rows gain over ``raw`` is what unsupervised learning on unlabelled EEG can give this
reader; ``pca_others`` on a world and on its ``shared = 0`` null world says how much of it needs the
subjects to share anything. Usage::

    python benchmarks/unlabelled_structure_probe.py WORLD_DIR [WORLD_DIR ...] [--subject 4] [--k 32 128]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bench.data.eegcvpr40 import EEG_FILE, DataConfig, load_release, load_split_data
from bench.world.probe import binned_means, probe_accuracy, unlabelled_bases, unlabelled_structure_accuracy

FRACTIONS = (0.1, 0.25, 1.0)


def first_images(labels: np.ndarray, names: list[str], fraction: float) -> np.ndarray:
    """Indices of the first ``fraction`` of each class's trials, by image name (nested across fractions)."""
    names_arr = np.array(names)
    keep: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep += idx[np.argsort(names_arr[idx])][: max(1, int(round(fraction * idx.size)))].tolist()
    return np.array(sorted(keep))


def probe_world(root: Path, subject: int, ks: tuple[int, ...]) -> dict[float, dict[str, float]]:
    """``{fraction: {reader: test accuracy}}`` for one world and subject."""
    release = load_release(root / EEG_FILE, check_finite=False)
    subjects = release.subjects
    feats = {}
    for s in subjects:
        d = load_split_data(DataConfig(root=str(root), subject=s), release=release)
        feats[s] = {k: binned_means(getattr(d, k).eeg) for k in ("train", "val", "test")}
        if s == subject:
            y_train, y_test, names = d.train.label.numpy(), d.test.label.numpy(), d.train.image_names
    unlabelled = {
        "own": np.concatenate([feats[subject]["train"], feats[subject]["val"]]),
        "others": np.concatenate([feats[s][k] for s in subjects if s != subject for k in ("train", "val")]),
        "pooled": np.concatenate([feats[s][k] for s in subjects for k in ("train", "val")]),
    }
    bases = {k: unlabelled_bases(unlabelled, k=k) for k in ks}
    out: dict[float, dict[str, float]] = {}
    for fraction in FRACTIONS:
        keep = first_images(y_train, names, fraction)
        x_train, x_test = feats[subject]["train"][keep], feats[subject]["test"]
        row = {"raw": probe_accuracy(x_train, y_train[keep], x_test, y_test)}
        for k in ks:
            acc = unlabelled_structure_accuracy(bases[k], x_train, y_train[keep], x_test, y_test)
            row |= {f"pca_{name}_{k}": v for name, v in acc.items()}
        out[fraction] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("worlds", nargs="+", type=Path)
    ap.add_argument("--subject", type=int, default=4)
    ap.add_argument("--k", type=int, nargs="+", default=[32, 128])
    args = ap.parse_args()
    with threadpool_limits(1):
        for root in args.worlds:
            result = probe_world(root, args.subject, tuple(args.k))
            names = list(next(iter(result.values())))
            print(f"\n{root.name} (subject {args.subject}; test accuracy, chance 0.025)")
            print("fraction  " + "  ".join(f"{n:>15}" for n in names))
            for fraction, row in result.items():
                print(f"{fraction:<8}  " + "  ".join(f"{row[n]:>15.3f}" for n in names))


if __name__ == "__main__":
    main()
