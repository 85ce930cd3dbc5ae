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
    readout : ``"last"`` (published: the LSTM's last step, i.e. the highest frequency bin) or
        ``"mean"``: the mean of its outputs over all bins. With ``"last"``, information in the low
        bins (where EEG lives) must survive every later step; on the synthetic world's beta-band
        code a last-step reader memorised the training set and scored chance on held-out trials,
        a mean reader did not.
    dropout : dropout on the spectrum and on the feature (published: none).
    bin_embedding : add a learned vector per bin (``[n_bins, n_chans]``) to the LSTM input, so
        that the LSTM, whose weights every bin shares, can tell the bins apart (published: none).
    input_norm : ``"none"`` (published: raw amplitudes, which span three orders of magnitude) or
        ``"log"``: ``log1p`` amplitudes, standardised per (bin, channel) with statistics of the
        training EEG (:meth:`fit_input_stats`; buffers, so they travel with the state dict).
    """

    def __init__(
        self, *, n_chans: int = 128, n_times: int = 440, n_bins: int = 220, hidden: int = 128, n_outputs: int | None = 40,
        input_norm: str = "none", readout: str = "last", dropout: float = 0.0, bin_embedding: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= n_bins <= n_times // 2:
            raise ValueError(f"n_bins must be in 1..{n_times // 2} (n_times // 2) for n_times={n_times}, got {n_bins}")
        if input_norm not in ("none", "log"):
            raise ValueError(f"input_norm must be 'none' or 'log', got {input_norm!r}")
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', got {readout!r}")
        self.readout = readout
        self.drop = nn.Dropout(dropout)
        self.n_chans, self.n_times, self.n_bins, self.input_norm = n_chans, n_times, n_bins, input_norm
        self.register_buffer("in_mean", torch.zeros(n_bins, n_chans))
        self.register_buffer("in_std", torch.ones(n_bins, n_chans))
        # A learned vector per frequency bin added to the LSTM's input: the LSTM's weights are shared by
        # every bin, and this is how it can tell one bin from another (published: none).
        self.bin_embedding = nn.Parameter(torch.zeros(n_bins, n_chans)) if bin_embedding else None
        if self.bin_embedding is not None:
            nn.init.normal_(self.bin_embedding, std=1.0)
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
        amplitude = torch.fft.rfft(x.float(), dim=-1).abs()  # [B, C, n_times // 2 + 1]
        amp = amplitude[:, :, 1 : self.n_bins + 1].transpose(1, 2)
        if self.input_norm == "log":
            amp = (torch.log1p(amp) - self.in_mean) / self.in_std
        return amp

    @torch.no_grad()
    def fit_input_stats(self, x: Tensor, batch: int = 256) -> None:
        """Set the input standardisation from training EEG ``x`` (no-op for ``input_norm="none"``)."""
        if self.input_norm == "none":
            return
        self.in_mean.zero_()
        self.in_std.fill_(1.0)
        s = torch.zeros_like(self.in_mean, dtype=torch.float64)
        s2 = torch.zeros_like(s)
        for i in range(0, len(x), batch):
            a = self.spectrum(x[i : i + batch]).double()
            s += a.sum(0)
            s2 += (a**2).sum(0)
        mean = s / len(x)
        self.in_mean.copy_(mean.float())
        self.in_std.copy_((s2 / len(x) - mean**2).clamp_min(1e-8).sqrt().float())

    def forward(self, x: Tensor) -> Tensor:
        """EEG ``[B, n_chans, n_times]`` -> feature ``[B, hidden]`` (LSTM readout, Linear + ReLU)."""
        amp = self.spectrum(x)
        if self.bin_embedding is not None:
            amp = amp + self.bin_embedding
        out, _ = self.lstm(self.drop(amp))
        h = out[:, -1] if self.readout == "last" else out.mean(1)
        return self.drop(F.relu(self.fc(h)))

    def classify(self, x: Tensor) -> Tensor:
        """Logits ``[B, n_outputs]`` of the head on the feature (the branch's own pretraining objective)."""
        if self.head is None:
            raise RuntimeError("FreqEncoder was built with n_outputs=None: no classification head")
        return self.head(self(x))
