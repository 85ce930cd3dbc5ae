"""A tiny dataset in the EEG-CVPR40 layout, written by hand (independent of the world generator)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from bench.data.classes import WNIDS


def write_tiny_dataset(root: Path, *, n_classes: int = 4, per_class: int = 6, subjects: int = 2, lengths: dict | None = None) -> Path:
    """Write eeg_5_95_std.pth, both splits files and images/ for a small, valid dataset.

    Trials are subject-major, image-minor; the 'all' split gives per class 4 train / 1 val / 1 test
    images (all subjects' trials of an image together); 'single' indexes one subject's trials.
    ``lengths`` maps a trial index to a custom length (default 500).
    """
    root.mkdir(parents=True, exist_ok=True)
    labels = list(WNIDS[:n_classes])
    images = [f"{labels[c]}_{100 + j}" for c in range(n_classes) for j in range(per_class)]
    g = torch.Generator().manual_seed(0)
    dataset = []
    for s in range(1, subjects + 1):
        for i, name in enumerate(images):
            k = len(dataset)
            L = (lengths or {}).get(k, 500)
            dataset.append({"eeg": torch.randn(128, L, generator=g), "label": i // per_class, "image": i, "subject": s})
    torch.save({"dataset": dataset, "labels": labels, "images": images}, root / "eeg_5_95_std.pth")
    parts = {"train": [], "val": [], "test": []}
    for i in range(len(images)):
        j = i % per_class
        parts["test" if j == 0 else "val" if j == 1 else "train"].append(i)
    n = len(images)
    all_split = {k: [(s - 1) * n + i for s in range(1, subjects + 1) for i in v] for k, v in parts.items()}
    torch.save({"splits": [all_split]}, root / "block_splits_by_image_all.pth")
    torch.save({"splits": [parts]}, root / "block_splits_by_image_single.pth")
    for name in images:
        p = root / "images" / name.split("_")[0] / f"{name}.JPEG"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(p)
    return root
