"""Inception Score, FID, SSIM and CLIP similarity vs independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import entropy
from skimage.metrics import structural_similarity

from bench.metrics import (
    SSIM_SETTINGS,
    clip_similarity,
    fid,
    fid_from_features,
    frechet_distance,
    inception_score_from_logits,
    ssim,
)

# ----------------------------------------------------------------------------- Inception Score


def textbook_is(logits: np.ndarray, splits: int) -> list[float]:
    """exp(mean_x KL(p(y|x) || p(y))) per split, written out with scipy.stats.entropy."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    M = len(p)
    out = []
    for s in range(splits):
        part = p[s * M // splits:(s + 1) * M // splits]
        py = part.mean(0)
        out.append(float(np.exp(np.mean([entropy(px, py) for px in part]))))
    return out


@pytest.mark.parametrize("splits", [1, 4])
def test_inception_score_equals_textbook_formula(splits):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(200, 15))
    r = inception_score_from_logits(logits, splits=splits)
    ref = textbook_is(logits, splits)
    np.testing.assert_allclose(r["per_split"], ref, rtol=1e-10)
    assert r["value"] == pytest.approx(np.mean(ref), rel=1e-10)
    assert r["std"] == pytest.approx(np.std(ref), rel=1e-8, abs=1e-12)
    assert r["splits"] == splits and r["count"] == 200 and r["num_classes"] == 15
    json.dumps(r, allow_nan=False)


def test_inception_score_matches_torch_fidelity_formula():
    torch = pytest.importorskip("torch")
    from torch_fidelity.metric_isc import isc_features_to_metric

    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(123, 10))
    ref = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    r = inception_score_from_logits(logits, splits=10, shuffle=True, seed=2020)
    assert r["value"] == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert r["std"] == pytest.approx(ref["inception_score_std"], rel=1e-8)


def test_inception_score_limits():
    C = 8
    onehot = np.tile(np.eye(C), (5, 1)) * 200.0  # confident, balanced
    assert inception_score_from_logits(onehot, splits=1)["value"] == pytest.approx(C, rel=1e-12)
    same = np.tile(np.eye(C)[0] * 200.0, (40, 1))  # confident, collapsed to one class
    assert inception_score_from_logits(same, splits=1)["value"] == pytest.approx(1.0, abs=1e-12)
    uniform = np.zeros((40, C))
    assert inception_score_from_logits(uniform, splits=2)["value"] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="splits"):
        inception_score_from_logits(uniform, splits=41)


# ----------------------------------------------------------------------------- FID


def closed_form_fid(mu1, s1, mu2, s2) -> float:
    """|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) via symmetric eigendecompositions."""
    w, V = np.linalg.eigh(s1)
    r1 = V @ np.diag(np.sqrt(np.clip(w, 0, None))) @ V.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


def test_fid_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    assert abs(fid_from_features(A, A)) < 1e-8
    assert abs(fid_from_features(A, A[::-1].copy())) < 1e-8  # order does not matter
    r = fid(A, A)
    assert abs(r["value"]) < 1e-8 and r["count_a"] == 500 and r["dim"] == 16 and not r["rank_deficient"]
    json.dumps(r, allow_nan=False)


def test_fid_mean_shift_is_squared_norm():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(300, 6))
    c = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert fid_from_features(A, A + c) == pytest.approx(float(c @ c), rel=1e-8)


def test_fid_equals_closed_form_on_sample_statistics_and_torch_fidelity():
    torch = pytest.importorskip("torch")
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(2)
    A = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))
    B = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) + 0.7
    ref = closed_form_fid(A.mean(0), np.cov(A, rowvar=False), B.mean(0), np.cov(B, rowvar=False))
    ours = fid_from_features(A, B)
    assert ours == pytest.approx(ref, rel=1e-8)
    tf = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(A)),
                                  fid_features_to_statistics(torch.from_numpy(B)), verbose=False)
    assert ours == pytest.approx(tf["frechet_inception_distance"], rel=1e-8)


def test_fid_converges_to_gaussian_closed_form():
    rng = np.random.default_rng(3)
    D = 4
    mu1, mu2 = np.zeros(D), np.array([0.5, -0.3, 0.0, 1.0])
    L1, L2 = rng.normal(size=(D, D)), rng.normal(size=(D, D))
    s1, s2 = L1 @ L1.T + 0.1 * np.eye(D), L2 @ L2.T + 0.1 * np.eye(D)
    truth = closed_form_fid(mu1, s1, mu2, s2)
    N = 100_000
    A = rng.multivariate_normal(mu1, s1, size=N)
    B = rng.multivariate_normal(mu2, s2, size=N)
    assert fid_from_features(A, B) == pytest.approx(truth, rel=0.03)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(truth, rel=1e-8)


def test_fid_validation():
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="dims differ"):
        fid_from_features(np.zeros((4, 3)), np.zeros((5, 2)))


# ----------------------------------------------------------------------------- SSIM


def _images(rng, m=4, h=32, w=40):
    return rng.integers(0, 256, size=(m, h, w, 3), dtype=np.uint8)


def test_ssim_equals_direct_skimage():
    rng = np.random.default_rng(0)
    gt = _images(rng)
    gen = np.clip(gt.astype(int) + rng.integers(-40, 40, size=gt.shape), 0, 255).astype(np.uint8)
    r = ssim(gt, gen)
    direct = [structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in zip(gt, gen)]
    np.testing.assert_allclose(r["per_pair"], direct, rtol=0, atol=1e-12)
    assert r["value"] == pytest.approx(np.mean(direct), abs=1e-12)
    assert r["resolution"] == [32, 40] and r["data_range"] == 255 and r["win_size"] == 7
    assert r["gaussian_weights"] is False and r["count"] == 4
    assert SSIM_SETTINGS["data_range"] == 255
    json.dumps(r, allow_nan=False)


def test_ssim_identical_is_one():
    gt = _images(np.random.default_rng(1))
    r = ssim(gt, gt.copy())
    assert r["value"] == pytest.approx(1.0, abs=1e-12)
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in r["per_pair"])


def test_ssim_refuses_bad_inputs():
    gt = _images(np.random.default_rng(2))
    with pytest.raises(ValueError, match="uint8"):
        ssim(gt.astype(np.float32), gt)
    with pytest.raises(ValueError, match="shape mismatch"):
        ssim(gt, gt[:, :16])
    with pytest.raises(ValueError, match="channel-last"):
        ssim(gt.transpose(0, 3, 1, 2), gt.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="7x7"):
        ssim(gt[:, :5, :5], gt[:, :5, :5])


def test_published_ssim_bug_inflates_unrelated_images():
    """Published code: ImageNet-normalised float tensors with data_range=255. The stabilising
    constants (0.01*255)^2 and (0.03*255)^2 then dwarf the signal variance (~1), so unrelated
    images look almost identical. Our uint8 protocol does not have this problem."""
    rng = np.random.default_rng(3)
    gt, gen = _images(rng, m=3), _images(rng, m=3)  # unrelated noise images
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])

    def normalise(x):
        return ((x / 255.0 - mean) / std).astype(np.float32)

    buggy = np.mean([structural_similarity(normalise(a), normalise(b), channel_axis=-1, data_range=255)
                     for a, b in zip(gt, gen)])
    ours = ssim(gt, gen)["value"]
    assert buggy > 0.9
    assert abs(ours) < 0.1
    with pytest.raises(ValueError, match="uint8"):  # the buggy input is refused outright
        ssim(normalise(gt), normalise(gen))


# ----------------------------------------------------------------------------- CLIP similarity


def test_clip_similarity():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(10, 32))
    B = rng.normal(size=(10, 32))
    assert clip_similarity(A, A)["value"] == pytest.approx(1.0, abs=1e-12)
    manual = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(A, B)]
    r = clip_similarity(A, B)
    np.testing.assert_allclose(r["per_pair"], manual, atol=1e-12)
    assert r["value"] == pytest.approx(np.mean(manual), abs=1e-12)
    scales = rng.uniform(0.1, 10.0, size=(10, 1))
    assert clip_similarity(A * scales, B * 3.0)["per_pair"] == pytest.approx(r["per_pair"], abs=1e-12)
    assert clip_similarity(A, -A)["value"] == pytest.approx(-1.0, abs=1e-12)
    assert r["count"] == 10 and r["dim"] == 32
    json.dumps(r, allow_nan=False)


def test_clip_similarity_validation_and_torch_input():
    torch = pytest.importorskip("torch")
    A = np.ones((2, 4))
    with pytest.raises(ValueError, match="zero-norm"):
        clip_similarity(A, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="shape mismatch"):
        clip_similarity(A, np.ones((3, 4)))
    r = clip_similarity(torch.ones(2, 4, dtype=torch.float16), torch.ones(2, 4))
    assert r["value"] == pytest.approx(1.0)
