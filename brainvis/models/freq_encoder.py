"""BrainVis frequency branch: LSTM over the amplitude spectrum (Spampinato et al.'s LSTM, on frequencies).

EEG ``[B, 128, 440]`` -> ``torch.fft.rfft`` over time (on the input's device) -> amplitudes of bins
1..220 (DC dropped; bin 220 is Nyquist for 440 samples) -> ``[B, 220, 128]`` (frequency x channels) ->
``LSTM(128 -> 128, 1 layer)`` over the frequency axis -> last step -> ``Linear(128, 128) + ReLU`` ->
128-d feature.

Parameter count with paper sizes: 153,768 = LSTM 132,096 (4 gates x (128*128 + 128*128 + 128 + 128))
+ feature Linear(128, 128) 16,512 + classifier head Linear(128, 40) 5,160. The published count
includes the 40-way head the branch is pretrained with (1000 epochs, Adam 1e-3); without it the
encoder has 148,608. ``n_outputs=None`` drops the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FreqEncoder"]


class FreqEncoder(nn.Module):
    """Frequency encoder of BrainVis. ``forward``: EEG ``[B, n_chans, n_times] -> [B, hidden]``.

    Parameters
    ----------
    n_chans, n_times : EEG channels (128) and samples (440).
    n_bins : amplitude bins 1..n_bins kept (220 = ``n_times // 2``; at most ``n_times // 2``).
    hidden : LSTM hidden size and feature width (128).
    n_outputs : classifier head ``Linear(hidden, n_outputs)`` used by :meth:`classify` (40, counted
        in the published 153,768 parameters); ``None``: no head.
    """

    def __init__(
        self, *, n_chans: int = 128, n_times: int = 440, n_bins: int = 220, hidden: int = 128, n_outputs: int | None = 40
    ) -> None:
        super().__init__()
        if not 1 <= n_bins <= n_times // 2:
            raise ValueError(f"n_bins must be in 1..{n_times // 2} (n_times // 2) for n_times={n_times}, got {n_bins}")
        self.n_chans, self.n_times, self.n_bins = n_chans, n_times, n_bins
        self.hidden = self.n_features = hidden
        self.lstm = nn.LSTM(n_chans, hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, n_outputs) if n_outputs else None

    def spectrum(self, x: Tensor) -> Tensor:
        """EEG ``[B, n_chans, n_times]`` -> amplitudes of bins 1..n_bins, ``[B, n_bins, n_chans]``."""
        if x.ndim != 3 or x.shape[1] != self.n_chans or x.shape[2] != self.n_times:
            raise ValueError(
                f"FreqEncoder expects EEG of shape [B, {self.n_chans}, {self.n_times}] (channels x time), "
                f"got {list(x.shape)}"
            )
        amplitude = torch.fft.rfft(x, dim=-1).abs()  # [B, C, n_times // 2 + 1]
        return amplitude[:, :, 1 : self.n_bins + 1].transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """EEG ``[B, n_chans, n_times]`` -> feature ``[B, hidden]`` (last LSTM step, Linear + ReLU)."""
        out, _ = self.lstm(self.spectrum(x))
        return F.relu(self.fc(out[:, -1]))

    def classify(self, x: Tensor) -> Tensor:
        """Logits ``[B, n_outputs]`` of the head on the feature (the branch's own pretraining objective)."""
        if self.head is None:
            raise RuntimeError("FreqEncoder was built with n_outputs=None: no classification head")
        return self.head(self(x))
