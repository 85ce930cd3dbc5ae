"""Set-level metrics with intervals, from one pass of features: IS, FID and KID.

Each takes the feature arrays the headline uses (torch-fidelity's extractor output: logits for IS,
features for FID/KID) and the test trial of every row (``groups``: a trial may have several generated
samples). The headline is torch-fidelity's own formula on those arrays; the interval is a jackknife
over test trials (see :mod:`bench.metrics.intervals`): IS and FID on the log scale, for their expected
value at this number of trials; KID (unbiased) on the raw scale, for the population value.

- IS: ``splits`` is a protocol setting. torch-fidelity shuffles the images (``RandomState(seed)``,
  seed 2020) and cuts ``splits`` chunks; a jackknife replicate removes one trial's images from their
  chunks (chunk membership fixed), so with ``splits=1`` it is the IS of the other trials' images.
- FID: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` (torch-fidelity's eigenvalue form for the
  headline); replicates use ``tr (S_a S_b)^{1/2} = ||A_c B_c^T||_* / sqrt((m-1)(n-1))`` (nuclear norm of
  the centred cross-Gram matrix), exact and cheap when a set has fewer rows than dimensions. The value
  is clipped at 0 (identical sets give about -1e-5) and ``n_below_dim`` flags sets with fewer rows than
  feature dimensions, where FID's small-sample bias can exceed its value: compare FIDs only at equal n.
  More than ``max_groups`` trials: delete-a-group jackknife over ``max_groups`` interleaved groups.
- KID: the unbiased MMD^2 U-statistic over test trials with torch-fidelity's polynomial kernel
  (degree 3, gamma 1/d, coef0 1): ``h(i, j)`` averages the kernel over trial i's and trial j's samples,
  pairs of a trial with itself (a reconstruction with its own ground truth) are left out, so the
  estimate is unbiased for paired data too. One subset: all trials (``subset_size`` = trials).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax, xlogy

from ._util import as_float_matrix, to_numpy
from .intervals import LEVEL, jackknife_interval
from .registry import register

__all__ = ["inception_score_with_ci", "fid_with_ci", "kid_with_ci", "trial_groups"]

MAX_JACKKNIFE_GROUPS = 200


def trial_groups(groups: Any, rows: int, name: str = "groups") -> np.ndarray:
    """Trial index per row, relabelled 0..n-1 in order of first appearance; ``None``: one row per trial."""
    if groups is None:
        return np.arange(rows)
    g = to_numpy(groups, name=name).ravel()
    if g.shape[0] != rows:
        raise ValueError(f"{name}: expected {rows} entries (one per row), got {g.shape[0]}")
    _, first, inverse = np.unique(g, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # label by first appearance
    return order[inverse].astype(np.int64)


def _need_trials(n: int, least: int, what: str) -> None:
    if n < least:
        raise ValueError(f"{what} needs at least {least} test trials, got {n}")


# --------------------------------------------------------------------------------------------------
# Inception Score
# --------------------------------------------------------------------------------------------------


@register("inception_score_ci", higher_is_better=True, label="IS", fmt="{:.2f}", level="set", interval="jackknife_log", show=False,
          description="Inception Score (torch-fidelity formula) with a log-scale jackknife interval over test trials")
def inception_score_with_ci(logits: Any, groups: Any = None, splits: int = 1, seed: int = 2020, level: float = LEVEL) -> dict:
    """IS of generated images from logits [M, C]; ``groups`` [M] gives each image's test trial.

    Returns value (torch-fidelity's ``inception_score_mean``), std over splits, ci_low, ci_high,
    ci_method, ci_level, se, splits, count, trials, num_classes, seed.
    """
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric

    L = as_float_matrix(logits, name="logits")
    M, C = L.shape
    g = trial_groups(groups, M)
    n = int(g.max()) + 1
    if int(splits) != splits or not 1 <= splits <= M:
        raise ValueError(f"splits must be an integer in [1, {M}] (number of images), got {splits!r}")
    splits = int(splits)
    head = isc_features_to_metric(torch.from_numpy(L), splits=splits, shuffle=True, rng_seed=seed)
    out = {"value": float(head["inception_score_mean"]), "std": float(head["inception_score_std"]), "ci_low": None, "ci_high": None,
           "ci_method": "jackknife_log", "ci_level": float(level), "splits": splits, "count": int(M), "trials": n, "num_classes": int(C), "seed": int(seed)}
    if n < 2:
        return out
    log_p = log_softmax(L, axis=1)
    p = np.exp(log_p)
    negent = np.sum(np.where(p > 0, p * log_p, 0.0), axis=1)
    pos = np.empty(M, dtype=np.int64)
    pos[np.random.RandomState(seed).permutation(M)] = np.arange(M)  # torch-fidelity's shuffled order
    split = np.searchsorted([(s + 1) * M // splits for s in range(splits)], pos, side="right")
    sum_p, sum_n, cnt = np.zeros((n, splits, C)), np.zeros((n, splits)), np.zeros((n, splits))
    np.add.at(sum_p, (g, split), p)
    np.add.at(sum_n, (g, split), negent)
    np.add.at(cnt, (g, split), 1.0)
    rest_c = cnt.sum(0)[None] - cnt  # [n, splits]: images left in each split without trial i
    if np.any(rest_c < 1):
        out["ci_note"] = "a split would be empty without one trial: no interval (use fewer splits)"
        return out
    pb = (sum_p.sum(0)[None] - sum_p) / rest_c[..., None]
    loo_split = np.exp((sum_n.sum(0)[None] - sum_n) / rest_c - xlogy(pb, pb).sum(-1))
    loo = loo_split.mean(1)
    out.update({k: v for k, v in jackknife_interval(out["value"], loo, level, log=True).items() if k != "n"})
    return out


# --------------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------------


def _trace_sqrt_product(A: np.ndarray, B: np.ndarray) -> float:
    """``tr (S_A S_B)^{1/2}`` of the sample covariances of rows of A and B (centred here)."""
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    m, n, d = A.shape[0], B.shape[0], A.shape[1]
    if min(m, n) <= d:  # nuclear norm of the m x n cross-Gram matrix
        s = np.linalg.svd(Ac @ Bc.T, compute_uv=False)
    else:  # eigenvalues of the d x d product (torch-fidelity's form)
        s = np.sqrt(np.clip(np.linalg.eigvals((Ac.T @ Ac) @ (Bc.T @ Bc)).real, 0.0, None))
    return float(s.sum() / np.sqrt((m - 1) * (n - 1)))


def _frechet(A: np.ndarray, B: np.ndarray) -> float:
    dm = A.mean(0) - B.mean(0)
    tr = np.sum((A - A.mean(0)) ** 2) / (A.shape[0] - 1) + np.sum((B - B.mean(0)) ** 2) / (B.shape[0] - 1)
    return float(dm @ dm + tr - 2.0 * _trace_sqrt_product(A, B))


def _jackknife_blocks(n: int, max_groups: int) -> np.ndarray:
    """Jackknife block of each trial: itself, or one of ``max_groups`` interleaved groups."""
    return np.arange(n) % max_groups if n > max_groups else np.arange(n)


@register("fid_ci", higher_is_better=False, label="FID", fmt="{:.1f}", level="set", interval="jackknife_log", show=False,
          description="FID (torch-fidelity formula, clipped at 0) with a log-scale jackknife interval over test trials")
def fid_with_ci(feats_gen: Any, feats_ref: Any, groups_gen: Any = None, groups_ref: Any = None, level: float = LEVEL,
                max_groups: int = MAX_JACKKNIFE_GROUPS) -> dict:
    """FID between generated features [M, D] and reference features [N, D] of the same test trials.

    ``groups_gen`` / ``groups_ref``: each row's test trial (default: row i is trial i; a trial may lack
    rows in one set). Returns value, value_unclipped, ci_low, ci_high, ci_method, ci_level, se,
    count_generated, count_reference, trials, dim, n_below_dim, jackknife_groups.
    """
    import torch
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    A = as_float_matrix(feats_gen, name="feats_gen")
    B = as_float_matrix(feats_ref, name="feats_ref")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"feature dims differ: {A.shape[1]} vs {B.shape[1]}")
    if min(A.shape[0], B.shape[0]) < 2:
        raise ValueError(f"FID needs at least 2 rows per set for a covariance, got {A.shape[0]} and {B.shape[0]}")
    ga, gb = _paired_groups(groups_gen, groups_ref, A.shape[0], B.shape[0])
    n = int(max(ga.max(), gb.max())) + 1
    raw = float(fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(A)),
                                         fid_features_to_statistics(torch.from_numpy(B)), False)["frechet_inception_distance"])
    value = max(0.0, raw)
    d = A.shape[1]
    out = {"value": value, "value_unclipped": raw, "ci_low": None, "ci_high": None, "ci_method": "jackknife_log", "ci_level": float(level),
           "count_generated": int(A.shape[0]), "count_reference": int(B.shape[0]), "trials": n, "dim": int(d),
           "n_below_dim": bool(min(A.shape[0], B.shape[0]) < d)}
    if out["n_below_dim"]:
        out["note"] = (f"fewer images ({min(A.shape[0], B.shape[0])}) than feature dimensions ({d}): FID's small-sample bias can "
                       "exceed its value; compare FIDs only at equal n (KID is unbiased)")
    block = _jackknife_blocks(n, max_groups)
    nb = int(block.max()) + 1
    out["jackknife_groups"] = nb
    loo = []
    for b in range(nb):
        ka, kb = block[ga] != b, block[gb] != b
        if min(ka.sum(), kb.sum()) < 2:
            out["ci_note"] = "too few rows left without one trial: no interval"
            return out
        loo.append(max(0.0, _frechet(A[ka], B[kb])))
    if nb >= 2:
        out.update({k: v for k, v in jackknife_interval(value, loo, level, log=True).items() if k != "n"})
    return out


def _paired_groups(groups_a: Any, groups_b: Any, rows_a: int, rows_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Trial index of every row of two sets, in one labelling (raw labels shared by the sets)."""
    if groups_a is None and groups_b is None and rows_a != rows_b:
        raise ValueError(f"sets of {rows_a} and {rows_b} rows: pass groups (the test trial of each row) to pair them")
    ga = np.arange(rows_a) if groups_a is None else to_numpy(groups_a, name="groups_gen").ravel()
    gb = np.arange(rows_b) if groups_b is None else to_numpy(groups_b, name="groups_ref").ravel()
    both = trial_groups(np.concatenate([ga, gb]), rows_a + rows_b)
    if ga.shape[0] != rows_a or gb.shape[0] != rows_b:
        raise ValueError(f"groups: expected {rows_a} and {rows_b} entries, got {ga.shape[0]} and {gb.shape[0]}")
    return both[:rows_a], both[rows_a:]


# --------------------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------------------


def _trial_kernel(X: np.ndarray, gx: np.ndarray, Y: np.ndarray, gy: np.ndarray, n: int, kw: dict, chunk: int = 1024) -> np.ndarray:
    """[n, n] mean of torch-fidelity's ``kernel_poly`` over rows of trial i in X and trial j in Y."""
    from torch_fidelity.metric_kid import kernel_poly

    cx, cy = np.bincount(gx, minlength=n).astype(float), np.bincount(gy, minlength=n).astype(float)
    Ay = np.zeros((Y.shape[0], n))
    Ay[np.arange(Y.shape[0]), gy] = 1.0
    out = np.zeros((n, n))
    for lo in range(0, X.shape[0], chunk):
        K = kernel_poly(X[lo:lo + chunk], Y, **kw) @ Ay  # [chunk, n]
        np.add.at(out, gx[lo:lo + chunk], K)
    return out / np.outer(cx, cy)


@register("kid", higher_is_better=False, label="KID", fmt="{:.4f}", level="set", interval="jackknife", rank=80,
          description="KID: unbiased MMD^2 U-statistic over test trials (torch-fidelity's polynomial kernel) with a jackknife interval")
def kid_with_ci(feats_gen: Any, feats_ref: Any, groups_gen: Any = None, groups_ref: Any = None, degree: int = 3,
                gamma: float | None = None, coef0: float = 1.0, level: float = LEVEL) -> dict:
    """KID between generated [M, D] and reference [N, D] features of the same test trials (see module doc).

    Every trial needs rows in both sets. Returns value, ci_low, ci_high, ci_method, ci_level, se, trials,
    count_generated, count_reference, subset_size, subsets, kernel, degree, gamma, coef0, estimator.
    """
    from torch_fidelity.metric_kid import mmd2

    A = as_float_matrix(feats_gen, name="feats_gen")
    B = as_float_matrix(feats_ref, name="feats_ref")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"feature dims differ: {A.shape[1]} vs {B.shape[1]}")
    ga, gb = _paired_groups(groups_gen, groups_ref, A.shape[0], B.shape[0])
    n = int(max(ga.max(), gb.max())) + 1
    if set(np.unique(ga)) != set(np.unique(gb)):
        raise ValueError("KID pairs test trials: every trial needs rows in both sets")
    _need_trials(n, 2, "KID")
    g = 1.0 / A.shape[1] if gamma is None else float(gamma)
    kw = {"kid_kernel_poly_degree": int(degree), "kid_kernel_poly_gamma": g, "kid_kernel_poly_coef0": float(coef0)}
    Kxx, Kyy, Kxy = _trial_kernel(A, ga, A, ga, n, kw), _trial_kernel(B, gb, B, gb, n, kw), _trial_kernel(A, ga, B, gb, n, kw)
    value = float(mmd2(Kxx, Kxy, Kyy, mmd_est="u-statistic"))
    out = {"value": value, "ci_low": None, "ci_high": None, "ci_method": "jackknife", "ci_level": float(level), "trials": n,
           "count_generated": int(A.shape[0]), "count_reference": int(B.shape[0]), "subset_size": n, "subsets": 1,
           "kernel": "poly", "degree": int(degree), "gamma": g, "coef0": float(coef0),
           "estimator": "unbiased MMD^2 U-statistic over test trials (a trial never paired with itself)"}
    if n >= 3:
        H = Kxx + Kyy - Kxy - Kxy.T
        np.fill_diagonal(H, 0.0)
        total, rows = H.sum(), H.sum(1)
        loo = (total - 2.0 * rows) / ((n - 1) * (n - 2))
        out.update({k: v for k, v in jackknife_interval(value, loo, level).items() if k != "n"})
    return out
