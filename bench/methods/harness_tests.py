"""Built-in trivial methods: ``noop`` (harness overhead) and the ``chance`` reference row."""

from __future__ import annotations

import numpy as np
import torch

from bench.methods.base import FitContext, Method, Predictions, register_method
from bench.data.eegcvpr40 import TrialSet


@register_method
class NoOp(Method):
    name = "noop"
    description = "Does nothing: uniform logits, no images (measures harness overhead)."
    source = "-"
    needs_generator = False
    kind = "harness test"

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        self.n_classes = len(ctx.class_prompts)
        return {}

    def predict(self, eeg: torch.Tensor) -> Predictions:
        return Predictions(logits=torch.zeros(eeg.shape[0], self.n_classes))


@register_method
class Chance(Method):
    name = "chance"
    uses_fraction = False
    kind = "reference row"
    description = "Reference row: a random class per trial, generated from a random class prompt."
    source = "-"

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        self.n_classes = len(ctx.class_prompts)
        self.seed = ctx.spec.seed
        return {}

    def predict(self, eeg: torch.Tensor) -> Predictions:
        g = torch.Generator().manual_seed(self.seed)
        logits = torch.randn(eeg.shape[0], self.n_classes, generator=g)
        return Predictions(logits=logits)

    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        from bench.methods.generation import generate_from_prompts

        labels = preds.logits.argmax(1).tolist()
        return {"final": generate_from_prompts([ctx.class_prompts[c] for c in labels], ctx, seed=seed)}


@register_method
class Sleep(Method):
    """Harness tests: waits ``seconds`` (option, default 1.0) in fit; seeded random logits, no images."""

    name = "sleep"
    description = "Sleeps in fit (option seconds, default 1), then seeded random logits (harness tests)."
    source = "-"
    needs_generator = False
    kind = "harness test"

    @classmethod
    def defaults(cls) -> dict:
        return {"seconds": 1.0}

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        import time

        self.n_classes = len(ctx.class_prompts)
        self.seed = ctx.spec.seed
        seconds = float(ctx.spec.option("seconds", 1.0))
        time.sleep(seconds)
        return {"slept_s": seconds}

    def predict(self, eeg: torch.Tensor) -> Predictions:
        g = torch.Generator().manual_seed(1000 + self.seed)
        return Predictions(logits=torch.randn(eeg.shape[0], self.n_classes, generator=g))


@register_method
class Burn(Method):
    """Perf: a fixed amount of single-threaded matmul work in fit (option iters), then uniform logits."""

    name = "burn"
    description = "CPU-bound fixed work in fit (option iters of 256x256 matmuls; ~2 s by default on one core)."
    source = "-"
    needs_generator = False
    kind = "harness test"
    ITERS = 3500  # ~2 s at one thread on the project's 2-core machines

    @classmethod
    def defaults(cls) -> dict:
        return {"iters": cls.ITERS}

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        self.n_classes = len(ctx.class_prompts)
        iters = int(ctx.spec.option("iters", self.ITERS))
        g = torch.Generator().manual_seed(ctx.spec.seed)
        a = torch.randn(256, 256, generator=g) / 16
        b = torch.randn(256, 256, generator=g) / 16
        for _ in range(iters):
            a = torch.tanh(a @ b)
        return {"iters": iters, "checksum": float(a.sum())}

    def predict(self, eeg: torch.Tensor) -> Predictions:
        return Predictions(logits=torch.zeros(eeg.shape[0], self.n_classes))
