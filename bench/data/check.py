"""`bench data check`: validate a dataset folder (real or synthetic) and summarise it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.classes import NAME_BY_WNID
from bench.data.eegcvpr40 import (
    EEG_FILES,
    MAX_LEN,
    MIN_LEN,
    SPLIT_FILES,
    T_END,
    image_path,
    load_release,
    load_splits,
    missing_images,
    select_split,
)
from bench.errors import DataError


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
    images_decoded: int = 0

    def to_dict(self) -> dict:
        return {k: (v if not isinstance(v, dict) else {str(kk): vv for kk, vv in v.items()}) for k, v in self.__dict__.items()}


QUICK_SAMPLE = 200  # images decoded by ``--quick`` (all are still checked to exist and stay inside the image folder)


def image_problems(image_root: Path, names: list[str], *, decode: list[str] | None = None) -> list[str]:
    """Images that are missing, resolve outside ``image_root`` (a symlink pointing elsewhere), or
    do not decode. ``decode``: the names to decode (default: all)."""
    from PIL import Image

    base = image_root.resolve()
    problems = []
    for n in names:
        p = image_path(image_root, n)
        if not p.is_file():
            problems.append(f"{p}: missing")
            continue
        target = p.resolve()
        if not target.is_relative_to(base):
            problems.append(f"{p}: resolves to {target}, outside the image folder {base}")
    todo = names if decode is None else decode
    bad = {q.split(":", 1)[0] for q in problems}
    for n in todo:
        p = image_path(image_root, n)
        if str(p) in bad:
            continue
        try:
            with Image.open(p) as im:
                im.load()  # decodes every pixel: a truncated or corrupt file fails here
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            problems.append(f"{p}: does not decode ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    return problems


def check_dataset(root: str | Path, *, image_root: str | Path | None = None, quick: bool = False) -> DataSummary:
    """Validate every file the harness reads; raise :class:`DataError` with the first problem.

    Every image the EEG file names must exist, stay inside the image folder and decode (``quick``:
    a seeded sample of :data:`QUICK_SAMPLE` images is decoded, the rest only checked to exist).
    """
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
    sample = None
    if quick and len(used) > QUICK_SAMPLE:
        sample = sorted(np.random.default_rng(0).choice(used, QUICK_SAMPLE, replace=False).tolist())
    bad = image_problems(image_root, used, decode=sample)
    if bad:
        raise DataError(f"{image_root}: {len(bad)} unusable image(s): " + "; ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
    summary.images_decoded = len(used) if sample is None else len(sample)

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


def dataset_fingerprint(root: str | Path, image_root: str | Path | None = None) -> str:
    """A hash of every file's name, size and modification time under the dataset folder and its
    image folder: a changed, added or removed file gives another fingerprint."""
    import hashlib
    import os

    root = Path(root).absolute()
    h = hashlib.sha256(str(root).encode())
    folders = [root] + ([Path(image_root).absolute()] if image_root is not None else [])
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _check_quietly(root: str, image_root: str | None = None, *, progress=None) -> dict:
    """:func:`check_dataset` as plain data (the child-process entry of :func:`validate_dataset`)."""
    return check_dataset(root, image_root=image_root).to_dict()


def validate_dataset(root: str | Path, *, cache: str | Path | None = None, progress=None) -> dict:
    """The checks of `bench data check` (every file, trial and image), in a child process so the
    pages it reads are not kept by the caller; the result is remembered per
    :func:`dataset_fingerprint` under ``<cache>/validated/``, so an unchanged dataset is checked once."""
    from bench.experiment.isolated import run_isolated
    from bench.paths import cache_dir
    from bench.results.store import atomic_write_text

    say = progress or (lambda msg: None)
    marker = cache_dir(cache) / "validated" / f"{dataset_fingerprint(root)}.json"
    if marker.is_file():
        try:
            summary = json.loads(marker.read_text())
            say(f"checking the dataset at {root}: its files are unchanged since they passed (`bench data check`)")
            return summary
        except (OSError, ValueError):
            pass
    say(f"checking the dataset at {root} (files, trials, splits, images; once per version of its files)")
    summary = run_isolated("bench.data.check:_check_quietly", str(root), progress=progress, what="data-check")
    try:
        atomic_write_text(marker, json.dumps(summary))
    except OSError:
        pass  # an unwritable cache only costs a re-check next time
    return summary
