"""BrainVis alignment network and loss: EEG features + class logits -> a CLIP text-token sequence.

Network (paper sizes; block structure of the official code): input ``concat(features 1152, logits
40) = 1192``; five tanh layers whose widths alternate ``hidden=4096`` / ``bottleneck=1024``, each
layer from the third on adding the output of the same-width layer two back before its tanh::

    h0 = tanh(Linear(1192, 4096)(z))
    h1 = tanh(Linear(4096, 1024)(h0))
    h2 = tanh(Linear(1024, 4096)(h1) + h0)
    h3 = tanh(Linear(4096, 1024)(h2) + h1)
    h4 = tanh(Linear(1024, 4096)(h3) + h2)
    out = Linear(4096, 77 * 768)(h4) -> [B, 77, 768]

i.e. the full ``last_hidden_state`` of SD 1.5's CLIP ViT-L/14 text encoder (about 264 M parameters,
242 M of them in the output layer).

Loss (:func:`alignment_loss`): ``(1 - w) * (1 - cos(c_label, pred)) + w * (1 - cos(c_cap, pred))``
(``+ (1 - w) * MSE(pred, c_label) + w * MSE(pred, c_cap)`` when ``use_mse``), cosine over each
sample's flattened ``[T * W]`` token sequence, averaged over the batch. At ``w = 0.5`` this is half of
the paper's Eq. 4, ``L = 2 - cos(c_cap, c) - cos(c_label, c)`` (the official code adds both MSEs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AlignmentNet", "alignment_loss"]


class AlignmentNet(nn.Module):
    """Residual tanh MLP mapping ``concat(features, logits)`` to ``[B, n_tokens, width]``.

    Parameters
    ----------
    in_features : ``features + logits`` width (1152 + 40 = 1192).
    hidden, bottleneck : alternating layer widths (4096, 1024).
    n_layers : tanh layers (5; widths hidden, bottleneck, hidden, ...; layer ``i >= 2`` adds layer
        ``i - 2``'s output before its tanh).
    n_tokens, width : output token sequence (77, 768).
    """

    def __init__(
        self, *, in_features: int = 1192, hidden: int = 4096, bottleneck: int = 1024, n_layers: int = 5,
        n_tokens: int = 77, width: int = 768,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.in_features, self.n_tokens, self.width = in_features, n_tokens, width
        widths = [hidden if i % 2 == 0 else bottleneck for i in range(n_layers)]
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip([in_features, *widths], widths))
        self.out = nn.Linear(widths[-1], n_tokens * width)
        # Input standardisation (identity until fit_input_stats): features and logits live on very
        # different scales (logits of a confident classifier reach tens), and the first tanh saturates.
        self.register_buffer("in_mean", torch.zeros(in_features))
        self.register_buffer("in_std", torch.ones(in_features))

    @torch.no_grad()
    def fit_input_stats(self, features: Tensor, logits: Tensor | None = None) -> None:
        """Standardise each input dimension with the mean and std of these (training) inputs."""
        z = features if logits is None else torch.cat([features, logits], dim=1)
        self.in_mean.copy_(z.mean(0))
        self.in_std.copy_(z.std(0).clamp_min(1e-6))

    def forward(self, features: Tensor, logits: Tensor | None = None) -> Tensor:
        """``features [B, F]`` and ``logits [B, K]`` (concatenated; or one pre-concatenated ``[B, F + K]``)
        -> ``[B, n_tokens, width]``."""
        z = features if logits is None else torch.cat([features, logits], dim=1)
        if z.ndim != 2 or z.shape[1] != self.in_features:
            raise ValueError(f"AlignmentNet expects [B, {self.in_features}] inputs in all, got {list(z.shape)}")
        outputs: list[Tensor] = []
        h = (z - self.in_mean) / self.in_std
        for i, layer in enumerate(self.layers):
            pre = layer(h)
            if i >= 2:
                pre = pre + outputs[i - 2]
            h = torch.tanh(pre)
            outputs.append(h)
        return self.out(h).view(-1, self.n_tokens, self.width)


def alignment_loss(
    pred: Tensor, c_label: Tensor, c_cap: Tensor, w: float, use_mse: bool = False, center: Tensor | None = None
) -> dict[str, Tensor]:
    """Semantic-interpolation alignment loss with an explicit caption weight ``w`` in [0, 1].

    ``pred``, ``c_label`` (CLIP text encoding of the class prompt) and ``c_cap`` (of the image's
    caption) are ``[B, T, W]``. Returns ``dict(loss, cos_label, cos_cap, mse_label, mse_cap)``:
    ``loss = (1 - w) * (1 - cos_label) + w * (1 - cos_cap)`` [``+ (1 - w) * mse_label + w * mse_cap`` if
    ``use_mse``], where ``cos_*`` is the cosine between flattened ``[T * W]`` sequences averaged over the
    batch and ``mse_*`` the element-wise mean squared error (the diagnostics are detached).

    ``center`` (``[T, W]``, optional): the cosines are taken between sequences minus ``center`` (e.g.
    the mean target sequence). Every prompt's sequence shares its start and padding tokens, so raw
    cosines between *different* prompts are already high (about 0.8-0.9 for the mini text encoder)
    and a prediction that is no prompt in particular scores well; centred cosines measure the part that
    tells prompts apart (published: raw).
    """
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0.0 <= w <= 1.0:
        raise ValueError(f"alignment weight w must be a number in [0, 1] (0 = label only, 1 = caption only), got {w!r}")
    if pred.ndim != 3 or c_label.shape != pred.shape or c_cap.shape != pred.shape:
        raise ValueError(
            f"pred, c_label and c_cap must share one [B, T, W] shape, got {list(pred.shape)}, "
            f"{list(c_label.shape)}, {list(c_cap.shape)}"
        )
    if center is not None and tuple(center.shape) != tuple(pred.shape[1:]):
        raise ValueError(f"center must be [T, W] = {list(pred.shape[1:])}, got {list(center.shape)}")
    c0 = 0.0 if center is None else center
    flat = (pred - c0).flatten(1)
    cos_label = F.cosine_similarity(flat, (c_label - c0).flatten(1), dim=1).mean()
    cos_cap = F.cosine_similarity(flat, (c_cap - c0).flatten(1), dim=1).mean()
    mse_label = F.mse_loss(pred, c_label)
    mse_cap = F.mse_loss(pred, c_cap)
    loss = (1.0 - w) * (1.0 - cos_label) + w * (1.0 - cos_cap)
    if use_mse:
        loss = loss + (1.0 - w) * mse_label + w * mse_cap
    return {
        "loss": loss,
        "cos_label": cos_label.detach(),
        "cos_cap": cos_cap.detach(),
        "mse_label": mse_label.detach(),
        "mse_cap": mse_cap.detach(),
    }
