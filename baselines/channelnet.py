"""EEG-ChannelNet (Palazzo et al., TPAMI 2020), written from the paper and the authors' model defaults.

Input ``[B, 128, 440]`` is viewed as a one-plane image ``[B, 1, channels, time]``.

- Temporal block: ``len(dilations)`` parallel Conv2d with kernel ``(1, temporal_kernel)``, dilation
  ``(1, d)`` (1/2/4/8), stride ``(1, temporal_stride)`` and padding ``d * (kernel - 1) / 2``, so every
  branch yields the same length (440 -> 220); ``temporal_filters`` (10) maps each; concatenated (40).
- Spatial block: parallel Conv2d over the channel axis with kernels ``(n_chans // (i + 1), 1)``
  = (128,1), (64,1), (42,1), (32,1), stride ``(spatial_stride, 1)`` and padding ``(k - 1) // 2``
  (all branches: 128 -> 64 rows), ``spatial_filters`` (50) maps each; concatenated (200).
- ``n_residual`` (4) residual blocks (two 3x3 conv + BN, identity shortcut), each followed by a
  ``down_kernel`` (3) conv with stride ``down_stride`` (2) and no padding.
- Final conv ``down_kernel`` to ``out_filters`` (50) maps -> flatten -> Linear(., ``embedding``=1000)
  + ReLU -> Linear(1000, 40).

Every conv outside the residual blocks is pre-activated as in the authors' layers
(BatchNorm -> ReLU -> Conv2d -> Dropout2d(``dropout`` = 0.2)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from baselines.common import ClassifyThenDraw
from bench.methods.base import register_method


class PreActConv(nn.Sequential):
    """BatchNorm -> ReLU -> Conv2d -> Dropout2d."""

    def __init__(self, cin: int, cout: int, kernel, *, stride=1, padding=0, dilation=1, dropout: float = 0.2) -> None:
        super().__init__(
            nn.BatchNorm2d(cin), nn.ReLU(),
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation),
            nn.Dropout2d(dropout),
        )  # fmt: skip


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class ParallelConcat(nn.ModuleList):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self], dim=1)


class EEGChannelNet(nn.Module):
    """``[B, n_chans, n_times] -> [B, n_outputs]`` (braindecode-style constructor)."""

    def __init__(
        self,
        n_chans: int = 128,
        n_outputs: int = 40,
        n_times: int = 440,
        *,
        temporal_filters: int = 10,
        temporal_kernel: int = 33,
        dilations: Sequence[int] = (1, 2, 4, 8),
        temporal_stride: int = 2,
        spatial_filters: int = 50,
        n_spatial: int = 4,
        spatial_stride: int = 2,
        n_residual: int = 4,
        down_kernel: int = 3,
        down_stride: int = 2,
        out_filters: int = 50,
        embedding: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if temporal_kernel % 2 != 1:
            raise ValueError(f"temporal_kernel must be odd (same length for every dilation), got {temporal_kernel}")
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        self.temporal = ParallelConcat(
            PreActConv(1, temporal_filters, (1, temporal_kernel), stride=(1, temporal_stride), padding=(0, d * (temporal_kernel - 1) // 2), dilation=(1, d), dropout=dropout)
            for d in dilations
        )
        t_ch = temporal_filters * len(dilations)
        kernels = [max(1, n_chans // (i + 1)) for i in range(n_spatial)]
        rows = {(n_chans + 2 * ((k - 1) // 2) - k) // spatial_stride + 1 for k in kernels}
        if len(rows) != 1:
            raise ValueError(f"spatial kernels {kernels} with stride {spatial_stride} give different row counts {sorted(rows)} for {n_chans} channels")
        self.spatial = ParallelConcat(
            PreActConv(t_ch, spatial_filters, (k, 1), stride=(spatial_stride, 1), padding=((k - 1) // 2, 0), dropout=dropout) for k in kernels
        )
        s_ch = spatial_filters * n_spatial
        self.residual = nn.Sequential(
            *(nn.Sequential(ResidualBlock(s_ch), PreActConv(s_ch, s_ch, down_kernel, stride=down_stride, dropout=dropout)) for _ in range(n_residual))
        )
        self.final = PreActConv(s_ch, out_filters, down_kernel, stride=1, dropout=dropout)
        with torch.no_grad():
            n_flat = self.encode(torch.zeros(1, n_chans, n_times)).numel()
        self.head = nn.Sequential(nn.Linear(n_flat, embedding), nn.ReLU(), nn.Linear(embedding, n_outputs))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = self.temporal(x.unsqueeze(1))
        x = self.spatial(x)
        return self.final(self.residual(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x).flatten(1))


@register_method
class ChannelNetBaseline(ClassifyThenDraw):
    name = "channelnet"
    cost = 3.0
    description = "EEG-ChannelNet: dilated temporal convs, multi-scale spatial convs, residual blocks -> 40-way classifier; draws the predicted class prompt."
    source = "Palazzo et al., Decoding Brain Representations by Multimodal Learning of Neural Activity and Visual Features, TPAMI 2020"
    model_defaults = {
        "temporal_filters": 10, "temporal_kernel": 33, "dilations": [1, 2, 4, 8], "temporal_stride": 2,
        "spatial_filters": 50, "n_spatial": 4, "spatial_stride": 2, "n_residual": 4, "down_kernel": 3,
        "down_stride": 2, "out_filters": 50, "embedding": 1000, "dropout": 0.2,
    }  # fmt: skip

    @classmethod
    def build_model(cls, n_chans: int, n_outputs: int, n_times: int, **kwargs) -> nn.Module:
        kwargs["dilations"] = tuple(int(d) for d in kwargs["dilations"])
        return EEGChannelNet(n_chans, n_outputs, n_times, **kwargs)
