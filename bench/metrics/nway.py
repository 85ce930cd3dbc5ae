"""N-way Top-K accuracy (a.k.a. generation accuracy, GA) of generated images.

Published protocol (BrainVis / DreamDiffusion, REFERENCE §4): an ImageNet classifier gives
class probabilities ``probs_gen[i]`` for each generated image ``i``. The reference class
``ref_class[i]`` is the classifier's argmax on the *ground-truth* image (computed by the
caller, e.g. with :func:`reference_from_probs`). Each trial draws ``n - 1`` distractor
classes uniformly without replacement from the ``C - 1`` non-reference classes; the trial
succeeds if the reference class is among the top ``k`` of those ``n`` classes by
probability. Chance level is ``k / n``.

Tie rule (``ties="expected"``, the default): a distractor with probability *equal* to the
reference probability is a tie, broken uniformly at random; instead of sampling the
tie-break we score its expectation, so a trial with ``g`` strictly-greater and ``t`` tied
distractors scores ``clip(k - g, 0, t + 1) / (t + 1)`` (exactly ``1[g < k]`` without ties).
A classifier with all-equal probabilities therefore scores exactly ``k / n``, not 1.0.
``ties="optimistic"`` (reference wins ties, close to the published ``torch.topk`` code with
the reference placed first) and ``ties="pessimistic"`` (reference loses ties) are available
for comparison. Ties are exact floating-point equality of the given scores.

Clamp rule: with ``C < n`` classes an ``n``-way trial is impossible. With ``clamp=True``
(default) ``n`` is reduced to ``C`` (every trial then uses all classes) and the result
records ``n_effective`` and ``clamped: true``; chance becomes ``k / C``. With
``clamp=False`` a ``ValueError`` is raised. ``k`` larger than ``n_effective`` is an error.

Seeding: the draws for image ``i`` come from ``numpy.random.default_rng([seed, i])``, so they
depend only on ``(seed, i, C, n, trials)``: two methods scored on the same images share the
same distractor sets (common random numbers for paired comparisons).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import gammaln
from scipy.stats import hypergeom

from ._util import as_float_matrix, as_index_vector, tie_credit, to_numpy
from .registry import register

__all__ = [
    "TIE_RULES",
    "n_way_top_k",
    "n_way_top_k_exact",
    "n_way_top_k_label",
    "reference_from_probs",
    "resolve_n_way",
]

TIE_RULES = ("expected", "optimistic", "pessimistic")


def resolve_n_way(num_classes: int, n: int, k: int, clamp: bool) -> tuple[int, bool]:
    """Validate ``(n, k)`` against ``num_classes``; return ``(n_effective, clamped)``."""
    if int(n) != n or int(k) != k:
        raise ValueError(f"n and k must be integers, got n={n!r}, k={k!r}")
    n, k = int(n), int(k)
    if n < 2:
        raise ValueError(f"n must be >= 2 (reference plus at least one distractor), got n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= n, got k={k}, n={n}")
    if num_classes < 2:
        raise ValueError(f"N-way Top-K needs a classifier with >= 2 classes, got C={num_classes}")
    n_eff, clamped = n, False
    if num_classes < n:
        if not clamp:
            raise ValueError(
                f"{n}-way Top-{k} needs at least n={n} classifier classes but probs have C={num_classes}; "
                f"pass clamp=True to use n_effective=C={num_classes} (recorded in the result)"
            )
        n_eff, clamped = num_classes, True
    if k > n_eff:
        raise ValueError(f"k={k} exceeds n_effective={n_eff} (C={num_classes} classes): every trial would succeed")
    return n_eff, clamped


def reference_from_probs(probs_gt: Any) -> np.ndarray:
    """Reference classes of the published protocol: argmax over classes of ``probs_gt`` [M, C]
    (classifier output on the ground-truth images); first index wins exact ties."""
    return np.argmax(as_float_matrix(probs_gt, name="probs_gt"), axis=1).astype(np.int64)


def _check_ties(ties: str) -> str:
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    return ties


def _credit(g: np.ndarray, t: np.ndarray, k: int, ties: str) -> np.ndarray:
    if ties == "expected":
        return tie_credit(g, t, k)
    if ties == "optimistic":
        return (g < k).astype(np.float64)
    return ((g + t) < k).astype(np.float64)


def _prepare(probs_gen: Any, ref_class: Any) -> tuple[np.ndarray, np.ndarray]:
    P = as_float_matrix(probs_gen, name="probs_gen")  # float32 -> float64 is exact: order and ties kept
    ref = as_index_vector(ref_class, name="ref_class", length=P.shape[0], upper=P.shape[1])
    return P, ref


def _result(per_image: np.ndarray, *, C: int, n: int, n_eff: int, k: int, clamped: bool, ties: str,
            estimator: str, trials: int | None, seed: int | None, reference: str) -> dict:
    return {
        "value": float(per_image.mean()),
        "std": float(per_image.std()),
        "count": int(per_image.shape[0]),
        "num_classes": int(C),
        "n": int(n),
        "n_effective": int(n_eff),
        "k": int(k),
        "clamped": bool(clamped),
        "chance": float(k / n_eff),
        "ties": ties,
        "estimator": estimator,
        "trials": None if trials is None else int(trials),
        "seed": None if seed is None else int(seed),
        "reference": reference,
        "per_image": [float(v) for v in per_image],
    }


@register("n_way_top_k", higher_is_better=True, label="N-way top-K", interval="wilson", rank=30,
          description="N-way Top-K accuracy of generated images vs the classifier's argmax on the ground truth "
                      "(seeded Monte-Carlo draws, published protocol)")
def n_way_top_k(
    probs_gen: Any,
    ref_class: Any,
    n: int = 50,
    k: int = 1,
    trials: int = 50,
    seed: int = 0,
    clamp: bool = True,
    ties: str = "expected",
    reference: str = "gt_argmax",
) -> dict:
    """Monte-Carlo N-way Top-K over ``trials`` seeded draws per image.

    Args:
        probs_gen: [M, C] classifier probabilities (or any order-preserving scores, e.g. logits;
            only ranks and exact ties matter) for the generated images.
        ref_class: [M] reference class per image in the classifier's class space.
        n, k: N-way, Top-K (published: 50, 1). trials: draws per image (published: 50).
        seed: seeds the per-image generators ``default_rng([seed, i])``.
        clamp: if C < n, use n = C (recorded) instead of raising.
        ties: "expected" (default, see module doc), "optimistic" or "pessimistic".
        reference: free-text provenance of ``ref_class``, recorded in the result.

    Returns:
        JSON-safe dict: value (mean over images), std (over images), per_image (success rate per
        image, for bootstrapping over test trials), count, num_classes, n, n_effective, k, clamped,
        chance, ties, estimator="monte_carlo", trials, seed, reference.
    """
    ties = _check_ties(ties)
    if int(trials) != trials or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    trials, seed = int(trials), int(seed)
    P, ref = _prepare(probs_gen, ref_class)
    M, C = P.shape
    n_eff, clamped = resolve_n_way(C, n, k, clamp)
    d = n_eff - 1  # distractors per trial, drawn from the C - 1 non-reference classes
    per_image = np.empty(M, dtype=np.float64)
    for i in range(M):
        rng = np.random.default_rng([seed, i])
        if d < C - 1:
            keys = rng.random((trials, C - 1))
            # the d smallest of iid uniform keys form a uniform random d-subset (no replacement)
            pick = np.argpartition(keys, d - 1, axis=1)[:, :d]
        else:
            pick = np.broadcast_to(np.arange(C - 1), (trials, C - 1))
        cls = pick + (pick >= ref[i])  # map [0, C-2] onto the classes != ref[i]
        vals = P[i][cls]  # [trials, d]
        p_ref = P[i, ref[i]]
        g = (vals > p_ref).sum(axis=1)
        t = (vals == p_ref).sum(axis=1)
        per_image[i] = _credit(g, t, int(k), ties).mean()
    return _result(per_image, C=C, n=int(n), n_eff=n_eff, k=int(k), clamped=clamped, ties=ties,
                   estimator="monte_carlo", trials=trials, seed=seed, reference=reference)


def _log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log C(a, b), -inf where b < 0 or b > a."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = (b >= 0) & (b <= a)
    out = np.full(np.broadcast(a, b).shape, -np.inf)
    aa, bb = np.broadcast_arrays(a, b)
    out[ok] = gammaln(aa[ok] + 1) - gammaln(bb[ok] + 1) - gammaln(aa[ok] - bb[ok] + 1)
    return out


@register("n_way_top_k_exact", higher_is_better=True, label="N-way top-K (exact)", show=False,
          description="Exact expected N-way Top-K (hypergeometric; zero-variance version of n_way_top_k)")
def n_way_top_k_exact(
    probs_gen: Any,
    ref_class: Any,
    n: int = 50,
    k: int = 1,
    clamp: bool = True,
    ties: str = "expected",
    reference: str = "gt_argmax",
) -> dict:
    """Exact expected N-way Top-K success (the limit of :func:`n_way_top_k` as trials -> inf).

    For image ``i`` let ``g`` be the number of non-reference classes with probability strictly
    greater than the reference's and ``t`` the number tied with it. Drawing ``d = n - 1`` of the
    ``C - 1`` non-reference classes, the number ``a`` of greater and ``b`` of tied classes drawn is
    (multivariate) hypergeometric; the success probability is ``E[credit(a, b)]`` under the tie
    rule (without ties: ``P(a < k)`` = ``hypergeom.cdf(k - 1, C - 1, g, d)``).
    Same arguments and result keys as :func:`n_way_top_k` (``estimator="exact"``, ``trials``
    and ``seed`` are ``None``).
    """
    ties = _check_ties(ties)
    P, ref = _prepare(probs_gen, ref_class)
    M, C = P.shape
    n_eff, clamped = resolve_n_way(C, n, k, clamp)
    k = int(k)
    d, pool = n_eff - 1, C - 1
    p_ref = P[np.arange(M), ref][:, None]
    g = (P > p_ref).sum(axis=1)
    t = (P == p_ref).sum(axis=1) - 1  # the reference itself is not a distractor
    if ties == "optimistic":
        per_image = hypergeom.cdf(k - 1, pool, g, d)
    elif ties == "pessimistic":
        per_image = hypergeom.cdf(k - 1, pool, g + t, d)
    else:
        per_image = np.asarray(hypergeom.cdf(k - 1, pool, g, d), dtype=np.float64)
        a = np.arange(d + 1)[:, None]
        b = np.arange(d + 1)[None, :]
        for i in np.flatnonzero(t > 0):
            gi, ti = int(g[i]), int(t[i])
            rest = pool - gi - ti
            logp = _log_comb(gi, a) + _log_comb(ti, b) + _log_comb(rest, d - a - b) - _log_comb(pool, d)
            per_image[i] = float((np.exp(logp) * tie_credit(a, b, k)).sum())
    per_image = np.clip(np.asarray(per_image, dtype=np.float64), 0.0, 1.0)
    return _result(per_image, C=C, n=int(n), n_eff=n_eff, k=k, clamped=clamped, ties=ties,
                   estimator="exact", trials=None, seed=None, reference=reference)


def _map_labels(labels: Any, class_map: Any | None, num_classes: int) -> np.ndarray:
    lab = to_numpy(labels, name="labels")
    if lab.ndim != 1:
        raise ValueError(f"labels: expected shape [M], got {tuple(lab.shape)}")
    if class_map is None:
        return lab
    if isinstance(class_map, Mapping):
        missing = sorted({int(v) for v in lab} - {int(x) for x in class_map})
        if missing:
            raise ValueError(f"class_map has no entry for dataset labels {missing[:10]}")
        return np.array([int(class_map[int(v)]) for v in lab], dtype=np.int64)
    cmap = np.asarray(to_numpy(class_map, name="class_map"))
    if cmap.ndim != 1:
        raise ValueError(f"class_map: expected a 1-D sequence indexed by dataset label, got shape {cmap.shape}")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= cmap.shape[0]):
        raise ValueError(f"labels must lie in [0, {cmap.shape[0]}) to index class_map")
    return cmap.astype(np.int64)[lab]


@register("n_way_top_k_label", higher_is_better=True, label="N-way top-K (label)", interval="wilson", show=False,
          description="N-way Top-K with the true dataset label (mapped to the classifier's classes) as reference")
def n_way_top_k_label(
    probs_gen: Any,
    labels: Any,
    class_map: Sequence[int] | Mapping[int, int] | np.ndarray | None = None,
    n: int = 50,
    k: int = 1,
    trials: int = 50,
    seed: int = 0,
    clamp: bool = True,
    ties: str = "expected",
    exact: bool = False,
) -> dict:
    """Label-based N-way Top-K: :func:`n_way_top_k` with ``ref_class = class_map[labels]``.

    ``labels`` [M] are dataset class indices; ``class_map`` maps each dataset class to the
    classifier's class index (sequence indexed by label, or dict). ``None`` means the labels
    already are classifier indices. ``exact=True`` uses :func:`n_way_top_k_exact`.
    """
    P = as_float_matrix(probs_gen, name="probs_gen")
    ref = _map_labels(labels, class_map, P.shape[1])
    if exact:
        return n_way_top_k_exact(P, ref, n=n, k=k, clamp=clamp, ties=ties, reference="label")
    return n_way_top_k(P, ref, n=n, k=k, trials=trials, seed=seed, clamp=clamp, ties=ties, reference="label")
