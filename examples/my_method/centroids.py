"""A method of your own, benchmarked without editing the package: nearest class centroid of each
channel's band power. Register it with `@register_method`; `bench run --include` (or a grid's
`include`) imports this file in the driver and in every trial actor."""

from __future__ import annotations

import torch

from bench.methods.base import Method, Predictions, register_method


@register_method
class BandPowerCentroids(Method):
    name = "my_centroids"
    description = "Nearest class centroid of per-channel log power (an example plugin)."
    source = "examples/my_method"
    needs_generator = False  # classification only: no images

    def fit(self, train, val, ctx) -> dict:
        x, n = self._features(train.eeg), len(ctx.class_prompts)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        z = (x - self.mean) / self.std
        self.centroids = torch.stack([z[train.label == k].mean(0) if (train.label == k).any() else torch.zeros(z.shape[1]) for k in range(n)])
        val_top1 = (self.predict(val.eeg).logits.argmax(1) == val.label).float().mean()
        return {"val_top1": float(val_top1)}  # anything JSON-safe: stored in the trial record

    @staticmethod
    def _features(eeg: torch.Tensor) -> torch.Tensor:
        return torch.log(eeg.pow(2).mean(-1) + 1e-6)  # [N, channels]

    def predict(self, eeg: torch.Tensor) -> Predictions:
        z = (self._features(eeg) - self.mean) / self.std
        return Predictions(logits=-torch.cdist(z, self.centroids))
