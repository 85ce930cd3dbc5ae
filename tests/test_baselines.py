"""Baselines and reference rows: model shapes, learning, determinism, fit/predict/generate, registry.

Everything runs on tiny random TrialSets with tiny profiles (a few epochs, small widths); images go
through ``untrained_mini_backbones()`` (random weights, mini shapes). No dataset world is built.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.methods.base import METHODS, FitContext, Predictions, TrialSpec
from bench.methods.registry import get_method
from bench.data.classes import WNIDS
from bench.data.eegcvpr40 import TrialSet, image_path

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)

N_CLASSES = 4
CLASSIFIERS = ("lstm", "channelnet", "eegnet", "shallowconvnet")
REFERENCE_ROWS = ("oracle_caption", "oracle_label", "brainvis_stage2_true", "brainvis_stage2_random")
GENERATION = {"samples": 1, "stage1_steps": 2, "stage1_guidance": 1.0, "stage2_steps": 2, "stage2_strength": 0.85, "stage2_guidance": 2.0, "batch": 8}

TINY = {
    "lstm": {"epochs": 2, "batch_size": 8, "decimate": 8, "hidden": 16, "embed": 16},
    "channelnet": {
        "epochs": 1, "batch_size": 8, "decimate": 4, "temporal_filters": 2, "temporal_kernel": 9, "spatial_filters": 2,
        "spatial_stride": 4, "n_residual": 2, "embedding": 16,
    },  # fmt: skip
    "eegnet": {"epochs": 2, "batch_size": 8, "decimate": 4, "F1": 4, "D": 1, "kernel_length": 16},
    "shallowconvnet": {"epochs": 2, "batch_size": 8, "decimate": 4, "n_filters_time": 8, "n_filters_spat": 8},
    "dreamdiffusion": {
        "d_model": 16, "n_layers": 1, "n_heads": 2, "mlp_ratio": 2.0, "dec_dim": 8, "dec_layers": 1, "dec_heads": 2,
        "pretrain_epochs": 2, "pretrain_batch": 8, "finetune_epochs": 2, "finetune_batch": 8, "probe_epochs": 3, "probe_batch": 8,
    },  # fmt: skip
}


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


def image_names(n_per_class: int, offset: int) -> list[str]:
    return [f"{WNIDS[c]}_{offset + j}" for c in range(N_CLASSES) for j in range(n_per_class)]


def make_set(names: list[str], trials_per_image: int, seed: int) -> TrialSet:
    g = torch.Generator().manual_seed(seed)
    names = [n for n in names for _ in range(trials_per_image)]
    label = torch.tensor([WNIDS.index(n.split("_")[0]) for n in names])
    eeg = torch.randn(len(names), 128, 440, generator=g)
    eeg[:, :8, 100:200] += label[:, None, None].float()  # some learnable class signal
    return TrialSet(
        eeg=eeg, label=label, image=torch.arange(len(names)), subject=torch.ones(len(names), dtype=torch.long),
        index=np.arange(len(names)), image_names=names,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny train/val/test sets (4 classes) and their images on disk."""
    root = tmp_path_factory.mktemp("baseline_images")
    names = {"train": image_names(3, 0), "val": image_names(1, 100), "test": image_names(1, 200)}
    rng = np.random.default_rng(0)
    for split in names.values():
        for n in split:
            p = image_path(root, n)
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p)
    sets = {"train": make_set(names["train"], 2, 1), "val": make_set(names["val"], 2, 2), "test": make_set(names["test"], 1, 3)}
    return sets, root


@pytest.fixture(scope="module")
def backbones():
    from bench.backbones.mini import untrained_mini_backbones

    return untrained_mini_backbones()


def make_ctx(name: str, root, backbones=None, seed: int = 0, data_sets=None) -> FitContext:
    captions = {}
    if backbones is not None and data_sets is not None:
        captions = {n: f"a photo of a thing number {n}" for split in ("train", "val") for n in data_sets[split].image_names}
    return FitContext(
        spec=TrialSpec(name, seed=seed),
        profile={**TINY.get(name, {}), "generation": GENERATION},
        backbones=backbones,
        class_prompts=[f"a photo of class {c}" for c in range(N_CLASSES)],
        captions=captions,
        image_root=root,
    )


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def test_every_method_is_registered_with_metadata():
    import baselines

    for name in (*baselines.CLASSIFY_THEN_DRAW, "dreamdiffusion", *baselines.REFERENCE_ROWS):
        cls = get_method(name)
        assert cls.name == name and METHODS[name] is cls
        assert cls.description and "\n" not in cls.description
        assert cls.source
        assert cls.needs_generator is True
        assert cls.uses_w is False
    for name in REFERENCE_ROWS:
        cls = get_method(name)
        assert getattr(cls, "reference", False) is True
        assert callable(getattr(cls, "predict_reference", None))
    assert not getattr(get_method("lstm"), "reference", False)


def test_profiles_have_a_section_for_every_baseline():
    import tomllib
    from pathlib import Path

    for profile in ("mini", "paper"):
        prof = tomllib.loads((Path(__file__).resolve().parents[1] / "bench" / "profiles" / f"{profile}.toml").read_text())
        for name in (*CLASSIFIERS, "dreamdiffusion"):
            assert name in prof, f"[{name}] missing from {profile}.toml"
            get_method(name).config(prof[name])  # every key known


def test_unknown_config_keys_are_errors():
    with pytest.raises(ValueError, match="unknown profile key 'epoch'"):
        get_method("lstm").config({"epoch": 3})
    with pytest.raises(ValueError, match="unknown option key 'nope'"):
        get_method("dreamdiffusion").config({}, {"nope": 1})
    with pytest.raises(ValueError, match="unknown profile key 'F3'"):
        get_method("eegnet").config({"F3": 3})


# --------------------------------------------------------------------------------------------------
# Models: shapes on the real input shape, and learning on a fixed batch
# --------------------------------------------------------------------------------------------------


def network(name: str, n_outputs: int = 40) -> torch.nn.Module:
    cls = get_method(name)
    torch.manual_seed(0)
    return cls.make_network(cls.config(TINY[name]), 128, n_outputs, 440)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_output_shape_on_real_input(name):
    net = network(name).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 128, 440))
    assert out.shape == (3, 40) and torch.isfinite(out).all()


def test_braindecode_models_are_braindecode_classes_at_paper_settings():
    import braindecode.models as bd

    for name, cls_name in (("eegnet", "EEGNet"), ("shallowconvnet", "ShallowFBCSPNet")):
        cls = get_method(name)
        net = cls.make_network(cls.config({}), 128, 40, 440)  # paper: no decimation, braindecode defaults
        assert type(net) is getattr(bd, cls_name)
        assert (net.n_chans, net.n_outputs, net.n_times) == (128, 40, 440)
        with torch.no_grad():
            assert net.eval()(torch.randn(2, 128, 440)).shape == (2, 40)


def test_lstm_paper_architecture():
    from baselines.lstm import LSTMEncoderNet

    net = LSTMEncoderNet()
    assert (net.lstm.input_size, net.lstm.hidden_size, net.lstm.num_layers) == (128, 128, 1)
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [128, 40]
    with torch.no_grad():
        assert net(torch.randn(2, 128, 440)).shape == (2, 40)


def test_channelnet_paper_geometry():
    from baselines.channelnet import EEGChannelNet

    net = EEGChannelNet()  # paper sizes (the constructor runs one forward pass to size the head)
    convs = [m for m in net.temporal.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.dilation, c.stride) for c in convs] == [(10, (1, 33), (1, d), (1, 2)) for d in (1, 2, 4, 8)]
    spatial = [m for m in net.spatial.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in spatial] == [(40, 50, (k, 1)) for k in (128, 64, 42, 32)]
    assert net.head[0].in_features == 50 * 1 * 10  # 64 x 220 -> 4 stride-2 downsamplings -> final 3x3 conv
    assert (net.head[0].out_features, net.head[2].out_features) == (1000, 40)
    x = torch.zeros(1, 1, 128, 440)
    assert net.temporal(x).shape == (1, 40, 128, 220)


def test_dreamdiffusion_shapes():
    from baselines.dreamdiffusion import ConditioningHead, EEGMAE

    mae = EEGMAE(128, 440, d_model=16, n_layers=1, n_heads=2, dec_dim=8, dec_layers=1, dec_heads=2)
    x = torch.randn(3, 128, 440)
    lat = mae.encode(x)
    assert lat.shape == (3, 110, 16)
    assert mae.patches(x).shape == (3, 110, 128 * 4)
    loss = mae.mae_loss(x, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    cond, clip = ConditioningHead(110, 16, 77, 64, 32)(lat)
    assert cond.shape == (3, 77, 64) and clip.shape == (3, 32)


def _loss_drops(net: torch.nn.Module, loss_fn, steps: int = 8, lr: float = 3e-3) -> tuple[float, float]:
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()

    def measure() -> float:
        torch.manual_seed(123)  # same dropout masks before and after
        with torch.no_grad():
            return float(loss_fn())

    before = measure()
    for step in range(steps):
        torch.manual_seed(step)
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, measure()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_training_steps_lower_the_loss(name):
    net = network(name, n_outputs=N_CLASSES)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 128, 440, generator=g), torch.randint(0, N_CLASSES, (16,), generator=g)
    before, after = _loss_drops(net, lambda: F.cross_entropy(net(x), y))
    assert after < before


def test_mae_training_lowers_the_reconstruction_loss():
    from baselines.dreamdiffusion import EEGMAE

    torch.manual_seed(0)
    mae = EEGMAE(128, 440, d_model=16, n_layers=1, n_heads=2, dec_dim=8, dec_layers=1, dec_heads=2)
    x = torch.randn(8, 128, 440, generator=torch.Generator().manual_seed(1))
    before, after = _loss_drops(mae, lambda: mae.mae_loss(x, generator=torch.Generator().manual_seed(5)), steps=10, lr=1e-2)
    assert after < before


# --------------------------------------------------------------------------------------------------
# Methods end to end on tiny TrialSets
# --------------------------------------------------------------------------------------------------


def fit_predict(name: str, data, backbones=None, seed: int = 0):
    sets, root = data
    method = get_method(name)()
    ctx = make_ctx(name, root, backbones, seed=seed, data_sets=sets)
    report = method.fit(sets["train"], sets["val"], ctx)
    with torch.no_grad():
        preds = method.predict(sets["test"].eeg.clone())
    return method, ctx, report, preds


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_fit_predict_is_seeded(name, data):
    _, _, report, p1 = fit_predict(name, data)
    _, _, _, p2 = fit_predict(name, data)
    n_test = len(data[0]["test"])
    assert p1.logits.shape == (n_test, N_CLASSES) and p1.cond is None
    assert torch.equal(p1.logits, p2.logits)
    assert 0 <= report["val_top1"] <= 1 and 1 <= report["best_epoch"] <= report["epochs"]
    import json

    json.dumps(report)  # JSON-safe fit report


def test_seed_changes_the_result(data):
    _, _, _, p0 = fit_predict("lstm", data, seed=0)
    _, _, _, p1 = fit_predict("lstm", data, seed=1)
    assert not torch.equal(p0.logits, p1.logits)


def test_fit_leaves_the_global_rng_alone(data):
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    fit_predict("eegnet", data)
    assert torch.equal(torch.rand(3), expected)


def test_classify_then_draw_generates_class_prompt_images(data, backbones):
    method, ctx, _, preds = fit_predict("lstm", data, backbones)
    ctx.backbones = backbones
    images = method.generate(preds, ctx, seed=0)
    n = len(data[0]["test"])
    assert images["final"].dtype == np.uint8 and images["final"].shape == (n, 1, 32, 32, 3)
    assert preds.extra["prompts"] == [ctx.class_prompts[c] for c in preds.logits.argmax(1).tolist()]


def test_dreamdiffusion_end_to_end(data, backbones):
    import json

    method, ctx, report, p1 = fit_predict("dreamdiffusion", data, backbones)
    n = len(data[0]["test"])
    assert p1.logits.shape == (n, N_CLASSES)
    assert p1.cond.shape == (n, backbones.text_encoder.n_tokens, backbones.text_encoder.width)
    assert {"pretrain", "finetune", "probe"} <= set(report)
    json.dumps(report)
    images = method.generate(p1, ctx, seed=0)
    assert images["final"].dtype == np.uint8 and images["final"].shape == (n, 1, 32, 32, 3)
    _, _, _, p2 = fit_predict("dreamdiffusion", data, backbones)
    assert torch.equal(p1.logits, p2.logits) and torch.equal(p1.cond, p2.cond)


def test_dreamdiffusion_pooled_pretraining_is_shared_and_reproducible(data, tmp_path):
    """With ``pretrain_data = "all_subjects"`` the MAE pretrains on the unlabelled pool, once: a trial
    that loads the shared result predicts exactly what the trial that computed it predicted, and what a
    trial with a cache of its own predicts; the subject's own data gives another encoder.
    ``"subject_unlabelled"`` asks for the trial's subject's pool and shares it under its own key."""
    from dataclasses import replace

    from bench.methods.base import UnlabelledPool
    from bench.methods.training import SharedWork

    sets, root = data
    pool_x = torch.randn(24, 128, 440, generator=torch.Generator().manual_seed(5)).half()
    calls = []

    def load():
        calls.append(1)
        return pool_x[:16], pool_x[16:]

    pool = UnlabelledPool({"pool": "test"}, 16, 8, load)
    subject_pool = UnlabelledPool({"pool": "test", "subjects": [4]}, 12, 4, lambda: (pool_x[:12], pool_x[20:]))
    asked = []

    def pools(subject=0):
        asked.append(subject)
        return subject_pool if subject else pool

    def fit(cache, fraction=1.0, **options):
        spec = TrialSpec("dreamdiffusion", subject=4, fraction=fraction, options=tuple(options.items()))
        ctx = replace(make_ctx("dreamdiffusion", root), pretrain_pool=pools, shared=SharedWork(cache), spec=spec)
        method = get_method("dreamdiffusion")()
        torch.manual_seed(0)  # as run_trial seeds every trial
        report = method.fit(sets["train"], sets["val"], ctx)
        with torch.no_grad():
            return report, method.predict(sets["test"].eeg.clone()).logits

    first, l1 = fit(tmp_path / "a")
    again, l2 = fit(tmp_path / "a")
    alone, l3 = fit(tmp_path / "b")
    own, l4 = fit(tmp_path / "a", pretrain_data="subject")
    assert (first["pretrain"]["shared"], again["pretrain"]["shared"], alone["pretrain"]["shared"]) == ("computed", "loaded", "computed")
    assert first["pretrain"]["n_train"] == 16 and first["pretrain"]["data"] == "all_subjects" and len(calls) == 2
    assert first["pretrain"]["val_loss"] == again["pretrain"]["val_loss"] == alone["pretrain"]["val_loss"]
    assert torch.equal(l1, l2) and torch.equal(l1, l3)
    assert own["pretrain"]["data"] == "subject" and own["pretrain"]["n_train"] == len(sets["train"]) and not torch.equal(l1, l4)
    asked.clear()
    sub1, l5 = fit(tmp_path / "a", pretrain_data="subject_unlabelled")
    sub2, l6 = fit(tmp_path / "a", fraction=0.5, pretrain_data="subject_unlabelled")  # another fraction: the same pretraining, loaded
    assert asked == [4, 4] and (sub1["pretrain"]["shared"], sub2["pretrain"]["shared"]) == ("computed", "loaded")
    assert sub1["pretrain"]["data"] == "subject_unlabelled" and sub1["pretrain"]["n_train"] == 12 and sub1["pretrain"]["val_loss"] == sub2["pretrain"]["val_loss"]
    assert not torch.equal(l5, l1)
    with pytest.raises(ValueError, match="pretrain_data"):
        fit(tmp_path / "c", pretrain_data="everyone")


def test_dreamdiffusion_without_backbones_still_classifies(data):
    method, ctx, report, preds = fit_predict("dreamdiffusion", data)
    assert "finetune" not in report and preds.cond is None
    assert preds.logits.shape == (len(data[0]["test"]), N_CLASSES)


# --------------------------------------------------------------------------------------------------
# Reference rows
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REFERENCE_ROWS)
def test_reference_rows(name, data, backbones):
    sets, root = data
    test = sets["test"]
    method = get_method(name)()
    ctx = make_ctx(name, root, backbones, data_sets=sets)
    method.fit(sets["train"], sets["val"], ctx)
    with pytest.raises(RuntimeError, match="predict_reference"):
        method.predict(test.eeg)
    preds = method.predict_reference(test.label.clone(), list(test.image_names))
    assert isinstance(preds, Predictions) and preds.logits.shape == (len(test), N_CLASSES)
    drive = preds.logits.argmax(1)
    if name == "brainvis_stage2_random":
        again = method.predict_reference(test.label.clone(), list(test.image_names))
        assert torch.equal(again.logits, preds.logits)  # seeded
    else:
        assert torch.equal(drive, test.label)
    images = method.generate(preds, ctx, seed=0)
    assert images["final"].dtype == np.uint8 and images["final"].shape == (len(test), 1, 32, 32, 3)
    assert len(preds.extra["prompts"]) == len(test)
    if name == "oracle_caption":
        gt = np.stack([np.asarray(Image.open(image_path(root, n)).convert("RGB")) for n in test.image_names])
        assert preds.extra["prompts"] == backbones.captioner.caption(gt)
        assert preds.cond.shape == (len(test), 77, 64)
    else:
        assert preds.extra["prompts"] == [ctx.class_prompts[c] for c in drive.tolist()]


def test_random_reference_row_draws_per_seed_and_subject(data):
    """brainvis_stage2_random: reproducible for a (seed, subject), independent across subjects and seeds."""
    sets, root = data
    labels = torch.zeros(200, dtype=torch.long)

    def drive(seed: int, subject: int) -> torch.Tensor:
        method = get_method("brainvis_stage2_random")()
        ctx = make_ctx("brainvis_stage2_random", root, seed=seed)
        ctx.spec = TrialSpec("brainvis_stage2_random", subject=subject, seed=seed)
        method.fit(sets["train"], sets["val"], ctx)
        return method.driving_labels(labels)

    a = drive(0, 1)
    assert torch.equal(a, drive(0, 1))
    for other in (drive(0, 2), drive(1, 1)):
        assert (a == other).float().mean() < 0.4  # independent draws agree 1/N_CLASSES (1/4) of the time


def test_oracle_label_matches_stage2_true_images(data, backbones):
    """Both draw the true class prompt with the stage-2 settings (stage 1 off): identical images."""
    sets, root = data
    test = sets["test"]
    out = {}
    for name in ("oracle_label", "brainvis_stage2_true"):
        method = get_method(name)()
        ctx = make_ctx(name, root, backbones, data_sets=sets)
        method.fit(sets["train"], sets["val"], ctx)
        out[name] = method.generate(method.predict_reference(test.label, list(test.image_names)), ctx, seed=3)["final"]
    np.testing.assert_array_equal(out["oracle_label"], out["brainvis_stage2_true"])
