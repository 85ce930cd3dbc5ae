"""Attribute fidelity: do reconstructions show the ground-truth image's attributes?

For each generated image, a trained attribute reader (the mini evaluation classifier's attribute
heads) predicts each attribute (colour, size, position, background); a prediction scores 1 when it
equals the ground-truth image's true attribute. A trial's value is the mean over attributes and
samples; the metric is the mean over trials. Chance (a reader that guesses uniformly) is the mean
over attributes of 1 / (number of values). The class label never states these attributes; captions
do, so this is the known answer for what the caption half of BrainVis' interpolation adds.
"""

from __future__ import annotations

import numpy as np

from .registry import register

__all__ = ["attribute_fidelity"]


@register("attribute_fidelity", higher_is_better=True, label="attr.", interval="wilson", rank=90,
          description="Share of the ground truth's attributes (colour, size, position, background) a trained reader finds in its reconstruction")
def attribute_fidelity(predicted: dict[str, np.ndarray], true: dict[str, np.ndarray], n_values: dict[str, int], samples: int = 1) -> dict:
    """``predicted[a]``: predicted value index per generated image ``[N * samples]`` (trial-major);
    ``true[a]``: true value index per trial ``[N]``. Returns value, per_trial, per_attribute and chance."""
    names = [a for a in predicted if a in true]
    if not names:
        raise ValueError("attribute_fidelity: no attribute both predicted and known")
    n = len(next(iter(true.values())))
    hits = []
    per_attribute = {}
    for a in names:
        pred = np.asarray(predicted[a]).reshape(n, samples)
        ok = (pred == np.asarray(true[a])[:, None]).astype(float)  # [N, S]
        per_attribute[a] = float(ok.mean())
        hits.append(ok.mean(1))
    per_trial = np.mean(hits, axis=0)
    return {
        "value": float(per_trial.mean()),
        "per_trial": [float(v) for v in per_trial],
        "per_attribute": per_attribute,
        "chance": float(np.mean([1.0 / n_values[a] for a in names])),
        "attributes": names,
    }


# The same function on the cascade's first (semantic) stage: where BrainVis' interpolation weight acts.
# Stage 2 redraws the stage-1 image from the class prompt at strength 0.85, which keeps little of its
# attributes, so the caption half's effect is measured here (bench.evaluation.scoring).
register("stage1_attribute_fidelity", higher_is_better=True, label="attr. (stage 1)", interval="wilson", rank=92,
         description="Attribute fidelity of the cascade's stage-1 images (before the class-prompt refinement)")(attribute_fidelity)
