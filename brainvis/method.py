"""BrainVis as a benchmark method: the training stages, selection on validation, and generation.

Stages (each keeps its best *validation* epoch and stops early after ``patience`` epochs without
improvement; the test split never reaches here):

1. frequency encoder: FFT amplitudes + LSTM, trained with its own 40-way head;
2. time encoder pretraining: latent masked modeling on unlabelled EEG. ``pretrain_data =
   "all_subjects"`` (the paper's protocol, the default): every subject's training trials (no
   labels; the epoch is chosen on every subject's validation trials, or fixed: ``pretrain_select``), never a test image's trials,
   computed once per dataset and seed and shared by all trials through the harness's cache;
   ``"subject_unlabelled"``: the trial's subject's unlabelled training and validation trials, the
   same at every training fraction (shared by the subject's trials); ``"subject"``: the trial's own
   training trials at its fraction;
3. time encoder supervised fine-tuning with a 40-way head;
4. joint fine-tuning of both branches through the fusion classifier;
5. alignment: the alignment network maps ``concat(features, logits)`` to the text encoder's token
   sequence, with the explicit interpolation weight ``w`` between the class-prompt embedding
   (1 - w) and the image-caption embedding (w); the encoder keeps training (with a CE term).

Ablation switches (trial options): ``use_time``, ``use_freq``, ``pretrain``, ``finetune``,
``stage1``, ``stage2``. Without fine-tuning, stages 3-4 train the fusion classifier only, on frozen
(pretrained) encoder features.

Each stage and each module's initialisation draws from its own random stream (seed, stage), in a
forked global RNG (:func:`stage_rng`), so an ablation trains every part it keeps exactly as the
full model does (common random numbers: a paired comparison measures the ablated part). The shared
pretraining is keyed by the encoder's starting weights too, so a trial's result is the same whether
its pretraining was computed in it or loaded from the cache, whichever trial ran first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from bench.methods.base import PRETRAIN_DATA, FitContext, Method, Predictions, StageClock, register_method
from bench.methods.signal import Decimate
from bench.methods.training import accuracy as _accuracy
from bench.methods.training import batches as _batches
from bench.methods.training import eval_logits, fit_temperature, improves, stage_report, state_digest, train_classifier
from bench.data.eegcvpr40 import TrialSet
from brainvis.models import AlignmentNet, BrainVisEncoder, FreqEncoder, TimeEncoder, alignment_loss

ABLATIONS = ("use_time", "use_freq", "pretrain", "finetune", "stage1", "stage2")
FUSION_INIT = ("random", "heads", "calibrated")
PRETRAIN_SELECT = ("val_loss", "last")
ALIGN_SELECT = ("loss", "alignment")
PRETRAIN_VERSION = "1"  # bump when the shared pretraining's output changes
BRANCH_VERSION = "1"  # bump when the shared all-subject branch training's output changes
BRANCH_DATA = ("subject", "all_subjects")
# Fields that only the stages after the branches read (joint fine-tuning, alignment, generation): not part of a shared branch stage's key.
LATER_STAGE_FIELDS = ("joint_", "align_", "use_mse", "fusion_init", "stage1", "stage2")
# What the shared pretraining depends on (besides data and seed): the time encoder and its pretraining.
PRETRAIN_FIELDS = ("d_model", "n_layers", "n_heads", "d_ffn", "dropout", "patch_size", "mask_ratio", "momentum",
                   "n_regressor_layers", "n_codewords", "batch_size", "pretrain_epochs", "pretrain_lr", "weight_decay", "patience",
                   "pretrain_signal_weight", "pretrain_latent", "pretrain_select", "pretrain_min_delta", "rezero", "decimate")  # fmt: skip


def stage_generator(seed: int, stage: int) -> torch.Generator:
    """The random stream of one training stage (independent of every other stage's draws)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 0xB7, stage]).generate_state(1)[0]))


# Stages of the random streams (stage_generator, stage_rng): training stages 1-5, module initialisations 11-13
# (the alignment network is built inside its stage's stream).
STAGE_FREQ, STAGE_PRETRAIN, STAGE_FINETUNE, STAGE_JOINT, STAGE_ALIGN = 1, 2, 3, 4, 5
INIT_FREQ, INIT_TIME, INIT_FUSION = 11, 12, 13


@contextmanager
def stage_rng(seed: int, stage: int) -> Iterator[None]:
    """The global torch RNG (initialisation, dropout) seeded for one stage and restored after it, so
    what a stage draws does not depend on which other stages ran: an ablation (no_time, no_freq,
    no_pretrain) shares every remaining stage's random numbers with the full model, and its paired
    comparison measures the ablated part, not a different initialisation."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(stage_generator(seed, stage).initial_seed()) % (2**31))
        yield


@dataclass(frozen=True)
class BrainVisConfig:
    """Hyperparameters; see ``bench/profiles/paper.toml`` for each field's meaning and source."""

    d_model: int = 1024
    n_layers: int = 8
    n_heads: int = 16
    d_ffn: int = 4096
    dropout: float = 0.2
    patch_size: int = 4
    mask_ratio: float = 0.75
    momentum: float = 0.99
    n_regressor_layers: int = 4
    n_codewords: int = 660
    n_bins: int = 220
    hidden: int = 128
    batch_size: int = 128
    freq_epochs: int = 1000
    freq_lr: float = 1e-3
    pretrain_epochs: int = 300
    pretrain_lr: float = 5e-4
    finetune_epochs: int = 100
    finetune_lr: float = 5e-4
    joint_epochs: int = 50
    joint_lr: float = 5e-4
    align_epochs: int = 500
    align_lr: float = 5e-4
    align_hidden: int = 4096
    align_bottleneck: int = 1024
    align_layers: int = 5
    align_ce_weight: float = 1.0
    use_mse: bool = True
    align_patience: int = 0  # the alignment's own early-stopping patience (0: ``patience``); its validation loss is noisier than accuracy
    align_finetune: bool = True  # the encoder keeps training during alignment (published); False: frozen, its outputs computed once
    align_encoder_lr: float = 0.0  # the encoder's learning rate during alignment (0: ``align_lr``, as published)
    align_select: str = "loss"  # the alignment epoch kept: lowest validation "loss" (alignment + CE) or "alignment" (alignment term alone)
    align_input_norm: bool = False  # standardise the alignment network's inputs (features, logits) on the training trials (published: raw)
    align_center: bool = False  # cosines of the alignment loss on sequences minus the mean training target (published: raw)
    weight_decay: float = 0.01
    freq_input_norm: str = "none"  # "log": log1p amplitudes, standardised on the training EEG (published: raw)
    freq_readout: str = "last"  # "mean": mean of the LSTM outputs over bins (published: last step)
    freq_dropout: float = 0.0
    fusion_init: str = "random"  # "heads": the fusion classifier starts as the sum of the branches' trained heads (published: a new layer);
    # "calibrated": as "heads", each head divided by its temperature fitted on the validation trials (a guessing branch starts near silent)
    joint_select_start: bool = False  # the joint stage's starting state competes in its selection as epoch 0 (published: no)
    joint_min_epochs: int = 0  # the joint stage never stops early before this epoch (0: no floor); with joint_select_start, a first dip cannot end it
    joint_branch_lr: float = 0.0  # the branches' learning rate in the joint stage (0: ``joint_lr``); the fusion layer always trains at ``joint_lr``
    freq_bin_embedding: bool = False  # a learned vector per frequency bin added to the LSTM input (published: none)
    pretrain_data: str = "all_subjects"  # or "subject_unlabelled", "subject" (see the module docstring)
    branch_data: str = "subject"  # "all_subjects": the branches' supervised stages on every subject's training trials (official code)
    pretrain_signal_weight: float = 0.0  # an extra raw-signal (MAE) target in masked modeling (published: none)
    pretrain_latent: bool = True  # the latent targets (EMA representations, codewords; published). False: the raw-signal target alone
    pretrain_select: str = "val_loss"  # the pretraining epoch kept: lowest validation pretext loss ("val_loss", early stopping
    # with ``patience``), or the budget's "last" (the official code's fixed checkpoint): the latent targets come from the
    # EMA encoder, which moves, so the pretext loss is no fixed yardstick and rises as the targets grow richer
    pretrain_min_delta: float = 0.0  # with "val_loss": an epoch counts as an improvement only when it lowers the best validation pretext
    # loss by this fraction of it (0: any decrease); a masked autoencoder's loss keeps creeping down long after it has converged
    rezero: bool = False  # ReZero encoder layers (residual gates start at 0), as the official classes
    patience: int = 0  # early stopping of every stage after this many epochs without improvement (0: off)
    finetune_min_epochs: int = 0  # the time encoder's fine-tuning never stops early before this epoch (0: no floor)
    decimate: int = 1  # mean of k consecutive samples before both branches (published: 1, the 1 kHz input)
    # ablation switches
    use_time: bool = True
    use_freq: bool = True
    pretrain: bool = True
    finetune: bool = True
    stage1: bool = True
    stage2: bool = True

    @classmethod
    def from_profile(cls, section: dict, options: dict | None = None) -> "BrainVisConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in section.items() if k in known}
        for k, v in (options or {}).items():
            if k not in known:
                raise ValueError(f"unknown BrainVis option {k!r}; known: {', '.join(sorted(known))}")
            values[k] = v
        cfg = cls(**values)
        if not (cfg.use_time or cfg.use_freq):
            raise ValueError("BrainVis needs at least one of use_time / use_freq")
        if not (cfg.stage1 or cfg.stage2):
            raise ValueError("BrainVis needs at least one of stage1 / stage2")
        if cfg.fusion_init not in FUSION_INIT:
            raise ValueError(f"fusion_init must be one of {', '.join(FUSION_INIT)}; got {cfg.fusion_init!r}")
        if cfg.align_select not in ALIGN_SELECT:
            raise ValueError(f"align_select must be one of {', '.join(ALIGN_SELECT)}; got {cfg.align_select!r}")
        if cfg.branch_data not in BRANCH_DATA:
            raise ValueError(f"branch_data must be one of {', '.join(BRANCH_DATA)}; got {cfg.branch_data!r}")
        if cfg.pretrain_select not in PRETRAIN_SELECT:
            raise ValueError(f"pretrain_select must be one of {', '.join(PRETRAIN_SELECT)}; got {cfg.pretrain_select!r}")
        if cfg.pretrain and cfg.use_time and not cfg.pretrain_latent and cfg.pretrain_signal_weight <= 0:
            raise ValueError("pretrain_latent = false needs pretrain_signal_weight > 0 (the pretext's only target)")
        if cfg.joint_branch_lr < 0:
            raise ValueError(f"joint_branch_lr must be >= 0 (0: joint_lr), got {cfg.joint_branch_lr!r}")
        if cfg.joint_min_epochs < 0:
            raise ValueError(f"joint_min_epochs must be >= 0, got {cfg.joint_min_epochs!r}")
        if cfg.align_encoder_lr < 0:
            raise ValueError(f"align_encoder_lr must be >= 0 (0: align_lr), got {cfg.align_encoder_lr!r}")
        if not 0.0 <= cfg.pretrain_min_delta < 1.0:
            raise ValueError(f"pretrain_min_delta must be in [0, 1), got {cfg.pretrain_min_delta!r}")
        if cfg.pretrain_data not in PRETRAIN_DATA:
            raise ValueError(f"pretrain_data must be one of {', '.join(PRETRAIN_DATA)}; got {cfg.pretrain_data!r}")
        return cfg

    @property
    def patience_or_none(self) -> int | None:
        return self.patience if self.patience > 0 else None


def build_branches(cfg: BrainVisConfig, *, n_chans: int = 128, n_times: int = 440, n_classes: int = 40, seed: int = 0) -> tuple[FreqEncoder | None, TimeEncoder | None]:
    """The enabled branches at the profile's sizes (each with its own 40-way head), each initialised
    from its own random stream (the same weights whether or not the other branch is built)."""
    freq = None
    if cfg.use_freq:
        with stage_rng(seed, INIT_FREQ):
            freq = FreqEncoder(n_chans=n_chans, n_times=n_times, n_bins=cfg.n_bins, hidden=cfg.hidden, n_outputs=n_classes, input_norm=cfg.freq_input_norm,
                               readout=cfg.freq_readout, dropout=cfg.freq_dropout, bin_embedding=cfg.freq_bin_embedding)  # fmt: skip
    time_enc = None
    if cfg.use_time:
        with stage_rng(seed, INIT_TIME):
            time_enc = TimeEncoder(
            n_chans=n_chans, n_times=n_times, patch_size=cfg.patch_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
            n_heads=cfg.n_heads, d_ffn=cfg.d_ffn, dropout=cfg.dropout, mask_ratio=cfg.mask_ratio, momentum=cfg.momentum,
            n_regressor_layers=cfg.n_regressor_layers, n_codewords=cfg.n_codewords, n_outputs=n_classes, pretraining=cfg.pretrain,
            signal_weight=cfg.pretrain_signal_weight, rezero=cfg.rezero, **({} if cfg.pretrain_latent else {"mse_weight": 0.0, "ce_weight": 0.0}),
            )  # fmt: skip
    return freq, time_enc


def build_alignment(cfg: BrainVisConfig, encoder: BrainVisEncoder, *, n_tokens: int, width: int) -> AlignmentNet:
    return AlignmentNet(
        in_features=encoder.n_features + encoder.n_outputs, hidden=cfg.align_hidden, bottleneck=cfg.align_bottleneck,
        n_layers=cfg.align_layers, n_tokens=n_tokens, width=width,
    )  # fmt: skip


@register_method
class BrainVis(Method):
    name = "brainvis"
    cost = 3.0  # measured: ~5.7 min per full-data trial on the mini world
    description = "Time (masked modeling) + frequency (FFT-LSTM) encoders, CLIP-text alignment with weight w, cascaded diffusion."
    source = "Fu et al., BrainVis, ICASSP 2025 (arXiv 2312.14871)"
    uses_w = True

    @classmethod
    def defaults(cls) -> dict:
        return {f.name: f.default for f in fields(BrainVisConfig)}

    def fit(self, train: TrialSet, val: TrialSet, ctx: FitContext) -> dict:
        cfg = BrainVisConfig.from_profile(ctx.profile, dict(ctx.spec.options))
        self.cfg, self.ctx = cfg, ctx
        self.prep = Decimate(cfg.decimate)
        train, val = self._prepared(train), self._prepared(val)
        seed = ctx.spec.seed
        n_classes = len(ctx.class_prompts)
        n_chans, n_times = train.eeg.shape[1:]
        report: dict = {"config": {f.name: getattr(cfg, f.name) for f in fields(cfg)}}
        log = ctx.log
        clock = StageClock()
        report["stage_seconds"] = clock.seconds
        lap = clock.lap
        kw = self._supervised_kw()

        freq, time_enc = build_branches(cfg, n_chans=n_chans, n_times=n_times, n_classes=n_classes, seed=seed)
        if freq is not None:
            log(f"brainvis: frequency encoder ({cfg.branch_data})")
            report["freq"] = self._branch_stage("freq", freq, train, val, epochs=cfg.freq_epochs, lr=cfg.freq_lr, stage=STAGE_FREQ)
            lap("freq")

        if time_enc is not None:
            if cfg.pretrain:
                log(f"brainvis: masked-modeling pretraining ({cfg.pretrain_data})")
                report["pretrain"] = self._pretrain_stage(time_enc, train, val)
                lap("pretrain")
            if cfg.finetune:
                log(f"brainvis: time-encoder fine-tuning ({cfg.branch_data})")
                report["finetune"] = self._branch_stage(
                    "finetune", time_enc, train, val, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, stage=STAGE_FINETUNE, min_epochs=cfg.finetune_min_epochs
                )
                lap("finetune")

        with stage_rng(seed, INIT_FUSION):
            self.encoder = BrainVisEncoder(n_chans=n_chans, n_times=n_times, n_outputs=n_classes, use_time=cfg.use_time, use_freq=cfg.use_freq, time_encoder=time_enc, freq_encoder=freq)
        if cfg.fusion_init in ("heads", "calibrated"):
            scales = self._head_scales(val, time_enc, freq) if cfg.fusion_init == "calibrated" else (1.0, 1.0)
            self.encoder.fusion.init_from_heads(time_enc.head if time_enc is not None else None, freq.head if freq is not None else None, scales=scales)
            if cfg.fusion_init == "calibrated":
                report["fusion_scales"] = {"time": scales[0], "freq": scales[1]}
        log("brainvis: joint fine-tuning" if cfg.finetune else "brainvis: fusion classifier on frozen features")
        params = self._joint_params() if cfg.finetune else self.encoder.fusion.parameters()
        if not cfg.finetune:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            for p in self.encoder.fusion.parameters():
                p.requires_grad_(True)
        epochs = cfg.joint_epochs if cfg.finetune else cfg.finetune_epochs
        with stage_rng(seed, STAGE_JOINT):
            report["joint"] = train_classifier(
                self.encoder, lambda x: self.encoder(x)["logits"], train, val, epochs=epochs, lr=cfg.joint_lr, g=stage_generator(seed, STAGE_JOINT), params=params,
                select_start=cfg.joint_select_start, min_epochs=cfg.joint_min_epochs, **kw,
            )  # fmt: skip
        lap("joint")

        self.align = None
        if cfg.stage1 and ctx.backbones is not None:
            log("brainvis: alignment")
            with stage_rng(seed, STAGE_ALIGN):
                report["align"] = self._align(train, val, stage_generator(seed, STAGE_ALIGN))
            lap("align")
        return report

    # ---------------------------------------------------------------------------------------------

    def _joint_params(self) -> list[dict]:
        """The joint stage's parameter groups: the fusion layer at ``joint_lr``, the branches at
        ``joint_branch_lr`` (0: ``joint_lr``, one group as published)."""
        cfg = self.cfg
        if not cfg.joint_branch_lr:
            return [{"params": list(self.encoder.parameters())}]
        fusion = {id(p) for p in self.encoder.fusion.parameters()}
        return [
            {"params": list(self.encoder.fusion.parameters())},
            {"params": [p for p in self.encoder.parameters() if id(p) not in fusion], "lr": cfg.joint_branch_lr},
        ]

    @staticmethod
    def _head_scales(val: TrialSet, time_enc: TimeEncoder | None, freq: FreqEncoder | None) -> tuple[float, float]:
        """``1 / T`` per branch head (time, freq), ``T`` its temperature on the validation trials
        (:func:`fit_temperature`); 1 for an off branch."""
        scales = []
        for module in (time_enc, freq):
            if module is None:
                scales.append(1.0)
                continue
            module.eval()
            scales.append(1.0 / fit_temperature(eval_logits(module.classify, val.eeg), val.label))
        return scales[0], scales[1]

    def _supervised_kw(self) -> dict:
        """What every supervised stage (branches, joint) passes to ``train_classifier`` besides its epochs and lr."""
        cfg = self.cfg
        return dict(batch=cfg.batch_size, wd=cfg.weight_decay, patience=cfg.patience_or_none, passes=self.ctx.passes)

    def _prepared(self, data: TrialSet) -> TrialSet:
        return data if self.prep.k == 1 else replace(data, eeg=self.prep.in_batches(data.eeg))

    def _branch_stage(
        self, name: str, module: FreqEncoder | TimeEncoder, train: TrialSet, val: TrialSet, *, epochs: int, lr: float, stage: int, min_epochs: int = 0
    ) -> dict:
        """Supervised training of one branch with its own head: on the subject's trials, or (``branch_data
        = "all_subjects"``, the official code's protocol) on every subject's training trials at the trial's
        fraction, selected on every subject's validation trials, computed once and shared by every trial
        with the same configuration (whatever its subject or ``w``)."""
        cfg, ctx = self.cfg, self.ctx
        g = stage_generator(ctx.spec.seed, stage)
        kw = dict(epochs=epochs, lr=lr, min_epochs=min_epochs, **self._supervised_kw())
        splits = ctx.subject_splits() if cfg.branch_data == "all_subjects" and ctx.subject_splits is not None else None
        if splits is None:
            if isinstance(module, FreqEncoder):
                module.fit_input_stats(train.eeg)
            with stage_rng(ctx.spec.seed, stage):
                return {**train_classifier(module, module.classify, train, val, g=g, **kw), "data": "subject", "n_train": len(train)}
        parts = {
            "what": f"brainvis.{name}", "version": BRANCH_VERSION, "splits": splits.describe(), "seed": int(ctx.spec.seed),
            "n_chans": int(train.eeg.shape[1]), "n_times": int(train.eeg.shape[2]),
            "config": {f.name: getattr(cfg, f.name) for f in fields(cfg) if not f.name.startswith(LATER_STAGE_FIELDS)},
            "init": state_digest(module),
        }  # fmt: skip

        def compute() -> tuple[dict, dict]:
            trains, vals = [], []
            for subject in splits.subjects:
                tr_s, va_s = splits.load(subject)
                trains.append(self._prepared(tr_s))
                vals.append(self._prepared(va_s))
            tr, va = TrialSet.concat(trains), TrialSet.concat(vals)
            with stage_rng(ctx.spec.seed, stage):
                if isinstance(module, FreqEncoder):
                    module.fit_input_stats(tr.eeg)
                rep = train_classifier(module, module.classify, tr, va, g=g, **kw)
            return module.state_dict(), {**rep, "n_train": len(tr), "n_val": len(va)}

        state, rep, here = ctx.shared.get(parts, compute)
        if not here:
            module.load_state_dict(state)
        return {**rep, "data": "all_subjects", "shared": "computed" if here else "loaded"}

    def _pretrain_stage(self, enc: TimeEncoder, train: TrialSet, val: TrialSet) -> dict:
        """Masked-modeling pretraining on the configured data; shared across trials when pooled."""
        cfg, ctx = self.cfg, self.ctx
        g = stage_generator(ctx.spec.seed, STAGE_PRETRAIN)

        def run(x_train: torch.Tensor, x_val: torch.Tensor, passes: int = 1) -> dict:
            with stage_rng(ctx.spec.seed, STAGE_PRETRAIN):
                rep = self._pretrain(enc, x_train, x_val, g, passes)
            return rep

        pool = ctx.pretraining_pool(cfg.pretrain_data)
        if pool is None:
            rep = run(train.eeg, val.eeg, self.ctx.passes)
            return {**rep, "data": "subject", "n_train": len(train), "n_val": len(val)}
        parts = {
            "what": "brainvis.time_pretrain", "version": PRETRAIN_VERSION, "pool": pool.describe(), "seed": int(ctx.spec.seed),
            "n_chans": int(enc.n_chans), "n_times": int(enc.n_times), "config": {k: getattr(cfg, k) for k in PRETRAIN_FIELDS},
            "init": state_digest(enc),  # the starting weights (one per seed: every variant draws them from the same stream)
        }  # fmt: skip

        def compute() -> tuple[dict, dict]:
            x_train, x_val = pool.load()
            rep = run(self.prep.in_batches(x_train), self.prep.in_batches(x_val))
            return enc.state_dict(), rep

        state, rep, here = ctx.shared.get(parts, compute)
        if not here:
            enc.load_state_dict(state)
        return {**rep, "data": cfg.pretrain_data, "n_train": pool.n_train, "n_val": pool.n_val, "shared": "computed" if here else "loaded"}

    def _pretrain(self, enc: TimeEncoder, x_train: torch.Tensor, x_val: torch.Tensor, g: torch.Generator, passes: int = 1) -> dict:
        """Masked modeling on unlabelled EEG (``passes`` passes per epoch); keeps the epoch with the
        lowest validation loss (``pretrain_select = "val_loss"``) or the last (``"last"``). The report
        carries the validation loss of every epoch run."""
        cfg = self.cfg
        params = [p for n, p in enc.named_parameters() if not n.startswith("ema_backbone") and not n.startswith("head")]
        opt = torch.optim.AdamW(params, lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay)
        best = (math.inf, 0, copy.deepcopy(enc.state_dict()))
        keep_last = cfg.pretrain_select == "last"
        vg = torch.Generator()
        ran = 0
        curve: list[float] = []
        for epoch in range(cfg.pretrain_epochs):
            enc.train()
            for idx in _batches(len(x_train), cfg.batch_size, g, passes=passes):
                loss = enc.pretrain_loss(x_train[idx].float(), generator=g)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                enc.update_ema()
            enc.eval()
            with torch.no_grad():
                vg.manual_seed(12345)  # the same masks every epoch
                vloss = float(np.mean([float(enc.pretrain_loss(x_val[i : i + 256].float(), generator=vg)["loss"]) for i in range(0, len(x_val), 256)]))
            ran = epoch + 1
            curve.append(round(vloss, 5))
            if keep_last:
                continue
            if improves(vloss, best[0], cfg.pretrain_min_delta):
                best = (vloss, epoch + 1, copy.deepcopy(enc.state_dict()))
            elif cfg.patience_or_none is not None and epoch + 1 - best[1] >= cfg.patience:
                break
        if keep_last:
            # a fixed checkpoint, not a selection: "best_is_last" (a budget too short) does not apply
            return {**stage_report(curve[-1] if curve else math.inf, ran, ran, cfg.pretrain_epochs, key="val_loss"), "best_is_last": None, "select": "last", "val_loss_curve": curve}
        enc.load_state_dict(best[2])
        return {**stage_report(best[0], best[1], ran, cfg.pretrain_epochs, key="val_loss"), "select": "val_loss", "val_loss_curve": curve}

    def _targets(self, data: TrialSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-prompt and caption token sequences ``[N, T, W]`` for a split's trials."""
        text = self.ctx.backbones.text_encoder
        if not hasattr(self, "_label_tokens"):
            self._label_tokens = text.encode_tokens(self.ctx.class_prompts)
        c_label = self._label_tokens[data.label]
        names = sorted(set(data.image_names))
        missing = [n for n in names if n not in self.ctx.captions]
        if missing:
            raise ValueError(f"no caption for {len(missing)} training image(s), e.g. {missing[:3]}")
        tok = text.encode_tokens([self.ctx.captions[n] for n in names])
        pos = {n: i for i, n in enumerate(names)}
        c_cap = tok[[pos[n] for n in data.image_names]]
        return c_label, c_cap

    def _align(self, train: TrialSet, val: TrialSet, g: torch.Generator) -> dict:
        cfg, w = self.cfg, float(self.ctx.spec.w)
        tl, tc = self._targets(train)
        vl, vc = self._targets(val)
        text = self.ctx.backbones.text_encoder
        self.align = build_alignment(cfg, self.encoder, n_tokens=text.n_tokens, width=text.width)
        if cfg.align_input_norm:
            with torch.no_grad():
                self.encoder.eval()
                out = self.encoder(train.eeg)
                self.align.fit_input_stats(out["features"], out["logits"])
        center = None
        if cfg.align_center:
            center = 0.5 * (tl.mean(0) + tc.mean(0))
            with torch.no_grad():
                self.align.out.bias.copy_(center.reshape(-1))  # start from the mean sequence; learn what tells prompts apart
        tune = cfg.finetune and cfg.align_finetune  # the encoder keeps training (published) or is frozen
        patience = cfg.align_patience if cfg.align_patience > 0 else cfg.patience_or_none
        for p in self.encoder.parameters():
            p.requires_grad_(tune)
        frozen: dict[str, dict[str, torch.Tensor]] = {}
        if not tune:  # a frozen encoder's outputs are computed once
            self.encoder.eval()
            with torch.no_grad():
                frozen = {name: self.encoder(split.eeg) for name, split in (("train", train), ("val", val))}

        def encode(name: str, split: TrialSet, idx) -> dict[str, torch.Tensor]:
            if tune:
                return self.encoder(split.eeg if idx is None else split.eeg[idx])
            return frozen[name] if idx is None else {k: v[idx] for k, v in frozen[name].items()}

        groups = [{"params": list(self.align.parameters())}]
        if tune:
            groups.append({"params": list(self.encoder.parameters()), "lr": cfg.align_encoder_lr or cfg.align_lr})
        opt = torch.optim.AdamW(groups, lr=cfg.align_lr, weight_decay=cfg.weight_decay)
        best = (math.inf, 0, None)
        ran = 0
        for epoch in range(cfg.align_epochs):
            self.encoder.train(tune)
            self.align.train()
            for idx in _batches(len(train), cfg.batch_size, g, passes=self.ctx.passes):
                out = encode("train", train, idx)
                pred = self.align(out["features"], out["logits"])
                loss = alignment_loss(pred, tl[idx], tc[idx], w, use_mse=cfg.use_mse, center=center)["loss"]
                if tune:
                    loss = loss + cfg.align_ce_weight * F.cross_entropy(out["logits"], train.label[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.encoder.eval()
            self.align.eval()
            with torch.no_grad():
                out = encode("val", val, None)
                vloss = float(alignment_loss(self.align(out["features"], out["logits"]), vl, vc, w, use_mse=cfg.use_mse, center=center)["loss"])
                if cfg.align_select == "loss" and tune:
                    vloss += cfg.align_ce_weight * float(F.cross_entropy(out["logits"], val.label))
            ran = epoch + 1
            if vloss < best[0]:
                best = (vloss, epoch + 1, (copy.deepcopy(self.encoder.state_dict()) if tune else None, copy.deepcopy(self.align.state_dict())))
            elif patience is not None and epoch + 1 - best[1] >= patience:
                break
        if best[2][0] is not None:
            self.encoder.load_state_dict(best[2][0])
        self.align.load_state_dict(best[2][1])
        with torch.no_grad():
            out = self.encoder(val.eeg)
            val_top1 = _accuracy(out["logits"], val.label)
        return {**stage_report(best[0], best[1], ran, cfg.align_epochs, key="val_loss"), "w": w, "val_top1_after": val_top1}

    # ---------------------------------------------------------------------------------------------

    def predict(self, eeg: torch.Tensor) -> Predictions:
        self.encoder.eval()
        out = self.encoder(self.prep.in_batches(eeg))
        cond = None
        if self.align is not None:
            self.align.eval()
            cond = self.align(out["features"], out["logits"])
        return Predictions(logits=out["logits"], cond=cond)

    def generate(self, preds: Predictions, ctx: FitContext, *, seed: int) -> dict[str, np.ndarray]:
        from bench.methods.generation import cascade

        prompts = [ctx.class_prompts[c] for c in preds.logits.argmax(1).tolist()]
        return cascade(preds.cond, prompts, ctx, seed=seed, stage1=self.cfg.stage1, stage2=self.cfg.stage2)
