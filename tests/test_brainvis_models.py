"""BrainVis networks: shapes, published sizes, masking, EMA, pretraining, ablations, alignment loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brainvis.models import AlignmentNet, BrainVisEncoder, FreqEncoder, FusionClassifier, TimeEncoder, alignment_loss

torch.set_num_threads(1)

SMALL_TIME = dict(d_model=32, n_layers=2, n_heads=2, d_ffn=64, n_regressor_layers=1, n_codewords=16)
SMALL_ENC = dict(d_model=32, n_layers=2, n_heads=2, d_ffn=64, hidden=16)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def eeg() -> torch.Tensor:
    return torch.randn(2, 128, 440, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------------------
# Shapes (small sizes, real input shape)
# --------------------------------------------------------------------------------------------------


def test_time_encoder_shapes(eeg):
    enc = TimeEncoder(**SMALL_TIME, n_outputs=40)
    assert enc.n_units == 110
    assert enc.backbone.embed(eeg).shape == (2, 110, 32)
    assert enc(eeg).shape == (2, 32)
    assert enc.classify(eeg).shape == (2, 40)
    out = enc.pretrain_loss(eeg)
    assert set(out) == {"loss", "mse", "ce"} and all(v.ndim == 0 for v in out.values())
    with pytest.raises(ValueError, match=r"\[B, 128, 440\]"):
        enc(eeg.transpose(1, 2))


def test_freq_encoder_shapes_and_spectrum(eeg):
    enc = FreqEncoder(hidden=16, n_bins=64)
    spec = enc.spectrum(eeg)
    assert spec.shape == (2, 64, 128)
    assert enc(eeg).shape == (2, 16) and (enc(eeg) >= 0).all()
    assert enc.classify(eeg).shape == (2, 40)
    # Independent computation: numpy full FFT amplitudes of bins 1..220 (bin 220 = Nyquist).
    full = FreqEncoder(hidden=16)
    expected = np.abs(np.fft.fft(eeg.double().numpy(), axis=2))[:, :, 1:221].transpose(0, 2, 1)
    np.testing.assert_allclose(full.spectrum(eeg).numpy(), expected, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="n_bins"):
        FreqEncoder(n_bins=221)


def test_brainvis_encoder_and_alignment_shapes(eeg):
    enc = BrainVisEncoder(**SMALL_ENC)
    out = enc(eeg)
    assert out["features"].shape == (2, 48) and out["logits"].shape == (2, 40)
    align = AlignmentNet(in_features=48 + 40, hidden=64, bottleneck=16, n_tokens=4, width=8)
    assert align(out["features"], out["logits"]).shape == (2, 4, 8)
    assert align(torch.cat([out["features"], out["logits"]], 1)).shape == (2, 4, 8)
    with pytest.raises(ValueError):
        align(out["features"])


# --------------------------------------------------------------------------------------------------
# Published sizes
# --------------------------------------------------------------------------------------------------


def test_freq_encoder_paper_parameter_count():
    # 153,768 = LSTM 4*(128*128 + 128*128 + 128 + 128) = 132,096 + Linear(128,128) 16,512
    #           + classifier head Linear(128,40) 5,160 (the count includes the head).
    enc = FreqEncoder()
    assert n_params(enc.lstm) == 132_096
    assert n_params(enc.fc) == 16_512
    assert n_params(enc.head) == 5_160
    assert n_params(enc) == 153_768
    assert n_params(FreqEncoder(n_outputs=None)) == 148_608


def test_paper_size_encoder_and_alignment_train_step(eeg):
    torch.manual_seed(0)
    enc = BrainVisEncoder()  # d=1024, 8 layers, 16 heads, FFN 4096, dropout 0.2; LSTM 128
    align = AlignmentNet()  # 1192 -> 4096/1024 residual tanh -> 77 x 768
    assert enc.n_features == 1152 and align.in_features == 1192
    assert len(enc.time_encoder.backbone.encoder.layers) == 8
    layer = enc.time_encoder.backbone.encoder.layers[0]
    assert layer.self_attn.num_heads == 16 and layer.linear1.out_features == 4096
    assert n_params(align) == (
        1192 * 4096 + 4096 + 2 * (4096 * 1024 + 1024) + 2 * (1024 * 4096 + 4096) + 4096 * 77 * 768 + 77 * 768
    )
    out = enc(eeg)
    pred = align(out["features"], out["logits"])
    assert pred.shape == (2, 77, 768)
    loss = alignment_loss(pred, torch.randn_like(pred), torch.randn_like(pred), w=0.5, use_mse=True)["loss"]
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    assert all(p.grad is not None for p in align.parameters())


def test_paper_size_pretrain_step(eeg):
    torch.manual_seed(0)
    enc = TimeEncoder()  # 1024-d, 8 layers, mask 0.75, EMA 0.99, 4 regressor layers, 660 codewords
    assert (enc.n_units, enc.n_masked, enc.n_visible) == (110, 82, 28)
    assert len(enc.regressor) == 4 and enc.codebook.out_features == 660
    out = enc.pretrain_loss(eeg, generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    enc.update_ema()


# --------------------------------------------------------------------------------------------------
# Pretraining: masking, EMA, loss
# --------------------------------------------------------------------------------------------------


def test_masking_82_masked_28_visible():
    enc = TimeEncoder(**SMALL_TIME)
    assert (enc.n_units, enc.n_masked, enc.n_visible) == (110, 82, 28)
    visible, masked = enc.random_masking(5, generator=torch.Generator().manual_seed(3))
    assert visible.shape == (5, 28) and masked.shape == (5, 82)
    for v, m in zip(visible, masked):
        assert sorted(v.tolist() + m.tolist()) == list(range(110))
    again = enc.random_masking(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(visible, again[0]) and torch.equal(masked, again[1])
    assert not torch.equal(masked[0], masked[1])  # per-sample masks


def test_ema_momentum_rule(eeg):
    torch.manual_seed(0)
    enc = TimeEncoder(**SMALL_TIME, momentum=0.99)
    assert all(not p.requires_grad for p in enc.ema_backbone.parameters())
    online = dict(enc.backbone.named_parameters())
    for name, p in enc.ema_backbone.named_parameters():  # starts as an exact copy
        assert torch.equal(p, online[name])
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.5)
    enc.pretrain_loss(eeg)["loss"].backward()
    assert all(p.grad is None for p in enc.ema_backbone.parameters())
    opt.step()
    before = {n: p.detach().clone() for n, p in enc.ema_backbone.named_parameters()}
    enc.update_ema()
    moved = 0
    for name, p in enc.ema_backbone.named_parameters():
        expected = 0.99 * before[name] + 0.01 * online[name].detach()
        torch.testing.assert_close(p, expected, rtol=1e-6, atol=1e-7)
        gap_before = (before[name] - online[name]).norm()
        if gap_before > 0:
            assert (p - online[name]).norm() < gap_before
            moved += 1
    assert moved > 0
    enc.train()
    assert enc.training and not enc.ema_backbone.training  # targets never use dropout


@pytest.mark.parametrize(
    "variant",
    [{}, dict(target_input="masked", codeword_source="patch"), dict(tie_codebook=False, gumbel=False)],
    ids=["brief", "official", "untied"],
)
def test_pretrain_loss_decreases(variant):
    torch.manual_seed(0)
    enc = TimeEncoder(**SMALL_TIME, dropout=0.0, **variant)
    x = torch.randn(4, 128, 440, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam([p for p in enc.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(20):
        out = enc.pretrain_loss(x, generator=torch.Generator().manual_seed(2))  # same mask each step
        expected = 4.0 * out["mse"] + 2.0 * out["ce"]
        torch.testing.assert_close(out["loss"].detach(), expected)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        enc.update_ema()
        losses.append(out["loss"].item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0]


def test_signal_only_pretext_is_a_masked_autoencoder():
    """Latent weights 0: the loss is the raw-signal MSE of the masked patches alone, checked against the
    patches cut by hand; the EMA targets are not read; no target at all is refused."""
    torch.manual_seed(0)
    enc = TimeEncoder(**SMALL_TIME, dropout=0.0, mse_weight=0.0, ce_weight=0.0, signal_weight=1.0)
    x = torch.randn(3, 128, 440, generator=torch.Generator().manual_seed(1))
    for p in enc.ema_backbone.parameters():
        p.data.fill_(float("nan"))  # a latent target would turn the loss into nan
    out = enc.pretrain_loss(x, generator=torch.Generator().manual_seed(2))
    assert set(out) == {"loss", "signal"} and torch.isfinite(out["loss"])
    # the same masks and predictions, by hand
    _, masked = enc.random_masking(3, generator=torch.Generator().manual_seed(2))
    units = enc.backbone.embed(x) + enc.backbone.pos
    visible = torch.stack([torch.tensor(sorted(set(range(enc.n_units)) - set(m.tolist()))) for m in masked])
    memory = enc.backbone.encoder(torch.stack([units[b, visible[b]] for b in range(3)]))
    predicted = enc.mask_token + enc.backbone.pos[0, masked]
    for block in enc.regressor:
        predicted = block(predicted, memory)
    p = enc.patch_size
    target = torch.stack([torch.stack([x[b, :, u * p : (u + 1) * p].reshape(-1) for u in masked[b].tolist()]) for b in range(3)])
    torch.testing.assert_close(out["loss"], F.mse_loss(enc.signal_decoder(predicted), target))
    with pytest.raises(ValueError, match="needs a target"):
        TimeEncoder(**SMALL_TIME, mse_weight=0.0, ce_weight=0.0)


def test_pretraining_parts_optional(eeg):
    enc = TimeEncoder(**SMALL_TIME, pretraining=False)
    assert not any(name.startswith(("ema_", "regressor", "codebook")) for name, _ in enc.named_parameters())
    assert enc(eeg).shape == (2, 32)
    with pytest.raises(RuntimeError, match="pretraining=False"):
        enc.pretrain_loss(eeg)


# --------------------------------------------------------------------------------------------------
# Ablation switches
# --------------------------------------------------------------------------------------------------


def test_ablation_switches(eeg):
    torch.manual_seed(0)
    full = BrainVisEncoder(**SMALL_ENC)
    torch.manual_seed(0)
    no_freq = BrainVisEncoder(**SMALL_ENC, use_freq=False)
    no_time = BrainVisEncoder(**SMALL_ENC, use_time=False)

    assert no_time.time_encoder is None
    assert not any(name.startswith("time_encoder") for name, _ in no_time.named_parameters())
    assert no_time.fusion.fc.in_features == 16 and no_time(eeg)["features"].shape == (2, 16)
    assert no_freq.freq_encoder is None
    assert no_freq.fusion.fc.in_features == 32 and no_freq(eeg)["features"].shape == (2, 32)

    # The remaining branch is untouched: same parameters -> same features as in the full model.
    no_time.freq_encoder.load_state_dict(full.freq_encoder.state_dict())
    full.eval(), no_time.eval(), no_freq.eval()
    with torch.no_grad():
        feats = full(eeg)["features"]
        torch.testing.assert_close(no_freq(eeg)["features"], feats[:, :32])
        torch.testing.assert_close(no_time(eeg)["features"], feats[:, 32:])
    for model in (no_time, no_freq):  # everything built is used
        model.train()
        model(eeg)["logits"].sum().backward()
        assert all(p.grad is not None for p in model.parameters())

    with pytest.raises(ValueError, match="at least one"):
        BrainVisEncoder(**SMALL_ENC, use_time=False, use_freq=False)
    with pytest.raises(ValueError, match="at least one"):
        FusionClassifier(use_time=False, use_freq=False)
    fusion = FusionClassifier(time_features=32, freq_features=16, use_freq=False)
    with pytest.raises(ValueError, match="use_freq=False"):
        fusion(torch.zeros(2, 32), torch.zeros(2, 16))


def test_encoder_accepts_pretrained_branches(eeg):
    time_enc = TimeEncoder(**SMALL_TIME)
    freq_enc = FreqEncoder(hidden=16)
    enc = BrainVisEncoder(time_encoder=time_enc, freq_encoder=freq_enc)
    assert enc.time_encoder is time_enc and enc.freq_encoder is freq_enc and enc.n_features == 48
    assert enc(eeg)["logits"].shape == (2, 40)


# --------------------------------------------------------------------------------------------------
# Alignment loss
# --------------------------------------------------------------------------------------------------


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean()


def test_alignment_loss_weights():
    g = torch.Generator().manual_seed(0)
    pred, c_label, c_cap = (torch.randn(3, 4, 8, generator=g) for _ in range(3))
    cos_l, cos_c = _cos(pred, c_label), _cos(pred, c_cap)
    close = dict(rtol=1e-5, atol=1e-6)

    out0 = alignment_loss(pred, c_label, c_cap, w=0.0)
    assert math.isclose(out0["loss"].item(), 1 - cos_l.item(), rel_tol=1e-5, abs_tol=1e-6)
    assert math.isclose(alignment_loss(pred, c_label, c_cap, w=1.0)["loss"].item(), 1 - cos_c.item(), rel_tol=1e-5)
    half = alignment_loss(pred, c_label, c_cap, w=0.5)["loss"].item()
    assert math.isclose(half, (2 - cos_c.item() - cos_l.item()) / 2, rel_tol=1e-5)  # paper Eq. 4 / 2
    torch.testing.assert_close(out0["cos_label"].double(), cos_l, **close)
    torch.testing.assert_close(out0["cos_cap"].double(), cos_c, **close)

    mse = alignment_loss(pred, c_label, c_cap, w=0.25, use_mse=True)
    expected = 0.75 * (1 - cos_l) + 0.25 * (1 - cos_c)
    expected = expected + 0.75 * ((pred - c_label) ** 2).mean() + 0.25 * ((pred - c_cap) ** 2).mean()
    torch.testing.assert_close(mse["loss"].double(), expected.double(), **close)

    assert alignment_loss(c_label, c_label, c_cap, w=0.0)["loss"].abs().item() < 1e-6
    for bad in (-0.1, 1.1, float("nan"), "0.5", None):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            alignment_loss(pred, c_label, c_cap, w=bad)
    with pytest.raises(ValueError, match="shape"):
        alignment_loss(pred, c_label[:, :2], c_cap, w=0.5)


# --------------------------------------------------------------------------------------------------
# Determinism and device
# --------------------------------------------------------------------------------------------------


def test_deterministic_given_seed(eeg):
    def run(seed: int):
        torch.manual_seed(seed)
        tenc = TimeEncoder(**SMALL_TIME)
        loss = tenc.pretrain_loss(eeg)["loss"]  # mask, Gumbel noise and dropout from the global RNG
        enc = BrainVisEncoder(**SMALL_ENC)
        out = enc(eeg)
        align = AlignmentNet(in_features=88, hidden=32, bottleneck=8, n_tokens=4, width=8)
        return loss, out["features"], out["logits"], align(out["features"], out["logits"])

    first, second, other = run(0), run(0), run(1)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_input_device(eeg):
    device = torch.device("cuda")
    x = eeg.to(device)
    tenc = TimeEncoder(**SMALL_TIME).to(device)
    assert tenc.pretrain_loss(x, generator=torch.Generator().manual_seed(0))["loss"].device.type == "cuda"
    assert tenc.pretrain_loss(x, generator=torch.Generator(device).manual_seed(0))["loss"].device.type == "cuda"
    out = BrainVisEncoder(**SMALL_ENC).to(device)(x)
    assert out["features"].device.type == "cuda" and out["logits"].device.type == "cuda"


def test_fusion_init_from_scaled_heads_sums_the_scaled_branch_logits():
    torch.manual_seed(0)
    fusion = FusionClassifier(time_features=6, freq_features=4, n_outputs=5)
    th, fh = torch.nn.Linear(6, 5), torch.nn.Linear(4, 5)
    fusion.init_from_heads(th, fh, scales=(0.5, 0.1))
    t, f = torch.randn(3, 6), torch.randn(3, 4)
    _, logits = fusion(t, f)
    with torch.no_grad():
        assert torch.allclose(logits, 0.5 * th(t) + 0.1 * fh(f), atol=1e-6)
