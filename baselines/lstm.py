"""LSTM encoder of Spampinato et al. (CVPR 2017), also the EEG encoder of Brain2Image.

LSTM(128 -> 128, 1 layer) over time (one step per sample, the 128 channels as features); the last
step's output -> Linear(128, 128) + ReLU (the 128-d "EEG embedding") -> Linear(128, 40).
Training as in the dataset authors' script: Adam 1e-3, batch 16, 200 epochs, best validation
accuracy kept. Brain2Image then drew the class with a VAE/GAN; here the predicted class prompt drives
the generator backbone (classify, then draw).
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.common import ClassifyThenDraw
from bench.methods.base import register_method


class LSTMEncoderNet(nn.Module):
    """``[B, n_chans, n_times] -> [B, n_outputs]``; :meth:`features` gives the ``embed``-d embedding."""

    def __init__(self, n_chans: int = 128, n_outputs: int = 40, n_times: int = 440, *, hidden: int = 128, n_layers: int = 1, embed: int = 128) -> None:
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times = n_chans, n_outputs, n_times
        self.lstm = nn.LSTM(n_chans, hidden, num_layers=n_layers, batch_first=True)
        self.embed = nn.Sequential(nn.Linear(hidden, embed), nn.ReLU())
        self.classifier = nn.Linear(embed, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))  # zero initial state
        return self.embed(out[:, -1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_method
class LSTMBaseline(ClassifyThenDraw):
    name = "lstm"
    description = "LSTM(128->128) over time, last step -> 128-d embedding -> 40-way classifier; draws the predicted class prompt."
    source = "Spampinato et al., Deep Learning Human Mind for Automated Visual Classification, CVPR 2017; Kavasidis et al., Brain2Image, ACM MM 2017"
    model_defaults = {"hidden": 128, "n_layers": 1, "embed": 128}

    @classmethod
    def build_model(cls, n_chans: int, n_outputs: int, n_times: int, **kwargs) -> nn.Module:
        return LSTMEncoderNet(n_chans, n_outputs, n_times, **kwargs)
