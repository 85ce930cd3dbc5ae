"""Inception Score (Salimans et al. 2016), the formula torch-fidelity implements.

``IS = exp(E_x KL(p(y|x) || p(y)))`` per split, with ``p(y)`` the split's mean prediction;
value and std are the mean and (population) std over splits. Computed in float64 from
logits with log-softmax. Score the *generated images only* (the published script once mixed
ground-truth images into the scored folder).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax

from ._util import as_float_matrix
from .registry import register

__all__ = ["inception_score_from_logits", "inception_score_torch_fidelity"]


@register("inception_score", higher_is_better=True, label="IS", fmt="{:.2f}", level="set", interval="jackknife_log", rank=40,
          description="Inception Score exp(E KL(p(y|x) || p(y))) from classifier logits of generated images")
def inception_score_from_logits(logits: Any, splits: int = 10, shuffle: bool = False, seed: int = 2020) -> dict:
    """Inception Score from logits [M, C] of the generated images.

    Split ``s`` covers rows ``[s*M//splits, (s+1)*M//splits)``. ``shuffle=True`` first permutes the
    rows with ``np.random.RandomState(seed).permutation(M)``, exactly as torch-fidelity does
    (its defaults: shuffle on, seed 2020), which makes the two agree for any ``splits``.

    Returns value, std, splits, count, num_classes, per_split, shuffle, seed.
    """
    L = as_float_matrix(logits, name="logits")
    M, C = L.shape
    if int(splits) != splits or not 1 <= splits <= M:
        raise ValueError(f"splits must be an integer in [1, {M}] (number of images), got {splits!r}")
    splits = int(splits)
    if shuffle:
        L = L[np.random.RandomState(seed).permutation(M)]
    log_p = log_softmax(L, axis=1)
    p = np.exp(log_p)
    scores = []
    for s in range(splits):
        lo, hi = s * M // splits, (s + 1) * M // splits
        p_s, log_p_s = p[lo:hi], log_p[lo:hi]
        with np.errstate(divide="ignore"):
            log_q = np.log(p_s.mean(axis=0, keepdims=True))
        # p * (log p - log q), with 0 * (...) = 0 where p underflows to 0
        kl = np.where(p_s > 0, p_s * (log_p_s - log_q), 0.0).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return {
        "value": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "splits": splits,
        "count": int(M),
        "num_classes": int(C),
        "per_split": scores,
        "shuffle": bool(shuffle),
        "seed": int(seed) if shuffle else None,
    }


def inception_score_torch_fidelity(
    images_uint8: Any,
    splits: int = 10,
    feature_extractor: str | None = None,
    feature_extractor_weights_path: str | None = None,
    feature_layer_isc: str | None = None,
    batch_size: int = 64,
    cuda: bool = False,
    seed: int = 2020,
    **kwargs: Any,
) -> dict:
    """IS via ``torch_fidelity.calculate_metrics(input1=..., isc=True)`` on uint8 [M, 3, H, W] images.

    ``feature_extractor=None`` means torch-fidelity's default ``"inception-v3-compat"`` (needs its
    weights: ``feature_extractor_weights_path`` or ``$TORCH_HOME/hub/checkpoints``; it downloads
    otherwise). Any extractor registered with ``torch_fidelity.register_feature_extractor`` works.
    Extra ``kwargs`` go to ``calculate_metrics``. Runs with cache off, quiet, and no worker processes.

    Returns value, std, splits, count, feature_extractor, feature_layer, backend, version, seed.
    """
    from . import _fidelity

    imgs = _fidelity.as_uint8_images(images_uint8, name="images_uint8")
    if int(splits) != splits or not 1 <= splits <= imgs.shape[0]:
        raise ValueError(f"splits must be an integer in [1, {imgs.shape[0]}] (number of images), got {splits!r}")
    opts: dict[str, Any] = dict(
        input1=_fidelity.UInt8ImageDataset(imgs), isc=True, isc_splits=int(splits), batch_size=batch_size,
        cuda=cuda, rng_seed=seed, feature_extractor_weights_path=feature_extractor_weights_path,
    )
    if feature_extractor is not None:
        opts["feature_extractor"] = feature_extractor
    if feature_layer_isc is not None:
        opts["feature_layer_isc"] = feature_layer_isc
    opts.update(kwargs)
    out = _fidelity.calculate(**opts)
    return {
        "value": float(out["inception_score_mean"]),
        "std": float(out["inception_score_std"]),
        "splits": int(splits),
        "count": int(imgs.shape[0]),
        "feature_extractor": feature_extractor or "inception-v3-compat",
        "feature_layer": feature_layer_isc or "default",
        "backend": "torch-fidelity",
        "version": _fidelity.version(),
        "seed": int(seed),
    }
