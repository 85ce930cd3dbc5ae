"""Reference rows: the generator driven without EEG, to bound and decompose the image metrics.

- ``oracle_caption``: the ground-truth image's caption (from the captioner backbone, at generate
  time, on the test image itself) as the prompt: the ceiling of "EEG -> text -> generator" pipelines.
- ``oracle_label``: the true class prompt (the ceiling of classify-then-draw pipelines).
- ``brainvis_stage2_true`` / ``brainvis_stage2_random``: BrainVis' stage 2 on its own (class-prompt
  generation, through ``bench.methods.generation.cascade(stage1=False)``) driven by the true class / by a
  uniformly random class. With BrainVis itself run with ``stage1=False`` (the "pred" row) they show
  how much of N-way Top-K is classification. ``chance`` (bench/methods/harness_tests.py) is the chance row.

Reference rows get no EEG. They set ``reference = True`` and the harness calls
``predict_reference(test_labels, test_image_names)`` instead of ``predict(eeg)``; plain ``predict``
raises. Their ``logits`` are one-hot on the class that drives the generator (true or random), so
their classification metrics are 1.0 (true-label rows) or chance (random row) by construction.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from bench.methods.base import FitContext, Method, Predictions, register_method
from bench.data.eegcvpr40 import TrialSet


class ReferenceRow(Method):
    """Base of the reference rows (no training; predictions from test labels / image names)."""

    reference: ClassVar[bool] = True
    kind = "reference row"
    cost = 0.2
    needs_generator = True
    uses_w = False
    uses_fraction = False

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        self.ctx = ctx
        self.n_classes = len(ctx.class_prompts)
        self.seed = int(ctx.spec.seed)
        self.subject = int(ctx.spec.subject)
        return {"reference": True}

    def predict(self, eeg: torch.Tensor) -> Predictions:
        raise RuntimeError(
            f"{self.name} is a reference row (reference = True): it gets no EEG; call "
            f"predict_reference(test_labels, test_image_names) instead of predict(eeg)"
        )

    def driving_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def predict_reference(self, labels: torch.Tensor, image_names: list[str]) -> Predictions:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if len(image_names) != len(labels):
            raise ValueError(f"{self.name}: {len(labels)} labels but {len(image_names)} image names")
        drive = self.driving_labels(labels)
        prompts = [self.ctx.class_prompts[c] for c in drive.tolist()]
        return Predictions(
            logits=F.one_hot(drive, self.n_classes).float(),
            extra={"prompts": prompts, "image_names": list(image_names), "driving_labels": drive.tolist()},
        )

    def _cond(self, prompts: list[str], ctx: FitContext) -> torch.Tensor:
        text = ctx.backbones.text_encoder
        return torch.cat([text.encode_tokens(prompts[i : i + 64]) for i in range(0, len(prompts), 64)])


@register_method
class OracleLabel(ReferenceRow):
    name = "oracle_label"
    description = "Reference row: the generator driven by the true class prompt (ceiling of classify-then-draw)."
    source = "- (reference row; REFERENCE.md §3)"

    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        from bench.methods.generation import generate_from_prompts

        return {"final": generate_from_prompts(preds.extra["prompts"], ctx, seed=seed)}


@register_method
class OracleCaption(ReferenceRow):
    name = "oracle_caption"
    description = "Reference row: the generator driven by the captioner's caption of the ground-truth test image (generator ceiling)."
    source = "- (reference row; REFERENCE.md §3)"

    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        from bench.methods.generation import settings, txt2img_samples
        from bench.data.eegcvpr40 import image_path
        from PIL import Image

        names = preds.extra["image_names"]
        unique = list(dict.fromkeys(names))
        captions: dict[str, str] = {}
        for i in range(0, len(unique), 64):
            chunk = unique[i : i + 64]
            imgs = np.stack([np.asarray(Image.open(image_path(ctx.image_root, n)).convert("RGB")) for n in chunk])
            captions.update(zip(chunk, ctx.backbones.captioner.caption(imgs)))
        prompts = [captions[n] for n in names]
        preds.extra["prompts"] = prompts
        preds.cond = self._cond(prompts, ctx)
        s = settings(ctx)
        return {"final": txt2img_samples(preds.cond, ctx, seed=seed, steps=s["stage2_steps"], guidance=s["stage2_guidance"])}


class BrainVisStage2(ReferenceRow):
    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        from bench.methods.generation import cascade

        out = cascade(None, preds.extra["prompts"], ctx, seed=seed, stage1=False, stage2=True)
        return {"final": out["final"]}


@register_method
class BrainVisStage2True(BrainVisStage2):
    name = "brainvis_stage2_true"
    description = "Reference row: BrainVis' stage 2 alone (class-prompt generation) driven by the true class."
    source = "Fu et al., BrainVis, ICASSP 2025 (cascade ablation; reference row)"


@register_method
class BrainVisStage2Random(BrainVisStage2):
    name = "brainvis_stage2_random"
    description = "Reference row: BrainVis' stage 2 alone (class-prompt generation) driven by a uniformly random class (seeded)."
    source = "Fu et al., BrainVis, ICASSP 2025 (cascade ablation; reference row)"

    def driving_labels(self, labels: torch.Tensor) -> torch.Tensor:
        # Seeded by (seed, subject): each subject's row is an independent draw, not one draw repeated.
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([7_000_003, self.seed, self.subject]).generate_state(1)[0]))
        return torch.randint(self.n_classes, (len(labels),), generator=g)
