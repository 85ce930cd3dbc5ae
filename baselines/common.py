"""Shared machinery of the baselines: configs as data, seeded fitting and classify-then-draw.

Every EEG model of this package follows braindecode's uniform constructor convention::

    Model(n_chans=128, n_outputs=40, n_times=440, **hyperparameters)
    model(x [B, n_chans, n_times]) -> logits [B, n_outputs]

A classify-then-draw baseline (:class:`ClassifyThenDraw`) trains such a model with cross-entropy
(``bench.methods.training.train_classifier``: the state with the best *validation* accuracy is kept),
predicts a class per test trial and draws the predicted class prompt with the generator
(``bench.methods.generation.generate_from_prompts``), as Brain2Image-style pipelines do.

Hyperparameters come from the method's profile section (``bench/profiles/*.toml``), then from the
trial options; unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import FitContext, Method, Predictions
from bench.methods.signal import Decimate, decimated_length
from bench.data.eegcvpr40 import TrialSet

# Training protocol of the dataset authors' classification script (perceivelab/eeg_visual_classification,
# eeg_signal_classification.py): Adam, lr 1e-3, batch 16, 200 epochs, no decay with Adam.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 200,
    "lr": 1e-3,
    "batch_size": 16,
    "weight_decay": 0.0,  # AdamW with weight_decay 0 is Adam
    "decimate": 1,  # mean of k consecutive samples before the model (mini profiles only; 1 = off)
    "patience": 0,  # stop after this many epochs without a better validation accuracy (0: run every epoch)
}


def resolve_config(defaults: dict[str, Any], section: dict, options: dict | None, method: str) -> dict[str, Any]:
    """``defaults`` overridden by the profile ``section`` then the trial ``options`` (unknown keys: error)."""
    cfg = dict(defaults)
    for source, values in (("profile", section or {}), ("option", options or {})):
        for key, value in values.items():
            if source == "profile" and key == "generation":
                continue  # the shared [generation] section travels in every method's profile
            if key not in defaults:
                raise ValueError(f"{method}: unknown {source} key {key!r}; known: {', '.join(sorted(defaults))}")
            cfg[key] = value
    return cfg


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def on_device(module: nn.Module, device: str):
    """``x (cpu) -> module(x on device) -> cpu``; autograd flows through the transfers."""
    if device in ("cpu", None):
        return module
    return lambda x: module(x.to(device)).cpu()


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def class_prompts_of(logits: torch.Tensor, class_prompts: list[str]) -> list[str]:
    return [class_prompts[c] for c in logits.argmax(1).tolist()]


class ClassifyThenDraw(Method):
    """Base of the classification baselines: CE training, best-validation selection, class-prompt drawing.

    Subclasses set ``model_defaults`` (the model's hyperparameters at paper values) and implement
    :meth:`build_model`; ``train_defaults`` holds the training protocol (see :data:`TRAIN_DEFAULTS`).
    """

    needs_generator = True
    uses_w = False
    model_defaults: ClassVar[dict[str, Any]] = {}
    train_defaults: ClassVar[dict[str, Any]] = TRAIN_DEFAULTS

    @classmethod
    def build_model(cls, n_chans: int, n_outputs: int, n_times: int, **kwargs) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {**cls.train_defaults, **cls.model_defaults}

    @classmethod
    def config(cls, section: dict, options: dict | None = None) -> dict[str, Any]:
        return resolve_config(cls.defaults(), section, options, cls.name)

    @classmethod
    def make_network(cls, cfg: dict[str, Any], n_chans: int, n_outputs: int, n_times: int) -> nn.Module:
        """``Decimate`` (when configured) followed by the model at the decimated length."""
        k = int(cfg.get("decimate", 1))
        model = cls.build_model(n_chans, n_outputs, decimated_length(n_times, k), **{key: cfg[key] for key in cls.model_defaults})
        return nn.Sequential(Decimate(k), model) if k > 1 else model

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        from bench.methods.training import train_classifier

        cfg = self.config(ctx.profile, dict(ctx.spec.options))
        self.cfg, self.device = cfg, ctx.device or "cpu"
        n_chans, n_times = train.eeg.shape[1:]
        n_classes = len(ctx.class_prompts)
        t0 = time.perf_counter()
        # Own RNG stream: the result depends on the seed only, and the caller's RNG state is restored.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.spec.seed)
            g = torch.Generator().manual_seed(ctx.spec.seed)
            self.model = self.make_network(cfg, n_chans, n_classes, n_times).to(self.device)
            report = train_classifier(
                self.model, on_device(self.model, self.device), train, val,
                epochs=int(cfg["epochs"]), lr=float(cfg["lr"]), batch=int(cfg["batch_size"]), wd=float(cfg["weight_decay"]), g=g,
                patience=int(cfg["patience"]) or None, passes=ctx.passes,
            )  # fmt: skip
        return {**report, "config": dict(cfg), "n_params": n_params(self.model), "train_seconds": round(time.perf_counter() - t0, 2)}

    def predict(self, eeg: torch.Tensor) -> Predictions:
        self.model.eval()
        logits = batched(on_device(self.model, self.device), eeg)
        return Predictions(logits=logits)

    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        from bench.methods.generation import generate_from_prompts

        prompts = class_prompts_of(preds.logits, ctx.class_prompts)
        preds.extra["prompts"] = prompts
        return {"final": generate_from_prompts(prompts, ctx, seed=seed)}
