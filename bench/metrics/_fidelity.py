"""Glue for torch-fidelity: an in-memory uint8 image dataset, a common call wrapper, and one feature
pass through a registered extractor (the arrays :mod:`bench.metrics.set_level` scores).

Imported lazily (torch-fidelity imports torchvision) by the ``*_torch_fidelity`` wrappers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class UInt8ImageDataset(Dataset):
    """Dataset over a uint8 tensor [M, 3, H, W]; items are [3, H, W] uint8 tensors (torch-fidelity's input)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def as_uint8_images(images: Any, *, name: str) -> torch.Tensor:
    """uint8 tensor [M, 3, H, W] (channel-first, as torch-fidelity expects) or ``ValueError``."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise ValueError(f"{name}: expected dtype uint8 (0..255), got {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"{name}: expected shape [M, 3, H, W], got {tuple(images.shape)}"
            + (" (channel-last? use .permute(0, 3, 1, 2))" if images.ndim == 4 and images.shape[-1] == 3 else "")
        )
    if images.shape[0] < 1:
        raise ValueError(f"{name}: no images")
    return images.detach().cpu().contiguous()


def calculate(**kwargs: Any) -> dict:
    """``torch_fidelity.calculate_metrics`` with harness defaults: CPU, no cache, quiet,
    ``save_cpu_ram=True`` (no DataLoader worker processes: inputs are already in memory)."""
    import torch_fidelity

    opts = {"cuda": False, "cache": False, "verbose": False, "save_cpu_ram": True}
    opts.update(kwargs)
    return torch_fidelity.calculate_metrics(**opts)


def feature_layers(feature_extractor: str | None = None) -> dict[str, str]:
    """The extractor's default layer per metric: ``{"isc": ..., "fid": ..., "kid": ...}``."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import DEFAULT_FEATURE_EXTRACTOR

    name = feature_extractor or DEFAULT_FEATURE_EXTRACTOR["isc"]
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        raise ValueError(f"feature extractor {name!r} is not registered with torch-fidelity")
    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    return {m: cls.get_default_feature_layer_for_metric(m) for m in ("isc", "fid", "kid")}


def extract_features(
    image_sets: list[Any], layers: list[str], *, feature_extractor: str | None = None, feature_extractor_weights_path: str | None = None,
    batch_size: int = 64, cuda: bool = False, **kwargs: Any,
) -> list[dict[str, np.ndarray]]:
    """Features of each uint8 [M, 3, H, W] image set from one torch-fidelity extractor instance, exactly as
    ``calculate_metrics`` computes them (``create_feature_extractor`` + ``get_featuresdict_from_dataset``,
    no worker processes); float64 arrays keyed by layer."""
    from torch_fidelity.utils import DEFAULT_FEATURE_EXTRACTOR, create_feature_extractor, get_featuresdict_from_dataset

    sets = [as_uint8_images(x, name=f"image_sets[{i}]") for i, x in enumerate(image_sets)]
    name = feature_extractor or DEFAULT_FEATURE_EXTRACTOR["isc"]
    ext = create_feature_extractor(name, list(dict.fromkeys(layers)), cuda=cuda, verbose=False,
                                   feature_extractor_weights_path=feature_extractor_weights_path, **kwargs)
    out = []
    for imgs in sets:
        fd = get_featuresdict_from_dataset(UInt8ImageDataset(imgs), ext, batch_size, cuda, True, False)
        out.append({k: v.detach().cpu().double().numpy() for k, v in fd.items()})
    return out


def version() -> str:
    import torch_fidelity

    return str(getattr(torch_fidelity, "__version__", "unknown"))
