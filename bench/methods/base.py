"""The method interface every method (BrainVis, baselines, reference rows) implements.

A trial hands a method the *training and validation* trials of one subject and data fraction
(``fit``); the test split never reaches training code. Afterwards the harness passes the test
trials' EEG alone (no labels, no image ids) to ``predict``, then the predictions to ``generate``.

    fit(train, val, ctx) -> fit report (selection on validation only)
    predict(eeg [N, 128, 440]) -> Predictions(logits [N, C] | None, cond [N, T, W] | None)
    generate(preds, ctx, seed) -> {"final": uint8 [N, S, H, W, 3], optional "stage1": ...}
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from bench.methods.training import SharedWork, passes_per_epoch
from bench.data.eegcvpr40 import TrialSet


@dataclass(frozen=True)
class TrialSpec:
    """One point of a grid: everything a trial's result depends on besides data and backbones."""

    method: str
    subject: int = 4
    fraction: float = 1.0
    w: float = 0.5  # semantic interpolation weight (methods without it ignore it)
    seed: int = 0
    profile: str = "mini"
    options: tuple[tuple[str, Any], ...] = ()  # method-specific switches, e.g. (("use_freq", False),)

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


# What a method may pretrain on (its ``pretrain_data`` option): every subject's unlabelled training and
# validation EEG, the trial's subject's (the same at every fraction), or the trial's own training EEG.
PRETRAIN_DATA = ("all_subjects", "subject_unlabelled", "subject")


@dataclass
class UnlabelledPool:
    """EEG of the training and validation splits without labels (never a test image's trials), of
    every subject or of one: what a method may pretrain on (BrainVis' ``pretrain_data = "all_subjects"``).
    ``load()`` -> ``(train [N, C, T], val [M, C, T])`` float16 (half the memory; cast per batch)."""

    description: dict
    n_train: int
    n_val: int
    loader: Callable[[], tuple[torch.Tensor, torch.Tensor]]

    def describe(self) -> dict:
        return dict(self.description)

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loader()


@dataclass
class SubjectSplits:
    """Every subject's labelled trials at the trial's training fraction (the same images for every
    subject) and their validation trials, never a test image's: what a method may train its
    cross-subject stages on (BrainVis' ``branch_data = "all_subjects"``, as the official code trains
    its frequency and time encoders on every subject). ``load(subject) -> (train, val)``."""

    description: dict
    subjects: tuple[int, ...]
    loader: Callable[[int], tuple[TrialSet, TrialSet]]

    def describe(self) -> dict:
        return dict(self.description)

    def load(self, subject: int) -> tuple[TrialSet, TrialSet]:
        return self.loader(subject)


@dataclass
class FitContext:
    """What a method may use besides its training data."""

    spec: TrialSpec
    profile: dict  # the method's section of the profile (configs as data)
    backbones: Any  # bench.backbones.base.Backbones (None for methods that need none)
    class_prompts: list[str]
    captions: dict[str, str] = field(default_factory=dict)  # image name -> caption (cached captioner output)
    image_root: Path | None = None  # training images (DreamDiffusion aligns to CLIP image embeddings)
    device: str = "cpu"
    work_dir: Path | None = None
    log: Callable[[str], None] = lambda msg: None
    pretrain_pool: Callable[..., UnlabelledPool] | None = None  # (subject=0: every subject) -> pool; None: the dataset offers none
    subject_splits: Callable[[], SubjectSplits] | None = None  # None: the dataset offers none
    image_cache: Path | None = None  # class-prompt images shared between trials (bench.methods.generation); None: none
    shared: SharedWork = field(default_factory=lambda: SharedWork(None))  # work shared between trials (no cache: recomputed)

    @property
    def passes(self) -> int:
        """Passes over the training trials per epoch at this trial's fraction (``training.passes_per_epoch``)."""
        return passes_per_epoch(self.spec.fraction)

    def pretraining_pool(self, pretrain_data: str) -> UnlabelledPool | None:
        """The unlabelled pool ``pretrain_data`` (:data:`PRETRAIN_DATA`) names; None for ``"subject"``
        (the trial's own training EEG) or where the dataset offers no pool."""
        if pretrain_data not in PRETRAIN_DATA:
            raise ValueError(f"pretrain_data must be one of {', '.join(PRETRAIN_DATA)}; got {pretrain_data!r}")
        if pretrain_data == "subject" or self.pretrain_pool is None:
            return None
        return self.pretrain_pool() if pretrain_data == "all_subjects" else self.pretrain_pool(subject=int(self.spec.subject))


@dataclass
class Predictions:
    logits: torch.Tensor | None = None  # [N, n_classes]
    cond: torch.Tensor | None = None  # [N, n_tokens, width] conditioning for the generator
    extra: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """Base class: subclasses set ``name``, ``description``, ``source`` and implement the three steps."""

    name: ClassVar[str]
    description: ClassVar[str]
    source: ClassVar[str]
    uses_w: ClassVar[bool] = False  # False: grids collapse the w axis to 0.5 for this method
    uses_fraction: ClassVar[bool] = True  # False (no training on EEG): grids run it at fraction 1.0 only
    needs_generator: ClassVar[bool] = True
    cost: ClassVar[float] = 1.0  # rough wall time of a full-data trial relative to others: runs start longest first
    kind: ClassVar[str] = "EEG method"  # or "reference row" (chance, oracles) or "harness test" (noop, sleep, burn)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The method's hyperparameters at their code defaults: the keys a profile section
        (``[<name>]`` in ``bench/profiles/*.toml``) or a trial option may set."""
        return {}

    @abstractmethod
    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        """Train on ``train``, select on ``val``; return a JSON-safe report (epochs, val scores)."""

    @abstractmethod
    def predict(self, eeg: torch.Tensor) -> Predictions:
        """Predictions for EEG trials ``[N, 128, 440]`` (no labels are given)."""

    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        """Images per trial; default: none (classification-only methods)."""
        return {}


class StageClock:
    """Seconds per training stage for a fit report: ``clock.lap("pretrain")`` after each stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 2)
        self._last = now


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls
