"""SSIM between ground-truth and generated images, the REFERENCE §4 protocol.

``skimage.metrics.structural_similarity(gt, gen, channel_axis=-1, data_range=255)`` per pair
on uint8 RGB images [H, W, 3] at one fixed resolution (resize before calling; the resolution
is recorded). skimage defaults otherwise: uniform 7x7 window (``gaussian_weights=False``),
K1=0.01, K2=0.03, sample covariance. torchmetrics' SSIM (Gaussian window) gives different
values. Only uint8 input is accepted: the published code passed ImageNet-normalised floats
with ``data_range=255``, which makes the stabilising constants dominate and pushes SSIM
towards 1 for unrelated images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from ._util import to_numpy
from .registry import register

__all__ = ["ssim", "SSIM_SETTINGS"]

SSIM_SETTINGS = {
    "data_range": 255,
    "win_size": 7,
    "gaussian_weights": False,
    "channel_axis": -1,
    "K1": 0.01,
    "K2": 0.03,
    "use_sample_covariance": True,
}


def _check(x: Any, name: str) -> np.ndarray:
    a = to_numpy(x, name=name)
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: SSIM needs uint8 RGB images (0..255), got dtype {a.dtype}; "
                         "convert to uint8 first (float/normalised inputs with data_range=255 inflate SSIM)")
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape [M, H, W, 3] (channel-last RGB), got {tuple(a.shape)}")
    if a.shape[0] < 1:
        raise ValueError(f"{name}: no images")
    if min(a.shape[1], a.shape[2]) < SSIM_SETTINGS["win_size"]:
        raise ValueError(f"{name}: images must be at least 7x7 for the 7x7 SSIM window, got {a.shape[1]}x{a.shape[2]}")
    return a


@register("ssim", higher_is_better=True, label="SSIM", rank=50,
          description="Mean SSIM (skimage, uint8 RGB, data_range=255, 7x7 uniform window) of GT vs generated pairs")
def ssim(gt_uint8: Any, gen_uint8: Any) -> dict:
    """Mean SSIM over pairs ``(gt_uint8[i], gen_uint8[i])``, both uint8 [M, H, W, 3].

    Returns value, per_pair, count, resolution [H, W] and the skimage settings used.
    """
    gt = _check(gt_uint8, "gt_uint8")
    gen = _check(gen_uint8, "gen_uint8")
    if gt.shape != gen.shape:
        raise ValueError(f"shape mismatch: gt {tuple(gt.shape)} vs gen {tuple(gen.shape)}; "
                         "resize both to one recorded resolution first")
    s = SSIM_SETTINGS
    vals = [
        float(structural_similarity(
            gt[i], gen[i], channel_axis=s["channel_axis"], data_range=s["data_range"], win_size=s["win_size"],
            gaussian_weights=s["gaussian_weights"], K1=s["K1"], K2=s["K2"],
            use_sample_covariance=s["use_sample_covariance"],
        ))
        for i in range(gt.shape[0])
    ]
    return {
        "value": float(np.mean(vals)),
        "per_pair": vals,
        "count": int(gt.shape[0]),
        "resolution": [int(gt.shape[1]), int(gt.shape[2])],
        **{k: v for k, v in s.items()},
        "implementation": "skimage.metrics.structural_similarity",
    }
