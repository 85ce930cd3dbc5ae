"""Frechet distance between two feature sets (FID when the features are Inception-2048).

``FID = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` with sample means and unbiased
covariances (``np.cov``), in float64. ``(S_a S_b)^{1/2}`` comes from ``scipy.linalg.sqrtm``;
as in the TTUR / pytorch-fid reference code, a non-finite result is retried with ``eps * I``
added to both covariances, and a small imaginary part (numerical noise) is dropped (a large
one raises). Standard protocol: torch-fidelity's 2048-d Inception features of the generated
images vs the matched ground-truth test images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from ._util import as_float_matrix
from .registry import register

__all__ = ["feature_statistics", "frechet_distance", "fid_from_features", "fid", "fid_torch_fidelity"]


def feature_statistics(feats: Any, *, name: str = "feats") -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of features [M, D] (M >= 2), float64."""
    X = as_float_matrix(feats, name=name)
    if X.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 feature rows for a covariance, got {X.shape[0]}")
    return X.mean(axis=0), np.atleast_2d(np.cov(X, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag > 1e-3 * max(1.0, float(np.max(np.abs(np.diagonal(covmean).real)))):
            raise ValueError(f"sqrtm(S_a S_b) has a large imaginary component ({max_imag:.3g}); features degenerate?")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return value


def fid_from_features(feats_a: Any, feats_b: Any, eps: float = 1e-6) -> float:
    """Frechet distance between feature sets [M, D] and [N, D] (M, N >= 2)."""
    mu_a, s_a = feature_statistics(feats_a, name="feats_a")
    mu_b, s_b = feature_statistics(feats_b, name="feats_b")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dims differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    return frechet_distance(mu_a, s_a, mu_b, s_b, eps=eps)


@register("fid", higher_is_better=False, label="FID", fmt="{:.1f}", level="set", interval="jackknife_log", rank=70,
          description="Frechet distance between feature sets (FID on Inception-2048 features); lower is better")
def fid(feats_a: Any, feats_b: Any, eps: float = 1e-6) -> dict:
    """Dict form of :func:`fid_from_features`: value, count_a, count_b, dim, rank_deficient
    (True if a set has no more rows than dims, so its covariance is singular and FID is biased)."""
    A = as_float_matrix(feats_a, name="feats_a")
    B = as_float_matrix(feats_b, name="feats_b")
    value = fid_from_features(A, B, eps=eps)
    return {
        "value": value,
        "count_a": int(A.shape[0]),
        "count_b": int(B.shape[0]),
        "dim": int(A.shape[1]),
        "rank_deficient": bool(min(A.shape[0], B.shape[0]) <= A.shape[1]),
    }


def fid_torch_fidelity(
    images_a: Any,
    images_b: Any,
    feature_extractor: str | None = None,
    feature_extractor_weights_path: str | None = None,
    feature_layer_fid: str | None = None,
    batch_size: int = 64,
    cuda: bool = False,
    **kwargs: Any,
) -> dict:
    """FID via ``torch_fidelity.calculate_metrics(input1=a, input2=b, fid=True)`` on uint8
    [M, 3, H, W] image tensors. ``feature_extractor=None`` is torch-fidelity's Inception (weights
    needed offline, see :func:`~bench.metrics.inception_score.inception_score_torch_fidelity`).

    Returns value, count_a, count_b, feature_extractor, feature_layer, backend, version.
    """
    from . import _fidelity

    a = _fidelity.as_uint8_images(images_a, name="images_a")
    b = _fidelity.as_uint8_images(images_b, name="images_b")
    opts: dict[str, Any] = dict(
        input1=_fidelity.UInt8ImageDataset(a), input2=_fidelity.UInt8ImageDataset(b), fid=True,
        batch_size=batch_size, cuda=cuda, feature_extractor_weights_path=feature_extractor_weights_path,
    )
    if feature_extractor is not None:
        opts["feature_extractor"] = feature_extractor
    if feature_layer_fid is not None:
        opts["feature_layer_fid"] = feature_layer_fid
    opts.update(kwargs)
    out = _fidelity.calculate(**opts)
    return {
        "value": float(out["frechet_inception_distance"]),
        "count_a": int(a.shape[0]),
        "count_b": int(b.shape[0]),
        "feature_extractor": feature_extractor or "inception-v3-compat",
        "feature_layer": feature_layer_fid or "default",
        "backend": "torch-fidelity",
        "version": _fidelity.version(),
    }
