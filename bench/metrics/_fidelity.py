"""Glue for torch-fidelity: an in-memory uint8 image dataset and a common call wrapper.

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


def version() -> str:
    import torch_fidelity

    return str(getattr(torch_fidelity, "__version__", "unknown"))
