"""`bench data check`: validate a dataset folder (real or synthetic) and summarise it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainvis.classes import NAME_BY_WNID
from brainvis.data import (
    EEG_FILES,
    MAX_LEN,
    MIN_LEN,
    SPLIT_FILES,
    T_END,
    load_release,
    load_splits,
    missing_images,
    select_split,
)
from brainvis.errors import DataError


@dataclass
class DataSummary:
    """What `bench data check` found; every field is plain data (JSON-safe via ``to_dict``)."""

    root: str
    eeg_files: dict[str, int]  # file -> trials
    n_classes: int
    n_images: int
    known_classes: int  # how many labels are EEG-CVPR40 WNIDs
    subjects: dict[int, dict] = field(default_factory=dict)  # subject -> counts
    split_sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # mode -> part -> trials (subject 0)
    missing_images: int = 0
    captions: int | None = None
    world: dict | None = None

    def to_dict(self) -> dict:
        return {k: (v if not isinstance(v, dict) else {str(kk): vv for kk, vv in v.items()}) for k, v in self.__dict__.items()}


def check_dataset(root: str | Path, *, image_root: str | Path | None = None) -> DataSummary:
    """Validate every file the harness reads; raise :class:`DataError` with the first problem."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    main = root / EEG_FILES[0]
    if not main.is_file():
        raise DataError(f"{root}: no {EEG_FILES[0]} (the 5-95 Hz EEG file every method reads)")
    release = load_release(main)
    eeg_files = {main.name: len(release)}
    for name in EEG_FILES[1:]:
        other = root / name
        if other.is_file():
            rel = load_release(other)
            if len(rel) != len(release) or not np.array_equal(rel.label, release.label) or not np.array_equal(rel.subject, release.subject):
                raise DataError(f"{other}: its trials do not line up with {main.name} (count, labels or subjects differ)")
            eeg_files[name] = len(rel)

    present = {mode: root / f for mode, f in SPLIT_FILES.items() if (root / f).is_file()}
    if not present:
        raise DataError(f"{root}: no splits file ({' or '.join(SPLIT_FILES.values())})")
    splits = {mode: load_splits(path) for mode, path in present.items()}

    lengths = release.lengths
    in_range = (lengths >= MIN_LEN) & (lengths <= MAX_LEN)
    full_window = in_range & (lengths >= T_END)
    summary = DataSummary(
        root=str(root),
        eeg_files=eeg_files,
        n_classes=len(release.labels),
        n_images=len(release.images),
        known_classes=sum(w in NAME_BY_WNID for w in release.labels),
    )
    for s in release.subjects:
        mine = release.subject == s
        row = {"trials": int(mine.sum()), "kept": int((mine & in_range).sum()), "full_window": int((mine & full_window).sum())}
        for mode, sp in splits.items():
            parts = select_split(release, sp, subject=s, mode=mode, min_len=max(MIN_LEN, T_END), splits_path=present[mode])
            row[mode] = {k: int(v.size) for k, v in parts.items()}
        summary.subjects[s] = row
    if "all" in splits:
        parts = select_split(release, splits["all"], subject=0, mode="all", min_len=max(MIN_LEN, T_END), splits_path=present["all"])
        summary.split_sizes["all"] = {k: int(v.size) for k, v in parts.items()}

    image_root = Path(image_root) if image_root is not None else root / "images"
    if not image_root.is_dir():
        raise DataError(f"{image_root}: image folder not found (expected <image_root>/<wnid>/<image_name>.JPEG)")
    used = sorted({release.images[i] for i in np.unique(release.image)})
    missing = missing_images(image_root, used)
    if missing:
        raise DataError(f"{image_root}: {len(missing)} image file(s) missing, e.g. {', '.join(missing[:5])}")

    captions = root / "captions.json"
    if captions.is_file():
        try:
            caps = json.loads(captions.read_text())
        except ValueError as exc:
            raise DataError(f"{captions}: not valid JSON ({exc})") from None
        if not isinstance(caps, dict):
            raise DataError(f"{captions}: expected an object mapping image name -> caption")
        summary.captions = sum(name in caps for name in used)
    manifest = root / "world.json"
    if manifest.is_file():
        try:
            summary.world = {k: v for k, v in json.loads(manifest.read_text()).items() if k in ("world_id", "spec", "command")}
        except ValueError:
            raise DataError(f"{manifest}: not valid JSON") from None
    return summary
