"""DreamDiffusion-style baseline (Bai et al., ECCV 2024; arXiv 2306.16934), at harness scale.

Pipeline, as published (official code: bbaaii/DreamDiffusion):

1. Masked signal modeling: an MAE over time patches of the EEG (Conv1d patching, kernel = stride = 4,
   1024-d units, 24 pre-norm transformer blocks, 16 heads, fixed sin-cos positions; a 512-d, 8-block
   decoder reconstructs the raw signal of the masked patches; MSE on masked patches only).
2. Conditioning: encoder latent ``[B, L, d]`` -> ``channel_mapper`` (Conv1d L -> L/2 -> 77 over the unit
   axis) -> ``dim_mapper`` (Linear d -> width) = a ``[B, 77, width]`` sequence that replaces the text
   conditioning of Stable Diffusion 1.5.
3. Fine-tuning of encoder + mappers (the official code also tunes the UNet's cross-attention) with the
   diffusion loss plus ``1 - cos(mapping(latent), CLIP image embedding of the seen image)``, where
   ``mapping`` is a learned token pooling (Conv1d L -> 1) and Linear(d -> CLIP dim).
4. Generation: single-stage txt2img from the EEG conditioning (PLMS, no classifier-free guidance).

Deviations here (recorded in the profiles as well):

- **No diffusion loss.** Back-propagating through the generator's UNet is not affordable on CPU and
  the generator stays frozen (no cross-attention tuning). In its place the conditioning sequence is
  regressed onto the generator-side text encoding of the seen image's *caption*
  (``1 - cos`` over the flattened token sequence, ``+ MSE`` when
  ``use_mse``), i.e. towards a conditioning that the frozen generator is known to render as that
  image. The CLIP-image term is kept as published. ``loss = token_weight * token_loss +
  clip_weight * clip_loss``.
- Pretraining data (``pretrain_data``): DreamDiffusion pretrained on ~120k unlabelled MOABB trials plus
  the EEG-CVPR40 data. ``"all_subjects"`` (default) is the nearest the harness offers: every subject's
  unlabelled training and validation EEG (never a test image's trials), the pool BrainVis pretrains
  on, computed once and shared by every trial with the same configuration and seed;
  ``"subject_unlabelled"``: the trial's subject's unlabelled training and validation EEG, the same at
  every training fraction (the fraction limits labels), computed once per subject and shared by its
  fractions; ``"subject"``: the trial's own training EEG at its fraction. The epoch with the lowest
  validation MAE loss (fixed masks) is kept.
- No class token (the published generation encoder does not use one either); mean-pool features.
- Fine-tuning keeps the epoch with the lowest validation loss of the same objective (the official
  code validated on test items).
- ``Predictions.logits``: DreamDiffusion has no classifier. A linear probe (Linear on the standardised,
  mean-pooled encoder latent, encoder frozen) is trained with CE after fine-tuning and selected on
  validation accuracy, so that classification metrics exist; it does not influence the images.

Without backbones (``RunEnv.backbones = "none"``) only pretraining and the probe run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from baselines.common import batched, n_params, resolve_config
from bench.methods.signal import Decimate
from bench.methods.base import FitContext, Method, Predictions, StageClock, register_method
from bench.methods.training import batches as _batches
from bench.methods.training import improves, stage_report, state_digest
from bench.data.eegcvpr40 import TrialSet, image_path

DEFAULTS: dict[str, Any] = {
    # MAE (masked signal modeling); official Config_MBM_EEG / Config_Generative_Model
    "patch_size": 4,
    "d_model": 1024,
    "n_layers": 24,
    "n_heads": 16,
    "mlp_ratio": 1.0,
    "dec_dim": 512,
    "dec_layers": 8,
    "dec_heads": 16,
    "mask_ratio": 0.5,
    "dropout": 0.0,
    "pretrain_epochs": 500,
    "pretrain_lr": 2.5e-4,
    "pretrain_batch": 128,
    "pretrain_wd": 0.05,
    "pretrain_min_delta": 0.0,  # harness addition: early stopping counts a validation loss as better only below best * (1 - min_delta)
    "pretrain_data": "all_subjects",  # or "subject_unlabelled", "subject" (module docstring)
    "clip_grad": 0.8,
    # fine-tuning of encoder + mappers
    "finetune_epochs": 500,
    "finetune_lr": 5.3e-5,
    "finetune_batch": 16,
    "finetune_wd": 0.05,
    "clip_weight": 1.0,
    "token_weight": 1.0,
    "use_mse": True,
    # linear probe (harness addition, for classification metrics)
    "probe_epochs": 100,
    "probe_lr": 1e-3,
    "probe_batch": 128,
    "probe_wd": 0.0,
    # harness addition: early stopping of every stage (0: off, the published schedule)
    "patience": 0,
    # harness addition: mean of k consecutive samples before the encoder (mini profiles; 1 = off, published)
    "decimate": 1,
}

PRETRAIN_VERSION = "1"  # bump when the shared pretraining's output changes
# What the shared pretraining depends on (besides data, seed and starting weights).
PRETRAIN_KEYS = ("patch_size", "d_model", "n_layers", "n_heads", "mlp_ratio", "dec_dim", "dec_layers", "dec_heads", "mask_ratio", "dropout",
                 "pretrain_epochs", "pretrain_lr", "pretrain_batch", "pretrain_wd", "pretrain_min_delta", "clip_grad", "patience", "decimate")  # fmt: skip


def sincos_positions(n: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sin-cos position embedding ``[n, dim]`` (MAE's)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / max(1, dim // 2))
    ang = pos * omega[None]
    out = torch.zeros(n, dim, dtype=torch.float64)
    out[:, : dim // 2] = torch.sin(ang)
    out[:, dim // 2 : 2 * (dim // 2)] = torch.cos(ang)
    return out.float()


def _blocks(dim: int, heads: int, mlp_ratio: float, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, max(1, int(round(mlp_ratio * dim))), dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class EEGMAE(nn.Module):
    """Masked autoencoder over time patches of ``[B, n_chans, n_times]`` EEG.

    :meth:`encode` (all units, no masking) -> ``[B, n_units, d_model]``; :meth:`mae_loss` masks
    ``int(mask_ratio * n_units)`` random units per trial, encodes the visible ones, and regresses the
    raw signal of the masked patches (MSE averaged over masked patches).
    """

    def __init__(
        self, n_chans: int = 128, n_times: int = 440, *, patch_size: int = 4, d_model: int = 1024, n_layers: int = 24, n_heads: int = 16,
        mlp_ratio: float = 1.0, dec_dim: int = 512, dec_layers: int = 8, dec_heads: int = 16, mask_ratio: float = 0.5, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.n_chans, self.n_times, self.patch_size = n_chans, n_times, patch_size
        self.n_units = n_times // patch_size
        self.d_model, self.mask_ratio = d_model, mask_ratio
        if self.n_units < 2 or not 1 <= int(mask_ratio * self.n_units) < self.n_units:
            raise ValueError(f"mask_ratio={mask_ratio} with {self.n_units} units leaves nothing to mask or nothing visible")
        self.patch = nn.Conv1d(n_chans, d_model, patch_size, stride=patch_size)
        self.register_buffer("pos", sincos_positions(self.n_units, d_model)[None], persistent=False)
        self.blocks = _blocks(d_model, n_heads, mlp_ratio, n_layers, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dec_embed = nn.Linear(d_model, dec_dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dec_dim) * 0.02)
        self.register_buffer("dec_pos", sincos_positions(self.n_units, dec_dim)[None], persistent=False)
        self.dec_blocks = _blocks(dec_dim, dec_heads, mlp_ratio, dec_layers, dropout)
        self.dec_norm = nn.LayerNorm(dec_dim)
        self.dec_pred = nn.Linear(dec_dim, n_chans * patch_size)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch(x).transpose(1, 2) + self.pos

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.tokens(x)))

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Raw targets ``[B, n_units, n_chans * patch_size]``."""
        B, C = x.shape[:2]
        L, p = self.n_units, self.patch_size
        return x[..., : L * p].reshape(B, C, L, p).permute(0, 2, 1, 3).reshape(B, L, C * p)

    def mae_loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        tok = self.tokens(x)
        B, L, D = tok.shape
        n_keep = L - int(self.mask_ratio * L)
        order = torch.argsort(torch.rand(B, L, generator=generator), dim=1)
        restore = torch.argsort(order, dim=1)
        keep = order[:, :n_keep]
        enc = self.norm(self.blocks(torch.gather(tok, 1, keep[..., None].expand(-1, -1, D))))
        dec = self.dec_embed(enc)
        full = torch.cat([dec, self.mask_token.expand(B, L - n_keep, -1)], dim=1)
        full = torch.gather(full, 1, restore[..., None].expand(-1, -1, full.shape[-1])) + self.dec_pos
        pred = self.dec_pred(self.dec_norm(self.dec_blocks(full)))
        mask = (restore >= n_keep).float()  # 1 = masked
        err = ((pred - self.patches(x)) ** 2).mean(-1)
        return (err * mask).sum() / mask.sum()


class ConditioningHead(nn.Module):
    """Encoder latent ``[B, L, d]`` -> conditioning ``[B, n_tokens, width]`` and CLIP-image embedding ``[B, clip_dim]``."""

    def __init__(self, n_units: int, d_model: int, n_tokens: int, width: int, clip_dim: int) -> None:
        super().__init__()
        mid = max(1, n_units // 2)
        self.channel_mapper = nn.Sequential(nn.Conv1d(n_units, mid, 1), nn.Conv1d(mid, n_tokens, 1))
        self.dim_mapper = nn.Linear(d_model, width)
        self.clip_pool = nn.Conv1d(n_units, 1, 1)
        self.clip_fc = nn.Linear(d_model, clip_dim)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cond = self.dim_mapper(self.channel_mapper(latent))
        clip = self.clip_fc(self.clip_pool(latent).squeeze(1))
        return cond, clip


def load_images(root, names: list[str]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(image_path(root, n)).convert("RGB")) for n in names])


@register_method
class DreamDiffusion(Method):
    name = "dreamdiffusion"
    cost = 2.0
    description = "MAE-pretrained EEG transformer -> 77-token conditioning aligned to CLIP image + caption embeddings; single-stage txt2img."
    source = "Bai et al., DreamDiffusion: Generating High-Quality Images from Brain EEG Signals, ECCV 2024 (arXiv 2306.16934)"
    uses_w = False
    needs_generator = True

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return dict(DEFAULTS)

    @classmethod
    def config(cls, section: dict, options: dict | None = None) -> dict[str, Any]:
        return resolve_config(DEFAULTS, section, options, cls.name)

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        cfg = self.config(ctx.profile, dict(ctx.spec.options))
        self.cfg, self.ctx = cfg, ctx
        self.prep = Decimate(int(cfg["decimate"]))
        train, val = (dataclasses.replace(d, eeg=self.prep(d.eeg)) for d in (train, val))
        n_chans, n_times = train.eeg.shape[1:]
        report: dict[str, Any] = {"config": dict(cfg)}
        clock = StageClock()
        report["stage_seconds"] = clock.seconds
        lap = clock.lap

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.spec.seed)
            g = torch.Generator().manual_seed(ctx.spec.seed)
            self.mae = EEGMAE(
                n_chans, n_times, patch_size=cfg["patch_size"], d_model=cfg["d_model"], n_layers=cfg["n_layers"], n_heads=cfg["n_heads"],
                mlp_ratio=cfg["mlp_ratio"], dec_dim=cfg["dec_dim"], dec_layers=cfg["dec_layers"], dec_heads=cfg["dec_heads"],
                mask_ratio=cfg["mask_ratio"], dropout=cfg["dropout"],
            )  # fmt: skip
            report["n_params_mae"] = n_params(self.mae)
            ctx.log(f"dreamdiffusion: masked signal modeling ({cfg['pretrain_data']})")
            report["pretrain"] = self._pretrain_stage(train, val)
            lap("pretrain")
            self.head = None
            if ctx.backbones is not None:
                ctx.log("dreamdiffusion: fine-tuning (CLIP image + caption-token alignment)")
                report["finetune"] = self._finetune(train, val, g)
                lap("finetune")
            ctx.log("dreamdiffusion: linear probe")
            report["probe"] = self._probe(train, val, g)
            lap("probe")
        return report

    # ---------------------------------------------------------------------------------------------

    def _pretrain_stage(self, train: TrialSet, val: TrialSet) -> dict:
        """Masked signal modeling on the configured data (``pretrain_data``); shared across trials when pooled.

        The stage draws from its own random streams (batches, masks; global RNG forked), so a trial
        gets the same result whether it computed the shared pretraining or loaded it."""
        cfg, ctx = self.cfg, self.ctx
        seed = int(np.random.SeedSequence([int(ctx.spec.seed), 0xDD, 1]).generate_state(1)[0])

        def run(x_train: torch.Tensor, x_val: torch.Tensor, passes: int) -> dict:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed % (2**31))
                return self._pretrain(x_train, x_val, torch.Generator().manual_seed(seed), passes)

        pool = ctx.pretraining_pool(cfg["pretrain_data"])
        if pool is None:
            return {**run(train.eeg, val.eeg, ctx.passes), "data": "subject", "n_train": len(train), "n_val": len(val)}
        parts = {
            "what": "dreamdiffusion.pretrain", "version": PRETRAIN_VERSION, "pool": pool.describe(), "seed": int(ctx.spec.seed),
            "n_chans": int(self.mae.n_chans), "n_times": int(train.eeg.shape[2]), "config": {k: cfg[k] for k in PRETRAIN_KEYS},
            "init": state_digest(self.mae),
        }  # fmt: skip

        def compute() -> tuple[dict, dict]:
            x_train, x_val = (self.prep.in_batches(x) for x in pool.load())
            return self.mae.state_dict(), run(x_train, x_val, 1)

        state, rep, here = ctx.shared.get(parts, compute)
        if not here:
            self.mae.load_state_dict(state)
        return {**rep, "data": cfg["pretrain_data"], "n_train": pool.n_train, "n_val": pool.n_val, "shared": "computed" if here else "loaded"}

    def _pretrain(self, x_train: torch.Tensor, x_val: torch.Tensor, g: torch.Generator, passes: int) -> dict:
        """MAE epochs on EEG ``[N, C, T]`` (``passes`` passes per epoch); keeps the epoch with the lowest
        validation loss (fixed masks) that beats the best so far by ``pretrain_min_delta``."""
        cfg, mae = self.cfg, self.mae
        opt = torch.optim.AdamW(mae.parameters(), lr=cfg["pretrain_lr"], weight_decay=cfg["pretrain_wd"])
        best = (math.inf, 0, copy.deepcopy(mae.state_dict()))
        ran = 0
        curve: list[float] = []
        for epoch in range(cfg["pretrain_epochs"]):
            mae.train()
            for idx in _batches(len(x_train), cfg["pretrain_batch"], g, passes=passes):
                loss = mae.mae_loss(x_train[idx].float(), generator=g)
                opt.zero_grad()
                loss.backward()
                if cfg["clip_grad"]:
                    nn.utils.clip_grad_norm_(mae.parameters(), cfg["clip_grad"])
                opt.step()
            mae.eval()
            with torch.no_grad():
                vg = torch.Generator().manual_seed(12345)  # the same masks every epoch
                chunks = [x_val[i : i + 256] for i in range(0, len(x_val), 256)]
                vloss = sum(float(mae.mae_loss(c.float(), generator=vg)) * len(c) for c in chunks) / len(x_val)
            ran = epoch + 1
            curve.append(round(vloss, 5))
            if improves(vloss, best[0], cfg["pretrain_min_delta"]):  # a smaller relative improvement does not count
                best = (vloss, epoch + 1, copy.deepcopy(mae.state_dict()))
            elif cfg["patience"] and epoch + 1 - best[1] >= cfg["patience"]:
                break
        mae.load_state_dict(best[2])
        mae.eval()
        return {**stage_report(best[0], best[1], ran, cfg["pretrain_epochs"], key="val_loss"), "val_loss_curve": curve}

    def _targets(self, data: TrialSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Caption token sequences ``[N, T, W]`` and CLIP image embeddings ``[N, D]`` of a split's trials."""
        bb = self.ctx.backbones
        names = sorted(set(data.image_names))
        missing = [n for n in names if n not in self.ctx.captions]
        if missing:
            raise ValueError(f"dreamdiffusion: no caption for {len(missing)} training/validation image(s), e.g. {missing[:3]}")
        tok = torch.cat([bb.text_encoder.encode_tokens([self.ctx.captions[n] for n in names[i : i + 64]]) for i in range(0, len(names), 64)])
        img = torch.cat([bb.image_encoder.encode(load_images(self.ctx.image_root, names[i : i + 64])) for i in range(0, len(names), 64)])
        pos = [{n: i for i, n in enumerate(names)}[n] for n in data.image_names]
        return tok[pos].detach().cpu().float(), img[pos].detach().cpu().float()

    def _losses(self, x: torch.Tensor, tok: torch.Tensor, img: torch.Tensor) -> dict[str, torch.Tensor]:
        cond, clip = self.head(self.mae.encode(x))
        clip_loss = 1.0 - F.cosine_similarity(clip, img, dim=-1).mean()
        # 1 - cos between flattened [T * W] token sequences (+ element-wise MSE)
        token_loss = 1.0 - F.cosine_similarity(cond.flatten(1), tok.flatten(1), dim=1).mean()
        if self.cfg["use_mse"]:
            token_loss = token_loss + F.mse_loss(cond, tok)
        loss = self.cfg["clip_weight"] * clip_loss + self.cfg["token_weight"] * token_loss
        return {"loss": loss, "clip": clip_loss.detach(), "token": token_loss.detach()}

    def _finetune(self, train: TrialSet, val: TrialSet, g: torch.Generator) -> dict:
        cfg, bb = self.cfg, self.ctx.backbones
        t_tok, t_img = self._targets(train)
        v_tok, v_img = self._targets(val)
        text = bb.text_encoder
        self.head = ConditioningHead(self.mae.n_units, self.mae.d_model, text.n_tokens, text.width, t_img.shape[1])
        params = [p for n, p in self.mae.named_parameters() if not n.startswith(("dec_", "mask_token"))] + list(self.head.parameters())
        opt = torch.optim.AdamW(params, lr=cfg["finetune_lr"], weight_decay=cfg["finetune_wd"])
        best = (math.inf, 0, None, {})
        ran = 0
        for epoch in range(cfg["finetune_epochs"]):
            self.mae.train()
            self.head.train()
            for idx in _batches(len(train), cfg["finetune_batch"], g, passes=self.ctx.passes):
                loss = self._losses(train.eeg[idx], t_tok[idx], t_img[idx])["loss"]
                opt.zero_grad()
                loss.backward()
                if cfg["clip_grad"]:
                    nn.utils.clip_grad_norm_(params, cfg["clip_grad"])
                opt.step()
            self.mae.eval()
            self.head.eval()
            with torch.no_grad():
                v = self._losses(val.eeg, v_tok, v_img)
            ran = epoch + 1
            if float(v["loss"]) < best[0]:
                parts = {"val_clip_loss": float(v["clip"]), "val_token_loss": float(v["token"])}
                best = (float(v["loss"]), epoch + 1, (copy.deepcopy(self.mae.state_dict()), copy.deepcopy(self.head.state_dict())), parts)
            elif cfg["patience"] and epoch + 1 - best[1] >= cfg["patience"]:
                break
        if best[2] is not None:
            self.mae.load_state_dict(best[2][0])
            self.head.load_state_dict(best[2][1])
        self.mae.eval()
        self.head.eval()
        return {**stage_report(best[0], best[1], ran, cfg["finetune_epochs"], key="val_loss"), **best[3]}

    @torch.no_grad()
    def features(self, eeg: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder latent ``[N, d_model]``."""
        self.mae.eval()
        return batched(lambda x: self.mae.encode(x).mean(1), eeg)

    def _probe(self, train: TrialSet, val: TrialSet, g: torch.Generator) -> dict:
        from bench.methods.training import train_classifier

        cfg = self.cfg
        f_train = self.features(train.eeg)
        self.f_mean, self.f_std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
        norm = lambda f: (f - self.f_mean) / self.f_std  # noqa: E731
        self.probe = nn.Linear(f_train.shape[1], len(self.ctx.class_prompts))
        return train_classifier(
            self.probe, self.probe, dataclasses.replace(train, eeg=norm(f_train)), dataclasses.replace(val, eeg=norm(self.features(val.eeg))),
            epochs=int(cfg["probe_epochs"]), lr=float(cfg["probe_lr"]), batch=int(cfg["probe_batch"]), wd=float(cfg["probe_wd"]), g=g,
            patience=int(cfg["patience"]) or None, passes=self.ctx.passes,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, eeg: torch.Tensor) -> Predictions:
        self.mae.eval()
        latent = batched(self.mae.encode, self.prep(eeg))
        logits = self.probe((latent.mean(1) - self.f_mean) / self.f_std)
        cond = None
        if self.head is not None:
            self.head.eval()
            cond = self.head(latent)[0]
        return Predictions(logits=logits, cond=cond)

    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        from bench.methods.generation import settings, txt2img_samples

        if preds.cond is None:
            raise ValueError("dreamdiffusion: no conditioning (fit ran without backbones, so the alignment stage was skipped)")
        s = settings(ctx)
        return {"final": txt2img_samples(preds.cond, ctx, seed=seed, steps=s["stage1_steps"], guidance=s["stage1_guidance"])}
