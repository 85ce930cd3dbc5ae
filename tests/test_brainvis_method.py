"""BrainVis as a method: paper profile sizes, ablation switches, determinism, test-split isolation."""

from __future__ import annotations

import math
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods.base import FitContext, Method, Predictions, TrialSpec, register_method, METHODS
from bench.methods.registry import get_method
from bench.experiment.trial import RunEnv, run_trial
from bench.data.eegcvpr40 import TrialSet
from brainvis.method import BrainVis, BrainVisConfig, build_alignment, build_branches
from brainvis.models import BrainVisEncoder

PROFILES = Path(__file__).resolve().parent.parent / "bench" / "profiles"
TINY = dict(
    d_model=16, n_layers=1, n_heads=2, d_ffn=32, dropout=0.0, n_regressor_layers=1, n_codewords=8, n_bins=20, hidden=8,
    batch_size=16, freq_epochs=2, pretrain_epochs=2, finetune_epochs=2, joint_epochs=2, align_epochs=2,
    align_hidden=32, align_bottleneck=16, align_layers=3, use_mse=False,
)  # fmt: skip


def _trials(n: int, seed: int, n_classes: int = 4) -> TrialSet:
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % n_classes
    eeg = torch.randn(n, 128, 440, generator=g) + 0.5 * label[:, None, None].float() * torch.linspace(-1, 1, 440)
    names = [f"n0000000{int(c)}_{seed}{i}" for i, c in enumerate(label)]
    return TrialSet(eeg=eeg, label=label, image=torch.arange(n), subject=torch.ones(n, dtype=torch.long), index=np.arange(n), image_names=names)


def _ctx(options: dict | None = None, backbones=None, seed: int = 0, captions: dict | None = None) -> FitContext:
    spec = TrialSpec("brainvis", seed=seed, w=0.5, options=tuple(sorted((options or {}).items())))
    return FitContext(spec=spec, profile=dict(TINY), backbones=backbones, class_prompts=[f"a photo of a thing {c}" for c in range(4)], captions=captions or {})


def test_paper_profile_builds_full_size_model_and_steps():
    torch.manual_seed(0)
    section = tomllib.load(open(PROFILES / "paper.toml", "rb"))["brainvis"]
    cfg = BrainVisConfig.from_profile(section)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ffn, cfg.n_codewords, cfg.mask_ratio) == (1024, 8, 16, 4096, 660, 0.75)
    freq, time_enc = build_branches(cfg)
    assert sum(p.numel() for p in freq.parameters()) == 153_768
    assert time_enc.n_units == 110 and time_enc.n_masked == 82
    enc = BrainVisEncoder(time_encoder=time_enc, freq_encoder=freq)
    align = build_alignment(cfg, enc, n_tokens=77, width=768)
    x = torch.randn(2, 128, 440)
    out = enc(x)
    pred = align(out["features"], out["logits"])
    assert out["features"].shape == (2, 1152) and out["logits"].shape == (2, 40) and pred.shape == (2, 77, 768)
    loss = pred.pow(2).mean() + torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1])) + time_enc.pretrain_loss(x)["loss"]
    loss.backward()
    assert all(p.grad is not None for p in freq.parameters() if p.requires_grad and p is not freq.head.weight and p is not freq.head.bias)


def test_config_options_validate():
    with pytest.raises(ValueError, match="unknown BrainVis option"):
        BrainVisConfig.from_profile(TINY, {"use_tiem": False})
    with pytest.raises(ValueError, match="at least one"):
        BrainVisConfig.from_profile(TINY, {"use_time": False, "use_freq": False})


def _fit(options=None, seed=0):
    torch.manual_seed(seed)
    m = BrainVis()
    report = m.fit(_trials(32, 1), _trials(16, 2), _ctx(options, seed=seed))
    return m, report


def test_same_seed_same_result_and_different_seed_differs():
    m1, r1 = _fit(seed=3)
    m2, r2 = _fit(seed=3)
    x = _trials(8, 9).eeg
    assert torch.equal(m1.predict(x).logits, m2.predict(x).logits)
    m3, _ = _fit(seed=4)
    assert not torch.equal(m1.predict(x).logits, m3.predict(x).logits)


@pytest.mark.parametrize("switch", ["use_time", "use_freq", "pretrain", "finetune"])
def test_encoder_ablation_switches_change_only_what_they_say(switch):
    full, r_full = _fit()
    abl, r_abl = _fit({switch: False})
    # The configs differ in exactly that switch.
    diff = {k for k in r_full["config"] if r_full["config"][k] != r_abl["config"][k]}
    assert diff == {switch}
    enc = abl.encoder
    if switch == "use_time":
        assert enc.time_encoder is None and enc.n_features == TINY["hidden"]
        assert "pretrain" not in r_abl and "finetune" not in r_abl
        assert r_abl["freq"] == r_full["freq"]  # the frequency branch trains exactly as in the full model
    if switch == "use_freq":
        assert enc.freq_encoder is None and enc.n_features == TINY["d_model"] and "freq" not in r_abl
    if switch == "pretrain":
        assert "pretrain" not in r_abl and not enc.time_encoder.pretraining and "finetune" in r_abl
        assert r_abl["freq"] == r_full["freq"]
    if switch == "finetune":
        assert "finetune" not in r_abl and "pretrain" in r_abl
        assert all(not p.requires_grad for n, p in enc.named_parameters() if not n.startswith("fusion"))
        assert r_abl["pretrain"] == r_full["pretrain"]  # pretraining untouched


def test_ablations_share_the_random_numbers_of_every_stage_they_keep():
    """Common random numbers: with dropout on, a variant that drops one part trains every part it keeps
    exactly as the full model does (same initialisation, same dropout masks, same batches), so a
    paired full-vs-ablation comparison measures the ablated part and not a reseeded model."""
    noisy = {"dropout": 0.2, "freq_dropout": 0.3}
    full, r_full = _fit(noisy)
    _, r_no_time = _fit({**noisy, "use_time": False})
    _, r_no_pre = _fit({**noisy, "pretrain": False})
    _, r_no_freq = _fit({**noisy, "use_freq": False})
    assert r_no_time["freq"] == r_full["freq"] and r_no_pre["freq"] == r_full["freq"]
    assert r_no_freq["pretrain"] == r_full["pretrain"] and r_no_freq["finetune"] == r_full["finetune"]
    _, r_other = _fit(noisy, seed=1)
    assert r_other["pretrain"] != r_full["pretrain"]  # the streams follow the trial's seed


def test_pretraining_kept_at_its_last_epoch_or_at_its_best_validation_epoch():
    _, last = _fit({"pretrain_select": "last", "pretrain_epochs": 3, "patience": 1})
    p = last["pretrain"]
    assert p["select"] == "last" and p["epochs_run"] == p["best_epoch"] == 3 and p["best_is_last"] is None
    assert len(p["val_loss_curve"]) == 3 and p["val_loss"] == p["val_loss_curve"][-1]  # no early stop, no selection
    _, best = _fit({"pretrain_epochs": 3})
    q = best["pretrain"]
    assert q["select"] == "val_loss" and q["val_loss"] == pytest.approx(min(q["val_loss_curve"]), abs=1e-5)
    assert q["best_epoch"] == 1 + int(np.argmin(q["val_loss_curve"]))
    with pytest.raises(ValueError, match="pretrain_select must be one of"):
        BrainVisConfig.from_profile(TINY, {"pretrain_select": "best"})


def test_finetune_off_keeps_pretrained_encoder_weights():
    torch.manual_seed(0)
    m = BrainVis()
    snapshots = {}
    orig = m._pretrain

    def spy(enc, train, val, g, passes=1):
        out = orig(enc, train, val, g, passes)
        snapshots["after_pretrain"] = {k: v.clone() for k, v in enc.backbone.state_dict().items()}
        return out

    m._pretrain = spy
    m.fit(_trials(32, 1), _trials(16, 2), _ctx({"finetune": False}))
    after = m.encoder.time_encoder.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in snapshots["after_pretrain"].items())


def test_generation_switches_with_untrained_backbones():
    from bench.backbones.mini import untrained_mini_backbones

    bb = untrained_mini_backbones()
    captions = {n: f"a caption for {n}" for n in _trials(32, 1).image_names + _trials(16, 2).image_names}
    ctx_kw = dict(backbones=bb, captions=captions)
    results = {}
    for opts in ({}, {"stage1": False}, {"stage2": False}):
        torch.manual_seed(0)
        m = BrainVis()
        ctx = _ctx(opts, **ctx_kw)
        ctx.profile["generation"] = {"samples": 1, "stage1_steps": 2, "stage2_steps": 2, "batch": 8}
        report = m.fit(_trials(32, 1), _trials(16, 2), ctx)
        preds = m.predict(_trials(4, 9).eeg)
        imgs = m.generate(preds, ctx, seed=0)
        results[tuple(opts)] = (report, preds, imgs)
        assert imgs["final"].shape == (4, 1, 32, 32, 3) and imgs["final"].dtype == np.uint8
    full, no_s1, no_s2 = results[()], results[("stage1",)], results[("stage2",)]
    assert full[1].cond.shape == (4, 77, 64) and "stage1" in full[2] and "align" in full[0]
    assert no_s1[1].cond is None and "stage1" not in no_s1[2] and "align" not in no_s1[0]
    assert np.array_equal(no_s2[2]["final"], no_s2[2]["stage1"])
    assert "align" in no_s2[0]


def test_training_code_never_sees_the_test_split(smoke_world):
    root, _ = smoke_world
    seen = {}

    class Spy(Method):
        name = "spy-test-isolation"
        description = source = "-"
        needs_generator = False

        def fit(self, train, val, ctx):
            seen["fit"] = (set(train.index.tolist()), set(val.index.tolist()), set(train.image_names) | set(val.image_names))
            return {}

        def predict(self, eeg):
            seen["predict_arg"] = eeg
            return Predictions(logits=torch.zeros(eeg.shape[0], 40))

    if Spy.name not in METHODS:
        register_method(Spy)
    out = run_trial(TrialSpec(Spy.name, subject=1), RunEnv(data_root=str(root), dataset_id="smoke"))
    from bench.data.eegcvpr40 import DataConfig, load_split_data

    test = load_split_data(DataConfig(root=str(root), subject=1)).test
    train_idx, val_idx, names = seen["fit"]
    assert not (train_idx | val_idx) & set(test.index.tolist())
    assert not names & set(test.image_names)
    assert isinstance(seen["predict_arg"], torch.Tensor) and torch.equal(seen["predict_arg"], test.eeg)
    assert out["n_test"] == len(test)


def test_shared_pretraining_does_not_depend_on_which_variant_ran_first(tmp_path):
    """The pretraining shared through the cache is keyed by the encoder's starting weights, which every
    variant draws from the same stream: no_freq (no frequency branch) reuses the full trial's
    pretraining, and gets the same result from it as from a cache of its own."""
    from bench.methods.base import UnlabelledPool
    from bench.methods.training import SharedWork

    pool_x = _trials(48, 7).eeg.half()
    pool = UnlabelledPool({"pool": "test"}, 32, 16, lambda: (pool_x[:32], pool_x[32:]))
    own = UnlabelledPool({"pool": "test", "subjects": [4]}, 24, 8, lambda: (pool_x[:24], pool_x[40:]))

    def fit(options: dict, cache) -> tuple[dict, torch.Tensor]:
        ctx = replace(_ctx(options), pretrain_pool=lambda subject=0: {0: pool, 4: own}[subject], shared=SharedWork(cache))
        torch.manual_seed(0)  # as run_trial seeds every trial
        m = BrainVis()
        rep = m.fit(_trials(32, 1), _trials(16, 2), ctx)
        return rep, m.predict(_trials(8, 3).eeg).logits

    full, _ = fit({}, tmp_path / "a")
    after_full, logits_after = fit({"use_freq": False}, tmp_path / "a")
    alone, logits_alone = fit({"use_freq": False}, tmp_path / "b")
    assert full["pretrain"]["shared"] == "computed" and after_full["pretrain"]["shared"] == "loaded" and alone["pretrain"]["shared"] == "computed"
    assert after_full["pretrain"]["val_loss"] == alone["pretrain"]["val_loss"] == full["pretrain"]["val_loss"]
    torch.testing.assert_close(logits_after, logits_alone, rtol=0, atol=0)
    again, _ = fit({}, tmp_path / "a")
    assert again["pretrain"]["shared"] == "loaded" and again["pretrain"]["val_loss"] == full["pretrain"]["val_loss"]
    # the subject's own unlabelled trials: its own pool, under its own key
    mine, _ = fit({"pretrain_data": "subject_unlabelled"}, tmp_path / "a")
    assert (mine["pretrain"]["data"], mine["pretrain"]["n_train"], mine["pretrain"]["shared"]) == ("subject_unlabelled", 24, "computed")


def test_masked_autoencoder_pretext_options():
    """``pretrain_latent = false`` builds a time encoder without latent targets (a masked autoencoder)
    and needs the raw-signal target; ``pretrain_min_delta`` is a fraction; the improvement rule is
    the relative one both BrainVis and DreamDiffusion use."""
    from bench.methods.training import improves

    cfg = BrainVisConfig.from_profile({"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ffn": 32, "n_codewords": 8, "patch_size": 4},
                                      {"pretrain_latent": False, "pretrain_signal_weight": 1.0, "use_freq": False})  # fmt: skip
    _, enc = build_branches(cfg, n_chans=8, n_times=40)
    assert enc.mse_weight == 0 and enc.ce_weight == 0 and enc.signal_decoder is not None
    assert set(enc.pretrain_loss(torch.randn(2, 8, 40))) == {"loss", "signal"}
    with pytest.raises(ValueError, match="pretrain_signal_weight > 0"):
        BrainVisConfig.from_profile({}, {"pretrain_latent": False})
    BrainVisConfig.from_profile({}, {"pretrain_latent": False, "pretrain": False})  # no pretraining: nothing to check
    with pytest.raises(ValueError, match="pretrain_min_delta"):
        BrainVisConfig.from_profile({}, {"pretrain_min_delta": 1.0})
    assert improves(0.98, 1.0, 0.01) and not improves(0.995, 1.0, 0.01) and improves(0.999, 1.0)


def test_calibrated_fusion_and_a_joint_stage_that_may_keep_its_start():
    _, rep = _fit({"fusion_init": "calibrated", "joint_select_start": True, "joint_epochs": 5, "joint_min_epochs": 3, "patience": 1})
    scales = rep["fusion_scales"]
    assert set(scales) == {"time", "freq"} and all(0 < s < math.inf for s in scales.values())
    assert 0 <= rep["joint"]["best_epoch"] <= rep["joint"]["epochs_run"] and rep["joint"]["epochs_run"] >= 3  # the floor holds under patience 1
    _, off = _fit({"fusion_init": "calibrated", "use_freq": False})
    assert off["fusion_scales"]["freq"] == 1.0  # an off branch has no head to scale
    with pytest.raises(ValueError, match="fusion_init"):
        BrainVisConfig.from_profile(TINY, {"fusion_init": "calibrate"})


def test_joint_branch_lr_splits_the_fusion_layer_from_the_branches():
    m, rep = _fit({"joint_branch_lr": 1e-4})
    groups = m._joint_params()
    fusion = {id(p) for p in m.encoder.fusion.parameters()}
    assert [{id(p) for p in g["params"]} == fusion for g in groups] == [True, False] and groups[1]["lr"] == 1e-4
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in m.encoder.parameters()}
    one, _ = _fit()
    assert len(one._joint_params()) == 1  # as published: one group at joint_lr
