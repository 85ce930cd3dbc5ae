"""BrainVis time branch: a TimeMAE-style transformer trained by latent masked modeling.

Shapes (paper sizes): EEG ``[B, 128, 440]`` -> Conv1d patching over time (kernel = stride = 4)
-> 110 units of width ``d_model=1024`` + learned positions -> transformer encoder (8 layers,
16 heads, FFN 4096, dropout 0.2) -> mean over the 110 units -> ``[B, 1024]`` feature.

Pretraining (:meth:`TimeEncoder.pretrain_loss`): 75 % of the units are masked (82 masked,
28 visible of 110); the online encoder sees only the visible units; a 4-layer cross-attention
regressor turns mask tokens + positions of the masked units into predicted representations; an EMA
copy (momentum 0.99) of patcher + positions + encoder gives the targets (no gradient); a codebook of
660 codewords (linear + Gumbel-argmax) turns targets into discrete ids that a codeword head predicts.
``loss = mse_weight * MSE + ce_weight * CE(label_smoothing=0.2)`` with the official code's 4 and 2
(the paper writes an unweighted sum).

Choices where the brief and the official code differ are switches (official value in brackets):
``target_input="full"`` (EMA encodes the full sequence, targets are its masked units) [``"masked"``:
the EMA encoder sees only the masked units]; ``codeword_source="target"`` (codeword ids of the EMA
targets) [``"patch"``: ids of the online patch embeddings before positions, as in TimeMAE];
``tie_codebook=True`` (the codeword head *is* the codebook linear) [same]. The EMA copy always runs in
eval mode (no dropout in the targets) and covers patcher + positions + encoder (the official code
shares the patcher and averages only the encoder). Masks are drawn per sample (official: one mask per
batch).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrossAttentionBlock", "TimeEncoder"]


def _take_units(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, j], :]`` for ``x [B, N, D]`` and ``index [B, M]`` -> ``[B, M, D]``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _check_eeg(x: Tensor, n_chans: int, n_times: int, name: str) -> None:
    if x.ndim != 3 or x.shape[1] != n_chans or x.shape[2] != n_times:
        raise ValueError(f"{name} expects EEG of shape [B, {n_chans}, {n_times}] (channels x time), got {list(x.shape)}")


class CrossAttentionBlock(nn.Module):
    """One regressor layer: queries cross-attend to a memory, then a GELU FFN (post-norm residuals).

    Like a ``torch.nn.TransformerDecoderLayer`` without the self-attention among the queries (TimeMAE's
    regressor): each masked unit is predicted from the visible units and its own position only.
    """

    def __init__(self, *, d_model: int, n_heads: int, d_ffn: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ffn, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: Tensor, memory: Tensor) -> Tensor:
        """``queries [B, M, d]``, ``memory [B, V, d]`` -> ``[B, M, d]``."""
        attended, _ = self.attn(queries, memory, memory, need_weights=False)
        queries = self.norm1(queries + self.dropout(attended))
        return self.norm2(queries + self.dropout(self.ffn(queries)))


class ReZeroLayer(nn.Module):
    """A transformer encoder layer with ReZero residual gates (Bachlechner et al., 2020), as in the
    official BrainVis classes: ``x + a * attn(x)``, ``x + a * ffn(x)`` with ``a`` learnable and 0 at
    initialisation, so the encoder starts as the identity on its input units."""

    def __init__(self, d_model: int, n_heads: int, d_ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ffn, d_model))
        self.dropout = nn.Dropout(dropout)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.gate * self.dropout(self.attn(x, x, x, need_weights=False)[0])
        return x + self.gate * self.dropout(self.ffn(x))


class _Backbone(nn.Module):
    """Patcher (Conv1d over time) + learned positions + transformer encoder: the part the EMA copies."""

    def __init__(
        self, *, n_chans: int, n_units: int, patch_size: int, d_model: int, n_layers: int, n_heads: int, d_ffn: int,
        dropout: float, rezero: bool = False,
    ) -> None:
        super().__init__()
        self.patch = nn.Conv1d(n_chans, d_model, kernel_size=patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.zeros(1, n_units, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        if rezero:
            self.encoder = nn.Sequential(*(ReZeroLayer(d_model, n_heads, d_ffn, dropout) for _ in range(n_layers)))
        else:
            layer = nn.TransformerEncoderLayer(
                d_model, n_heads, d_ffn, dropout, activation="gelu", batch_first=True, norm_first=False
            )
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def embed(self, x: Tensor) -> Tensor:
        """EEG ``[B, C, T]`` -> unit embeddings without positions ``[B, N, d]`` (time x width)."""
        return self.patch(x).transpose(1, 2)

    def encode(self, x: Tensor) -> Tensor:
        """EEG ``[B, C, T]`` -> encoded units ``[B, N, d]`` (all units, no masking)."""
        return self.encoder(self.embed(x) + self.pos)


class TimeEncoder(nn.Module):
    """TimeMAE-style time encoder of BrainVis (latent masked modeling). ``forward``: ``[B, C, T] -> [B, d]``.

    Parameters
    ----------
    n_chans, n_times : EEG channels (128) and samples (440) of the input ``[B, n_chans, n_times]``.
    patch_size : Conv1d kernel and stride over time (4) -> ``n_times // patch_size`` units (110).
    d_model, n_layers, n_heads, d_ffn, dropout : encoder sizes (1024, 8, 16, 4096, 0.2).
    mask_ratio : fraction of units masked in pretraining; ``int(mask_ratio * n_units)`` (0.75 -> 82).
    momentum : EMA momentum of the target copy (0.99): ``ema = m * ema + (1 - m) * online``.
    n_regressor_layers : cross-attention layers of the regressor (4); FFN ``d_ffn``, same dropout.
    n_codewords : codebook size (660).
    mse_weight, ce_weight, label_smoothing : pretraining loss weights (4, 2) and CE smoothing (0.2);
        both 0 (with ``signal_weight > 0``): no latent targets, a plain masked autoencoder.
    gumbel : codeword ids as argmax of Gumbel-perturbed codebook logits (= argmax of
        ``F.gumbel_softmax``, any temperature); ``False``: plain argmax.
    target_input, codeword_source, tie_codebook : see the module docstring.
    rezero : ReZero encoder layers (residual gates at 0, the official classes' choice) instead of
        ``nn.TransformerEncoderLayer`` (post-norm).
    signal_weight : weight of an extra MAE-style target (0 = off, published): a linear decoder from
        each predicted masked unit to its raw EEG patch ``[n_chans * patch_size]``, MSE. Latent
        targets alone can collapse (the EMA targets drift to what is trivially predictable); the
        signal target anchors the representation to the input.
    n_outputs : optional classification head ``Linear(d_model, n_outputs)`` on the pooled feature
        (:meth:`classify`, for supervised fine-tuning); ``None``: no head.
    pretraining : build the EMA copy, mask token, regressor and codebook (``False`` for a
        fine-tune-only encoder: :meth:`pretrain_loss` is then unavailable).
    """

    def __init__(
        self,
        *,
        n_chans: int = 128,
        n_times: int = 440,
        patch_size: int = 4,
        d_model: int = 1024,
        n_layers: int = 8,
        n_heads: int = 16,
        d_ffn: int = 4096,
        dropout: float = 0.2,
        mask_ratio: float = 0.75,
        momentum: float = 0.99,
        n_regressor_layers: int = 4,
        n_codewords: int = 660,
        mse_weight: float = 4.0,
        ce_weight: float = 2.0,
        label_smoothing: float = 0.2,
        gumbel: bool = True,
        target_input: Literal["full", "masked"] = "full",
        codeword_source: Literal["target", "patch"] = "target",
        tie_codebook: bool = True,
        signal_weight: float = 0.0,
        rezero: bool = False,
        n_outputs: int | None = None,
        pretraining: bool = True,
    ) -> None:
        super().__init__()
        n_units = n_times // patch_size
        n_masked = int(mask_ratio * n_units)
        if patch_size < 1 or n_units < 2:
            raise ValueError(f"need at least 2 units: n_times={n_times}, patch_size={patch_size}")
        if pretraining and not 1 <= n_masked <= n_units - 1:
            raise ValueError(f"mask_ratio={mask_ratio} masks {n_masked} of {n_units} units; need 1..{n_units - 1}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if target_input not in ("full", "masked"):
            raise ValueError(f"target_input must be 'full' or 'masked', got {target_input!r}")
        if codeword_source not in ("target", "patch"):
            raise ValueError(f"codeword_source must be 'target' or 'patch', got {codeword_source!r}")
        self.n_chans, self.n_times, self.patch_size = n_chans, n_times, patch_size
        self.n_units, self.n_masked, self.n_visible = n_units, n_masked, n_units - n_masked
        self.d_model = self.n_features = d_model
        self.mask_ratio, self.momentum = mask_ratio, momentum
        self.mse_weight, self.ce_weight, self.label_smoothing = mse_weight, ce_weight, label_smoothing
        self.gumbel, self.target_input, self.codeword_source = gumbel, target_input, codeword_source
        self.tie_codebook, self.pretraining = tie_codebook, pretraining

        self.backbone = _Backbone(
            n_chans=n_chans, n_units=n_units, patch_size=patch_size, d_model=d_model, n_layers=n_layers,
            n_heads=n_heads, d_ffn=d_ffn, dropout=dropout, rezero=rezero,
        )
        self.head = nn.Linear(d_model, n_outputs) if n_outputs else None
        if pretraining:
            self.ema_backbone = copy.deepcopy(self.backbone).requires_grad_(False).eval()
            self.mask_token = nn.Parameter(torch.zeros(d_model))
            nn.init.normal_(self.mask_token, std=0.02)
            self.regressor = nn.ModuleList(
                CrossAttentionBlock(d_model=d_model, n_heads=n_heads, d_ffn=d_ffn, dropout=dropout)
                for _ in range(n_regressor_layers)
            )
            self.codebook = nn.Linear(d_model, n_codewords)
            self.codeword_head = None if tie_codebook else nn.Linear(d_model, n_codewords)
            if mse_weight <= 0 and ce_weight <= 0 and signal_weight <= 0:
                raise ValueError("pretraining needs a target: mse_weight, ce_weight or signal_weight > 0")
            self.signal_weight = float(signal_weight)
            self.signal_decoder = nn.Linear(d_model, n_chans * patch_size) if signal_weight > 0 else None

    # ---------------------------------------------------------------------------------------------
    # Features
    # ---------------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """EEG ``[B, n_chans, n_times]`` -> mean over all units of the encoder output ``[B, d_model]``."""
        _check_eeg(x, self.n_chans, self.n_times, type(self).__name__)
        return self.backbone.encode(x).mean(dim=1)

    def classify(self, x: Tensor) -> Tensor:
        """Logits ``[B, n_outputs]`` of the optional head on the pooled feature."""
        if self.head is None:
            raise RuntimeError("TimeEncoder was built with n_outputs=None: no classification head")
        return self.head(self(x))

    # ---------------------------------------------------------------------------------------------
    # Pretraining
    # ---------------------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> TimeEncoder:
        """As ``nn.Module.train``, but the EMA copy stays in eval mode (deterministic targets)."""
        super().train(mode)
        if self.pretraining:
            self.ema_backbone.eval()
        return self

    def random_masking(
        self, batch_size: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-sample random split of the units: ``(visible [B, n_visible], masked [B, n_masked])`` indices.

        Drawn on ``generator``'s device (the global RNG when ``None``), returned on ``device``.
        """
        rand_device = generator.device if generator is not None else device
        noise = torch.rand(batch_size, self.n_units, generator=generator, device=rand_device)
        order = noise.argsort(dim=1).to(device)
        visible, masked = order[:, : self.n_visible], order[:, self.n_visible :]
        return visible.sort(dim=1).values, masked.sort(dim=1).values

    def codeword_ids(self, reps: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Discrete codeword ids ``[...]`` of representations ``[..., d]``: argmax of (Gumbel-perturbed) logits."""
        self._require_pretraining()
        logits = self.codebook(reps)
        if self.gumbel:
            rand_device = generator.device if generator is not None else logits.device
            u = torch.rand(logits.shape, generator=generator, device=rand_device, dtype=logits.dtype)
            u = u.to(logits.device).clamp_(torch.finfo(logits.dtype).tiny, 1.0 - torch.finfo(logits.dtype).eps)
            logits = logits - torch.log(-torch.log(u))
        return logits.argmax(dim=-1)

    def pretrain_loss(self, x: Tensor, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Masked modeling loss on EEG ``[B, n_chans, n_times]``: ``dict(loss, mse, ce[, signal])`` (scalars);
        with both latent weights 0, the raw-signal target alone: ``dict(loss, signal)``.

        ``generator`` seeds the mask and the Gumbel noise (global RNG when ``None``).
        """
        self._require_pretraining()
        _check_eeg(x, self.n_chans, self.n_times, type(self).__name__)
        batch = x.shape[0]
        visible_idx, masked_idx = self.random_masking(batch, generator=generator, device=x.device)

        units = self.backbone.embed(x)  # [B, N, d]
        pos = self.backbone.pos.expand(batch, -1, -1)
        rep_visible = self.backbone.encoder(_take_units(units + pos, visible_idx))  # [B, V, d]
        queries = self.mask_token + _take_units(pos, masked_idx)  # [B, M, d]
        predicted = queries
        for block in self.regressor:
            predicted = block(predicted, rep_visible)

        loss = predicted.new_zeros(())
        out: dict[str, Tensor] = {}
        if self.mse_weight > 0 or self.ce_weight > 0:  # the latent targets (off: a plain masked autoencoder)
            with torch.no_grad():
                ema = self.ema_backbone
                if self.target_input == "full":
                    target = _take_units(ema.encode(x), masked_idx)
                else:
                    ema_units = ema.embed(x) + ema.pos
                    target = ema.encoder(_take_units(ema_units, masked_idx))
                source = target if self.codeword_source == "target" else _take_units(units, masked_idx)
                ids = self.codeword_ids(source, generator=generator)  # [B, M]

            head = self.codebook if self.codeword_head is None else self.codeword_head
            logits = head(predicted)
            mse = F.mse_loss(predicted, target)
            ce = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), ids.reshape(-1), label_smoothing=self.label_smoothing
            )
            loss = self.mse_weight * mse + self.ce_weight * ce
            out = {"mse": mse.detach(), "ce": ce.detach()}
        if self.signal_decoder is not None:
            n, p = self.n_units, self.patch_size
            patches = x[:, :, : n * p].reshape(batch, self.n_chans, n, p).permute(0, 2, 1, 3).reshape(batch, n, self.n_chans * p)
            signal = F.mse_loss(self.signal_decoder(predicted), _take_units(patches, masked_idx))
            loss = loss + self.signal_weight * signal
            out["signal"] = signal.detach()
        return {"loss": loss, **out}

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step of the target copy: ``ema = momentum * ema + (1 - momentum) * online``."""
        self._require_pretraining()
        for ema_p, p in zip(self.ema_backbone.parameters(), self.backbone.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - self.momentum)

    @torch.no_grad()
    def reset_ema(self) -> None:
        """Copy the online weights into the EMA copy (e.g. after loading online weights)."""
        self._require_pretraining()
        for ema_p, p in zip(self.ema_backbone.parameters(), self.backbone.parameters(), strict=True):
            ema_p.copy_(p.detach())

    def _require_pretraining(self) -> None:
        if not self.pretraining:
            raise RuntimeError("TimeEncoder was built with pretraining=False: no EMA copy, regressor or codebook")
