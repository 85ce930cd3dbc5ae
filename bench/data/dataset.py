"""The one data interface a trial uses: a :class:`Dataset` (subjects, classes, images, captions'
images, one subject's split), found by format name in :data:`DATASETS`.

EEG-CVPR40 (:class:`EEGCVPR40`, the real release and every synthetic world: they share its on-disk
format) is the registered implementation; another format registers its own class with
:func:`register_dataset` from a plugin (``bench run --data DIR --dataset-format NAME --include
my_format.py``). A class is built as ``Cls(root, split_mode="all")`` and raises
:class:`~bench.errors.UserError` for a folder it cannot read. The harness takes the number of
classes from ``classes``; nothing assumes 40. Formats with ``audited = True`` get the block-design
leakage audit (it reads EEG-CVPR40 files).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from bench.data.classes import NAME_BY_WNID, class_prompt
from bench.data.eegcvpr40 import (
    EEG_FILE,
    SPLIT_FILES,
    T_END,
    T_START,
    DataConfig,
    Release,
    SplitData,
    image_path,
    load_release,
    load_split_data,
    load_splits,
    select_split,
)
from bench.errors import DataError, UserError

__all__ = ["DATASETS", "DEFAULT_FORMAT", "Dataset", "EEGCVPR40", "open_dataset", "register_dataset"]


@runtime_checkable
class Dataset(Protocol):
    """What the harness asks of a dataset (one folder)."""

    format: ClassVar[str]
    audited: ClassVar[bool]  # whether the leakage audit (EEG-CVPR40 files) applies
    root: Path

    @property
    def dataset_id(self) -> str:
        """A stable id of this dataset's contents (part of every trial's identity)."""

    def validate(self, progress: Callable[[str], None]) -> None:
        """Check every file before any trial runs; raise :class:`~bench.errors.UserError` naming the problem."""

    def subjects(self) -> list[int]:
        """Subject ids (0 is reserved for "all subjects pooled")."""

    @property
    def classes(self) -> list[str]:
        """Class ids in label order (EEG-CVPR40: WNIDs); ``len(classes)`` is the class count."""

    def class_prompts(self) -> list[str]:
        """A text prompt per class (label order)."""

    def load_split(self, subject: int, fraction: float, seed: int) -> SplitData:
        """Train / val / test trials of ``subject`` (0: all pooled), the training split cut to
        ``fraction`` with ``seed`` (nested: a smaller fraction is a subset of a larger one)."""

    def images(self, names: list[str]) -> np.ndarray:
        """RGB uint8 ``[N, H, W, 3]`` of the named stimulus images."""

    def image_root(self) -> Path:
        """Folder of the stimulus images (methods read training images from it)."""

    def attributes(self, names: list[str]) -> dict[str, np.ndarray] | None:
        """True attribute value indices per named image (a synthetic world's), or None."""

    def unlabelled_eeg(self, *, subject: int = 0) -> tuple[dict, int, int, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
        """Train and val EEG without labels (never a test image's trials) of every subject
        (``subject = 0``) or of one: ``(description, n_train, n_val, load)``; ``load() -> (train, val)`` float16."""

    @property
    def stimulus_id(self) -> str | None:
        """Id of the images and splits (a synthetic world's; the mini backbones are trained per id), or None."""


DATASETS: dict[str, type] = {}
DEFAULT_FORMAT = "eeg-cvpr40"


def register_dataset(cls: type) -> type:
    """Class decorator: register a :class:`Dataset` implementation under its ``format``."""
    if cls.format in DATASETS and DATASETS[cls.format] is not cls:
        raise ValueError(f"dataset format {cls.format!r} registered twice")
    DATASETS[cls.format] = cls
    return cls


def open_dataset(root: str | Path, format: str = DEFAULT_FORMAT, **options) -> Dataset:
    """The dataset in ``root`` read as ``format`` (a :class:`UserError` for an unknown format)."""
    if format not in DATASETS:
        raise UserError(f"unknown dataset format {format!r}; known: {', '.join(sorted(DATASETS))}")
    return _open(str(Path(root)), format, tuple(sorted(options.items())))


@lru_cache(maxsize=4)
def _open(root: str, format: str, options: tuple) -> Dataset:  # one object per folder and process (memory-mapped EEG)
    return DATASETS[format](Path(root), **dict(options))


@register_dataset
class EEGCVPR40:
    """The EEG-CVPR40 release format (Spampinato et al. 2017): ``eeg_5_95_std.pth``, the block splits
    by image, ``images/``; a synthetic world adds ``world.json`` and ``attributes.json``."""

    format: ClassVar[str] = "eeg-cvpr40"
    audited: ClassVar[bool] = True

    def __init__(self, root: Path, split_mode: str = "all") -> None:
        self.root = Path(root)
        self.split_mode = split_mode
        if not (self.root / EEG_FILE).is_file():
            raise UserError(f"{self.root}: {EEG_FILE} not found (expected the EEG-CVPR40 layout; see `bench data check`)")

    @property
    def dataset_id(self) -> str:
        """``world.json``'s world id, else ``cvpr40:`` + a short hash of the EEG file's name, size and mtime."""
        if self._manifest.get("world_id"):
            return str(self._manifest["world_id"])
        st = (self.root / EEG_FILE).stat()
        return "cvpr40:" + hashlib.sha256(f"{EEG_FILE}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]

    def validate(self, progress: Callable[[str], None] = lambda m: None) -> None:
        from bench.data.check import validate_dataset

        validate_dataset(self.root, progress=progress)

    @cached_property
    def release(self) -> Release:
        # Finiteness is checked per trial set (make_trial_set), so a trial touches only its subject's
        # pages of the memory-mapped file rather than all of them.
        return load_release(self.root / EEG_FILE, check_finite=False)

    def _transient_release(self) -> Release:
        """A mapping of the EEG file of its own, for copying trials out of: once the copies are made
        and it is dropped, the pages it touched leave this process (a long-lived mapping kept every
        page ever read resident in the worker: 1.6 GB after stacking every subject's trials)."""
        return load_release(self.root / EEG_FILE, check_finite=False)

    @cached_property
    def _manifest(self) -> dict:
        try:
            return json.loads((self.root / "world.json").read_text())
        except (OSError, ValueError):
            return {}

    def subjects(self) -> list[int]:
        subjects = self._manifest.get("subjects")
        if isinstance(subjects, list) and subjects:
            return sorted(int(s) for s in subjects)
        return self.release.subjects

    @property
    def classes(self) -> list[str]:
        return list(self.release.labels)

    def class_prompts(self) -> list[str]:
        return [class_prompt(i) if w in NAME_BY_WNID else f"a photo of a {w}" for i, w in enumerate(self.classes)]

    def load_split(self, subject: int, fraction: float, seed: int) -> SplitData:
        cfg = DataConfig(root=str(self.root), subject=subject, fraction=fraction, fraction_seed=seed, split_mode=self.split_mode)
        return load_split_data(cfg, release=self._transient_release())

    def image_root(self) -> Path:
        return self.root / "images"

    def images(self, names: list[str]) -> np.ndarray:
        return np.stack([np.asarray(Image.open(image_path(self.image_root(), n)).convert("RGB")) for n in names])

    def attributes(self, names: list[str]) -> dict[str, np.ndarray] | None:
        from bench.world.images import load_attributes

        return load_attributes(self.root, names)

    @property
    def stimulus_id(self) -> str | None:
        return self._manifest.get("stimulus_id")

    def unlabelled_eeg(self, *, subject: int = 0, t_start: int = T_START, t_end: int = T_END):
        release = self.release
        splits_path = self.root / SPLIT_FILES[self.split_mode]
        parts = select_split(release, load_splits(splits_path), subject=subject, mode=self.split_mode, min_len=max(460, t_end), splits_path=splits_path)

        def stack(source: Release, idx: np.ndarray) -> torch.Tensor:
            out = torch.empty(len(idx), source.eeg[0].shape[0], t_end - t_start, dtype=torch.float16)
            for j, i in enumerate(idx):
                x = source.eeg[int(i)][:, t_start:t_end]
                if not bool(torch.isfinite(x).all()):
                    raise DataError(f"{source.path}: trial {int(i)} contains NaN or Inf EEG values")
                out[j] = x
            return out

        def load() -> tuple[torch.Tensor, torch.Tensor]:
            source = self._transient_release()
            return stack(source, parts["train"]), stack(source, parts["val"])

        description = {"split_mode": self.split_mode, "subjects": sorted(int(s) for s in np.unique(release.subject[parts["train"]])),
                       "n_train": int(parts["train"].size), "n_val": int(parts["val"].size), "window": [t_start, t_end]}  # fmt: skip
        return description, int(parts["train"].size), int(parts["val"].size), load
