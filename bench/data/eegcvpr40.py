"""EEG-CVPR40 data layer: strict, safe loading of the release's on-disk format.

Files of a dataset folder (the real release, or a synthetic world written in the same format)::

    eeg_5_95_std.pth                      {'dataset': [{'eeg', 'label', 'image', 'subject'}, ...],
                                           'labels': [40 WNIDs], 'images': [image names]}
    block_splits_by_image_all.pth         {'splits': [{'train': [...], 'val': [...], 'test': [...]}, ...]}
    block_splits_by_image_single.pth      same, indices into one subject's trials
    images/<wnid>/<image_name>.JPEG

Everything is read with ``torch.load(..., weights_only=True)``: these files hold only dicts, lists,
ints, strings and tensors, so a file that needs anything else (a pickle that would run code) is
refused. Files in torch's zip format are memory-mapped so parallel workers share pages.

The flow is: :func:`load_release` (validated file contents) -> :func:`select_split` (subject,
release split rule, length filter) -> :func:`nested_fraction` (training-data fraction) ->
:func:`make_trial_set` (stacked ``[N, 128, 440]`` tensors). :func:`load_split_data` does all four.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bench.errors import DataError

N_CHANNELS = 128
MIN_LEN, MAX_LEN = 450, 600  # conventional length filter (dataset authors, BrainVis, DreamDiffusion)
T_START, T_END = 20, 460  # conventional crop: samples 20..460 -> 440 samples (20-460 ms at 1 kHz)
EEG_FILE = "eeg_5_95_std.pth"  # the 5-95 Hz filtered release: what every method trains on
RAW_FILE = "eeg_signals_raw_with_mean_std.pth"  # unfiltered (keeps slow content; the audit's band check)
EEG_FILES = (EEG_FILE, "eeg_14_70_std.pth", "eeg_55_95_std.pth", RAW_FILE)
SPLIT_FILES = {"all": "block_splits_by_image_all.pth", "single": "block_splits_by_image_single.pth"}
SPLIT_NAMES = ("train", "val", "test")
_MAX_LISTED = 5  # problems listed in one error message


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


def safe_torch_load(path: str | Path, *, mmap: bool = True) -> object:
    """``torch.load(weights_only=True)`` with memory-mapping where possible and clear errors.

    ``mmap=True`` only works for torch's zip format; older (legacy) files are loaded plainly.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    use_mmap = mmap and zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: refused to load: the file holds objects other than plain dicts, lists, numbers, "
            f"strings and tensors, which could run code when unpickled ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise DataError(f"{path}: cannot read the file; it looks truncated or corrupt ({type(exc).__name__}: {exc})") from None


def _problem_list(problems: list[str], total: int | None = None) -> str:
    total = len(problems) if total is None else total
    shown = "; ".join(problems[:_MAX_LISTED])
    more = f" (and {total - _MAX_LISTED} more)" if total > _MAX_LISTED else ""
    return shown + more


@dataclass(frozen=True)
class Release:
    """Validated contents of one EEG file of the release.

    ``eeg[i]`` is the ``[128, L_i]`` float tensor of trial ``i`` (memory-mapped where possible);
    ``label``, ``image`` and ``subject`` are int64 arrays over trials.
    """

    path: Path
    eeg: list[torch.Tensor]
    label: np.ndarray
    image: np.ndarray
    subject: np.ndarray
    labels: list[str]
    images: list[str]

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((t.shape[1] for t in self.eeg), dtype=np.int64, count=len(self.eeg))

    @property
    def subjects(self) -> list[int]:
        return sorted(int(s) for s in np.unique(self.subject))

    def __len__(self) -> int:
        return len(self.eeg)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) or (isinstance(x, torch.Tensor) and x.ndim == 0 and not x.is_floating_point())


def load_release(path: str | Path, *, check_finite: bool = True) -> Release:
    """Load and validate one EEG file (e.g. ``eeg_5_95_std.pth``); raise :class:`DataError` if bad."""
    path = Path(path)
    obj = safe_torch_load(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with keys 'dataset', 'labels', 'images'; got {type(obj).__name__}")
    missing = [k for k in ("dataset", "labels", "images") if k not in obj]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; expected 'dataset', 'labels', 'images' (found {sorted(map(str, obj))})")
    dataset, labels, images = obj["dataset"], obj["labels"], obj["images"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{path}: 'labels' must be a non-empty list of WordNet id strings")
    if not isinstance(images, list) or not images or not all(isinstance(x, str) for x in images):
        raise DataError(f"{path}: 'images' must be a non-empty list of image-name strings")
    if not isinstance(dataset, list) or not dataset:
        raise DataError(f"{path}: 'dataset' must be a non-empty list of trial dicts")

    n = len(dataset)
    eeg: list[torch.Tensor] = []
    label = np.empty(n, dtype=np.int64)
    image = np.empty(n, dtype=np.int64)
    subject = np.empty(n, dtype=np.int64)
    problems: list[str] = []
    n_bad = 0

    def bad(msg: str) -> None:
        nonlocal n_bad
        n_bad += 1
        if len(problems) < _MAX_LISTED:
            problems.append(msg)

    for i, trial in enumerate(dataset):
        if not isinstance(trial, dict) or not {"eeg", "label", "image", "subject"} <= set(trial):
            keys = sorted(map(str, trial)) if isinstance(trial, dict) else type(trial).__name__
            bad(f"trial {i}: expected a dict with keys 'eeg', 'label', 'image', 'subject' (got {keys})")
            eeg.append(torch.empty(0))
            continue
        x = trial["eeg"]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 2 or x.shape[0] != N_CHANNELS:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            dtype = f", {x.dtype}" if isinstance(x, torch.Tensor) else ""
            bad(f"trial {i}: 'eeg' must be a float tensor [{N_CHANNELS}, L]; got {shape}{dtype}")
        eeg.append(x)
        for key, arr, upper in (("label", label, len(labels)), ("image", image, len(images)), ("subject", subject, None)):
            v = trial[key]
            if not _is_int(v):
                bad(f"trial {i}: '{key}' must be an int; got {type(v).__name__}")
                arr[i] = -1
                continue
            v = int(v)
            arr[i] = v
            if upper is not None and not 0 <= v < upper:
                bad(f"trial {i}: '{key}' = {v} is outside 0..{upper - 1}")
            if upper is None and v < 1:
                bad(f"trial {i}: 'subject' = {v}; subjects are numbered from 1")
    if n_bad:
        raise DataError(f"{path}: {n_bad} malformed trial(s): {_problem_list(problems, n_bad)}")

    if check_finite:
        nonfinite = [i for i, x in enumerate(eeg) if not bool(torch.isfinite(x).all())]
        if nonfinite:
            raise DataError(
                f"{path}: {len(nonfinite)} trial(s) contain NaN or Inf EEG values: trials "
                f"{_problem_list([str(i) for i in nonfinite])}"
            )

    # Each image name starts with the WNID of its class: the trial's label and image must agree.
    image_wnid = np.array([name.split("_", 1)[0] for name in images])
    wnid_of_label = np.array(labels)
    mismatch = np.flatnonzero(image_wnid[image] != wnid_of_label[label])
    if mismatch.size:
        listed = [f"trial {i}: label {labels[label[i]]} vs image {images[image[i]]}" for i in mismatch[:_MAX_LISTED]]
        raise DataError(f"{path}: {mismatch.size} trial(s) whose image is not of their label's class: {_problem_list(listed, mismatch.size)}")
    return Release(path=path, eeg=eeg, label=label, image=image, subject=subject, labels=list(labels), images=list(images))


@dataclass(frozen=True)
class Split:
    """One train/val/test split: indices into the (subject-filtered) trial list."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)


def load_splits(path: str | Path) -> list[Split]:
    """Load and validate a splits file: ``{'splits': [{'train', 'val', 'test'}, ...]}``."""
    path = Path(path)
    obj = safe_torch_load(path, mmap=False)
    if not isinstance(obj, dict) or "splits" not in obj:
        raise DataError(f"{path}: expected a dict with key 'splits'")
    raw = obj["splits"]
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{path}: 'splits' must be a non-empty list of dicts with 'train', 'val', 'test'")
    out = []
    for k, s in enumerate(raw):
        if not isinstance(s, dict) or not set(SPLIT_NAMES) <= set(s):
            raise DataError(f"{path}: split {k} must be a dict with keys 'train', 'val', 'test'")
        parts = {}
        for name in SPLIT_NAMES:
            v = s[name]
            if isinstance(v, torch.Tensor):
                v = v.tolist()
            if not isinstance(v, list) or not all(_is_int(x) for x in v):
                raise DataError(f"{path}: split {k} '{name}' must be a list of ints")
            parts[name] = np.asarray([int(x) for x in v], dtype=np.int64)
            if (parts[name] < 0).any():
                raise DataError(f"{path}: split {k} '{name}' has negative indices")
        overlap = set(parts["train"]) & set(parts["test"]) | set(parts["train"]) & set(parts["val"]) | set(parts["val"]) & set(parts["test"])
        if overlap:
            raise DataError(f"{path}: split {k}: {len(overlap)} trial index(es) appear in more than one of train/val/test")
        out.append(Split(**parts))
    return out


# --------------------------------------------------------------------------------------------------
# Selecting a subject's split
# --------------------------------------------------------------------------------------------------

SplitMode = Literal["all", "single"]


def select_split(
    release: Release,
    splits: list[Split],
    *,
    subject: int = 0,
    mode: SplitMode = "all",
    split_num: int = 0,
    min_len: int = MIN_LEN,
    max_len: int = MAX_LEN,
    splits_path: str | Path = "splits",
) -> dict[str, np.ndarray]:
    """Trial indices (into ``release``) for train/val/test of one subject.

    Release rule: split indices point into the trial list *after* filtering to the chosen subject
    (subject 0 = all trials). ``mode="single"`` applies that rule to ``block_splits_by_image_single``
    (the published protocol: ~1,000 of a subject's trials). ``mode="all"`` applies split
    ``split_num`` of ``block_splits_by_image_all`` to all trials and then keeps the subject's trials,
    which uses all of the subject's data and stays split by image. Trials with length outside
    ``[min_len, max_len]`` are dropped, as the dataset authors' loader does.
    """
    available = release.subjects
    if subject != 0 and subject not in available:
        raise DataError(f"unknown subject {subject}; this dataset has subjects {available} (0 = all)")
    if not 0 <= split_num < len(splits):
        raise DataError(f"{splits_path}: split {split_num} requested but the file has {len(splits)} split(s)")
    split = splits[split_num]
    base = np.arange(len(release)) if (subject == 0 or mode == "all") else np.flatnonzero(release.subject == subject)
    for name in SPLIT_NAMES:
        idx = split[name]
        if idx.size and idx.max() >= base.size:
            who = "all trials" if base.size == len(release) else f"subject {subject}'s trials"
            raise DataError(
                f"{splits_path}: split {split_num} '{name}' index {int(idx.max())} is out of range: "
                f"{who} number {base.size}"
            )
    lengths = release.lengths
    out: dict[str, np.ndarray] = {}
    for name in SPLIT_NAMES:
        idx = base[split[name]]
        if subject != 0 and mode == "all":
            idx = idx[release.subject[idx] == subject]
        keep = (lengths[idx] >= min_len) & (lengths[idx] <= max_len)
        out[name] = idx[keep]
    # Split by image: no image may appear in two parts (the block-design leakage rule).
    imgs = {name: set(release.image[out[name]].tolist()) for name in SPLIT_NAMES}
    shared = imgs["train"] & imgs["test"] | imgs["train"] & imgs["val"] | imgs["val"] & imgs["test"]
    if shared:
        raise DataError(f"{splits_path}: split {split_num} is not by image: {len(shared)} image(s) appear in more than one of train/val/test")
    for name in SPLIT_NAMES:
        if out[name].size == 0:
            raise DataError(f"{splits_path}: split {split_num} leaves no '{name}' trials for subject {subject} (mode {mode!r})")
    return out


def nested_fraction(
    indices: np.ndarray, image: np.ndarray, label: np.ndarray, fraction: float, *, seed: int = 0
) -> np.ndarray:
    """Deterministic, class-stratified, nested subset of training trials, chosen by image.

    Each training image gets a key ``(rank_within_class + u_class) / n_class`` from a seeded
    within-class order and a seeded per-class offset ``u_class``; the ``round(fraction * n_images)``
    images with the smallest keys are kept, with all their trials. Class proportions are preserved
    (systematic sampling), and because the order does not depend on ``fraction``, the subset for a
    smaller fraction is always inside the subset for a larger one. At least one image is kept.
    """
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not math.isfinite(fraction) or not 0 < fraction <= 1:
        raise DataError(f"training-data fraction must be in (0, 1]; got {fraction!r}")
    if fraction == 1:
        return indices
    img_of = image[indices]
    uniq, first = np.unique(img_of, return_index=True)
    img_label = label[indices][first]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    perm = rng.permutation(uniq.size)  # seeded within-class order (by position in this permutation)
    offsets = rng.random(int(img_label.max()) + 1)
    keys = np.empty(uniq.size)
    for c in np.unique(img_label):
        members = np.flatnonzero(img_label == c)
        order = members[np.argsort(perm[members], kind="stable")]
        keys[order] = (np.arange(order.size) + offsets[c]) / order.size
    n_keep = max(1, int(round(fraction * uniq.size)))
    chosen = uniq[np.lexsort((perm, keys))[:n_keep]]
    return indices[np.isin(img_of, chosen)]


# --------------------------------------------------------------------------------------------------
# Stacked trial sets
# --------------------------------------------------------------------------------------------------


@dataclass
class TrialSet:
    """Preprocessed trials of one split: ``eeg`` is ``[N, 128, T_END - T_START]`` float32."""

    eeg: torch.Tensor
    label: torch.Tensor
    image: torch.Tensor
    subject: torch.Tensor
    index: np.ndarray  # trial indices into the release
    image_names: list[str] = field(repr=False)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @classmethod
    def concat(cls, parts: list["TrialSet"]) -> "TrialSet":
        """Several trial sets (e.g. several subjects') as one, in order."""
        return cls(
            eeg=torch.cat([p.eeg for p in parts]), label=torch.cat([p.label for p in parts]), image=torch.cat([p.image for p in parts]),
            subject=torch.cat([p.subject for p in parts]), index=np.concatenate([p.index for p in parts]), image_names=[n for p in parts for n in p.image_names],
        )  # fmt: skip


def make_trial_set(release: Release, indices: np.ndarray, *, t_start: int = T_START, t_end: int = T_END) -> TrialSet:
    """Crop each trial to samples ``t_start..t_end`` and stack (copies out of the memory map)."""
    indices = np.asarray(indices, dtype=np.int64)
    nonfinite = [int(i) for i in indices if not bool(torch.isfinite(release.eeg[i]).all())]
    if nonfinite:  # releases loaded with check_finite=False are checked here, trial by trial
        raise DataError(f"{release.path}: {len(nonfinite)} trial(s) contain NaN or Inf EEG values: trials {_problem_list([str(i) for i in nonfinite])}")
    if indices.size:
        eeg = torch.stack([release.eeg[i][:, t_start:t_end] for i in indices]).to(torch.float32).contiguous()
    else:
        eeg = torch.empty(0, N_CHANNELS, t_end - t_start)
    return TrialSet(
        eeg=eeg,
        label=torch.as_tensor(release.label[indices]),
        image=torch.as_tensor(release.image[indices]),
        subject=torch.as_tensor(release.subject[indices]),
        index=indices,
        image_names=[release.images[i] for i in release.image[indices]],
    )


@dataclass(frozen=True)
class DataConfig:
    """Which data one trial uses. Everything here is part of a trial's identity."""

    root: str
    eeg_file: str = EEG_FILE
    split_mode: SplitMode = "all"
    split_num: int = 0
    subject: int = 0
    fraction: float = 1.0
    fraction_seed: int = 0
    t_start: int = T_START
    t_end: int = T_END


@dataclass
class SplitData:
    """Train/val/test trial sets of one subject and training fraction."""

    train: TrialSet
    val: TrialSet
    test: TrialSet
    labels: list[str]
    config: DataConfig


def load_split_data(cfg: DataConfig, *, release: Release | None = None) -> SplitData:
    """Dataset folder -> preprocessed train/val/test of one subject at one training fraction."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if cfg.split_mode not in SPLIT_FILES:
        raise DataError(f"split mode must be one of {sorted(SPLIT_FILES)}; got {cfg.split_mode!r}")
    if not 0 <= cfg.t_start < cfg.t_end <= MAX_LEN:
        raise DataError(f"time window {cfg.t_start}..{cfg.t_end} must lie within 0..{MAX_LEN}")
    release = release if release is not None else load_release(root / cfg.eeg_file)
    splits_path = root / SPLIT_FILES[cfg.split_mode]
    # The release's loader keeps 450 <= L <= 600 and crops 20..460, which silently yields short
    # crops for 450 <= L < 460; here such trials are dropped so every trial has the full window.
    parts = select_split(
        release,
        load_splits(splits_path),
        subject=cfg.subject,
        mode=cfg.split_mode,
        split_num=cfg.split_num,
        min_len=max(MIN_LEN, cfg.t_end),
        splits_path=splits_path,
    )
    parts["train"] = nested_fraction(parts["train"], release.image, release.label, cfg.fraction, seed=cfg.fraction_seed)
    sets = {name: make_trial_set(release, idx, t_start=cfg.t_start, t_end=cfg.t_end) for name, idx in parts.items()}
    return SplitData(train=sets["train"], val=sets["val"], test=sets["test"], labels=release.labels, config=cfg)


def image_path(image_root: str | Path, image_name: str) -> Path:
    """``<image_root>/<wnid>/<image_name>.JPEG`` (the WNID is the part of the name before ``_``)."""
    return Path(image_root) / image_name.split("_", 1)[0] / f"{image_name}.JPEG"


def missing_images(image_root: str | Path, names: list[str]) -> list[str]:
    """Image names whose file is absent under ``image_root``."""
    return [n for n in names if not image_path(image_root, n).is_file()]
