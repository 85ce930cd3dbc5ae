"""Signal preprocessing a method may put in front of its model (mini profiles: a lower sampling rate)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Decimate", "decimated_length"]


def decimated_length(n_times: int, decimate: int) -> int:
    """Samples left of ``n_times`` after :class:`Decimate` ``(decimate)``."""
    return n_times // int(decimate)


class Decimate(nn.Module):
    """Mean of each ``k`` consecutive samples: ``[B, C, T] -> [B, C, T // k]`` (identity for k = 1).

    The boxcar mean is a crude anti-aliasing low-pass (first null at ``fs / k``) before the rate
    reduction; used by the mini profiles only (e.g. k = 8: 1 kHz -> 125 Hz, above twice the synthetic
    world's highest planted band, 25 Hz).
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"decimate must be a positive integer, got {k!r}")
        self.k = int(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.k == 1 else F.avg_pool1d(x, self.k, self.k)

    @torch.no_grad()
    def in_batches(self, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """Many trials ``[N, C, T]`` (e.g. a float16 pool), ``batch`` at a time in float32: ``[N, C, T // k]``
        (``x`` itself, dtype kept, when ``k = 1``)."""
        if self.k == 1:
            return x
        return torch.cat([self(x[i : i + batch].float()) for i in range(0, len(x), batch)])
