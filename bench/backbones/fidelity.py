"""The mini fidelity network as a torch-fidelity feature extractor (for IS and FID).

torch-fidelity instantiates extractors by registered name; this one loads the mini fidelity CNN
from ``feature_extractor_weights_path`` (a ``fidelity.safetensors`` file) and provides its class
logits (``logits_unbiased``, for IS) and its 128-d features (``features``, for FID/KID/PRC).
The network loader and input resolution come from :mod:`bench.backbones.mini` at registration
(this adapter does not import it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

NAME = "brainvis-mini-fidelity"


class MiniFidelityExtractor(FeatureExtractorBase):
    load: Callable[[Path], nn.Module]  # weights folder -> the fidelity network (set by register_mini_extractor)
    resolution: int

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{NAME}: feature_extractor_weights_path (fidelity.safetensors) is required")
        path = Path(feature_extractor_weights_path)
        self.net = type(self).load(path.parent if path.is_file() else path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("logits_unbiased", "features")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits_unbiased", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8:
            raise ValueError(f"{NAME}: expects uint8 images")
        x = x.float() / 255.0
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bicubic", align_corners=False).clamp(0, 1)
        x = (x - 0.5) / 0.5
        f = self.net.features(x)
        out = {"logits_unbiased": self.net.heads["class"](f), "features": f}
        return tuple(out[a] for a in self.features_list)


def register_mini_extractor(load: Callable[[Path], nn.Module], resolution: int) -> str:
    """Register the extractor with torch-fidelity once per process; return its name. ``load``: weights
    folder -> the fidelity network; ``resolution``: its input size."""
    MiniFidelityExtractor.load = staticmethod(load)
    MiniFidelityExtractor.resolution = resolution
    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, MiniFidelityExtractor)
    return NAME
