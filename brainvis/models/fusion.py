"""BrainVis time-frequency fusion: concat(time 1024, freq 128) = 1152 -> Linear(1152, 40).

The "visual semantic classifier" of the paper. ``use_time`` / ``use_freq`` switch a branch off for the
encoder ablation (published top-1: full 0.4766, w/o time 0.2943, w/o freq 0.4397): an off branch is not
built, not computed and not concatenated, and the classifier input shrinks accordingly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from brainvis.models.freq_encoder import FreqEncoder
from brainvis.models.time_encoder import TimeEncoder

__all__ = ["BrainVisEncoder", "FusionClassifier"]


def _check_switches(use_time: bool, use_freq: bool) -> None:
    if not (use_time or use_freq):
        raise ValueError("at least one of use_time and use_freq must be True")


class FusionClassifier(nn.Module):
    """Concatenate the enabled branch features and classify: ``Linear(time_features + freq_features, n_outputs)``.

    Parameters
    ----------
    time_features, freq_features : feature widths of the branches (1024, 128).
    n_outputs : classes (40).
    use_time, use_freq : which branches are concatenated (at least one).
    """

    def __init__(
        self, *, time_features: int = 1024, freq_features: int = 128, n_outputs: int = 40, use_time: bool = True,
        use_freq: bool = True,
    ) -> None:
        super().__init__()
        _check_switches(use_time, use_freq)
        self.use_time, self.use_freq = use_time, use_freq
        self.time_features, self.freq_features = time_features, freq_features
        self.n_features = (time_features if use_time else 0) + (freq_features if use_freq else 0)
        self.fc = nn.Linear(self.n_features, n_outputs)

    def fuse(self, time_features: Tensor | None, freq_features: Tensor | None) -> Tensor:
        """``[B, n_features]``: the enabled features concatenated (time first). Pass ``None`` for an off branch."""
        parts = []
        for name, on, feats, width in (
            ("time", self.use_time, time_features, self.time_features),
            ("freq", self.use_freq, freq_features, self.freq_features),
        ):
            if on != (feats is not None):
                raise ValueError(f"use_{name}={on} but {name}_features is {'None' if feats is None else 'given'}")
            if feats is not None:
                if feats.ndim != 2 or feats.shape[1] != width:
                    raise ValueError(f"{name}_features must be [B, {width}], got {list(feats.shape)}")
                parts.append(feats)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @torch.no_grad()
    def init_from_heads(self, time_head: nn.Linear | None, freq_head: nn.Linear | None, scales: tuple[float, float] = (1.0, 1.0)) -> None:
        """Start as the sum of the enabled branches' own classifier heads, each times its ``scales``
        entry (time, freq): the logits of the fused features are then the weighted sum of the branches'
        logits (joint fine-tuning starts from their ensemble instead of a random layer that first has
        to relearn both readouts; scales of 1 / T, T a head's temperature, weigh a guessing head down)."""
        bias = torch.zeros_like(self.fc.bias)
        col = 0
        for name, on, head, width, scale in (
            ("time", self.use_time, time_head, self.time_features, scales[0]),
            ("freq", self.use_freq, freq_head, self.freq_features, scales[1]),
        ):
            if not on:
                continue
            if head is None or tuple(head.weight.shape) != (self.fc.out_features, width):
                raise ValueError(f"init_from_heads: the {name} head must be Linear({width}, {self.fc.out_features})")
            self.fc.weight[:, col : col + width] = head.weight * scale
            bias += head.bias * scale
            col += width
        self.fc.bias.copy_(bias)

    def forward(self, time_features: Tensor | None, freq_features: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(features [B, n_features], logits [B, n_outputs])``."""
        features = self.fuse(time_features, freq_features)
        return features, self.fc(features)


class BrainVisEncoder(nn.Module):
    """BrainVis EEG encoder: :class:`TimeEncoder` + :class:`FreqEncoder` + :class:`FusionClassifier`.

    ``forward``: EEG ``[B, n_chans, n_times]`` -> ``dict(features [B, 1152 or less], logits [B, n_outputs])``.

    Parameters
    ----------
    n_chans, n_times, n_outputs : EEG channels (128), samples (440), classes (40).
    d_model, n_layers, n_heads, d_ffn, dropout : time-encoder sizes (1024, 8, 16, 4096, 0.2).
    n_bins, hidden : frequency-encoder sizes (220, 128).
    use_time, use_freq : ablation switches; an off branch is not built (``time_encoder`` /
        ``freq_encoder`` is ``None``).
    time_encoder, freq_encoder : already-built (e.g. pretrained) branches used instead of building
        new ones; the size arguments of that branch are then ignored. Built branches carry no
        pretraining parts (time: ``pretraining=False``) and no branch heads (``n_outputs=None``);
        given ones are used as they are (their heads are unused here).
    """

    def __init__(
        self,
        *,
        n_chans: int = 128,
        n_times: int = 440,
        n_outputs: int = 40,
        d_model: int = 1024,
        n_layers: int = 8,
        n_heads: int = 16,
        d_ffn: int = 4096,
        dropout: float = 0.2,
        n_bins: int = 220,
        hidden: int = 128,
        use_time: bool = True,
        use_freq: bool = True,
        time_encoder: TimeEncoder | None = None,
        freq_encoder: FreqEncoder | None = None,
    ) -> None:
        super().__init__()
        _check_switches(use_time, use_freq)
        if time_encoder is not None and not use_time:
            raise ValueError("time_encoder given but use_time=False")
        if freq_encoder is not None and not use_freq:
            raise ValueError("freq_encoder given but use_freq=False")
        if use_time and time_encoder is None:
            time_encoder = TimeEncoder(
                n_chans=n_chans, n_times=n_times, d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ffn=d_ffn,
                dropout=dropout, pretraining=False, n_outputs=None,
            )
        if use_freq and freq_encoder is None:
            freq_encoder = FreqEncoder(n_chans=n_chans, n_times=n_times, n_bins=n_bins, hidden=hidden, n_outputs=None)
        self.use_time, self.use_freq = use_time, use_freq
        self.time_encoder = time_encoder
        self.freq_encoder = freq_encoder
        self.fusion = FusionClassifier(
            time_features=time_encoder.n_features if time_encoder is not None else d_model,
            freq_features=freq_encoder.n_features if freq_encoder is not None else hidden,
            n_outputs=n_outputs,
            use_time=use_time,
            use_freq=use_freq,
        )
        self.n_features, self.n_outputs = self.fusion.n_features, n_outputs

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """EEG ``[B, n_chans, n_times]`` -> ``dict(features, logits)``."""
        time_features = self.time_encoder(x) if self.time_encoder is not None else None
        freq_features = self.freq_encoder(x) if self.freq_encoder is not None else None
        features, logits = self.fusion(time_features, freq_features)
        return {"features": features, "logits": logits}
