"""Uncertainty for benchmark numbers: bootstrap CIs over test trials, paired tests (over trials and
over subjects) and the Holm correction. The intervals of the metrics themselves are in
:mod:`bench.metrics.intervals`.

Unit of resampling: the test trial (one row of ``values``). A 2-D ``values`` [n_units, r]
(e.g. r seeds or r generated images per trial) is first averaged over axis 1, so units are
resampled with their replicates kept together.

Degenerate inputs never crash: if the bootstrap distribution is a point mass (n == 1 or all
values equal) the CI is the zero-width ``(stat, stat)``; :func:`bootstrap_summary` and
:func:`paired_comparison` flag this with ``degenerate: true``. Such an interval says nothing
about uncertainty. Empty input raises ``ValueError``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
from scipy import stats as sps

from ._util import to_numpy

__all__ = ["bootstrap_ci", "bootstrap_summary", "holm", "independent_comparison", "paired_comparison", "subject_comparison"]

EXACT_SIGN_FLIP_MAX = 13  # subjects: up to 2**13 = 8192 sign patterns are enumerated; Wilcoxon above

_METHODS = ("percentile", "basic", "BCa")


def _units(values: Any, name: str = "values") -> np.ndarray:
    v = to_numpy(values, name=name).astype(np.float64)
    if v.ndim == 2:
        v = v.mean(axis=1)
    if v.ndim != 1:
        raise ValueError(f"{name}: expected shape [n] or [n_units, replicates], got {tuple(v.shape)}")
    if v.size == 0:
        raise ValueError(f"{name}: empty")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return v


def bootstrap_ci(
    values: Any,
    stat: Callable[..., Any] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> tuple[float, float]:
    """Bootstrap CI ``(low, high)`` of ``stat`` over units (``scipy.stats.bootstrap``).

    ``method``: "percentile" (default: plain quantiles of the bootstrap distribution, robust and
    transparent), "basic" or "BCa" (bias-corrected and accelerated; falls back to percentile if
    BCa is undefined). ``stat`` should accept ``axis=`` (vectorised); others work, slower.
    Deterministic given ``seed``.
    """
    s = bootstrap_summary(values, stat, n_boot=n_boot, level=level, seed=seed, method=method)
    return s["ci_low"], s["ci_high"]


def bootstrap_summary(
    values: Any,
    stat: Callable[..., Any] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> dict:
    """Dict form of :func:`bootstrap_ci`: value, ci_low, ci_high, n, level, n_boot, seed, method,
    degenerate."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = _units(values)
    point = float(stat(v))
    degenerate = v.size < 2 or bool(np.all(v == v[0]))
    used = method
    if degenerate:
        low = high = point
    else:
        def run(m: str):
            return sps.bootstrap((v,), stat, n_resamples=int(n_boot), confidence_level=level, method=m,
                                 rng=np.random.default_rng(seed)).confidence_interval
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=sps.DegenerateDataWarning)
            ci = run(method)
            if not (np.isfinite(ci.low) and np.isfinite(ci.high)) and method == "BCa":
                used = "percentile"
                ci = run(used)
        low, high = float(ci.low), float(ci.high)
    return {
        "value": point,
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(v.size),
        "level": float(level),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "method": used,
        "degenerate": bool(degenerate),
    }


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def _paired_units(a: Any, b: Any, alternative: str, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """The two sides' values per paired unit, after checking the alternative and that they pair up."""
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    x, y = _units(a, "a"), _units(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired inputs must have the same number of {unit}, got {x.size} and {y.size}")
    return x, y


def paired_comparison(
    a: Any,
    b: Any,
    n_resamples: int = 9999,
    seed: int = 0,
    alternative: str = "two-sided",
    level: float = 0.95,
    n_boot: int = 2000,
) -> dict:
    """Paired comparison of two methods scored on the same units (``a[i]`` vs ``b[i]``).

    Primary test: ``scipy.stats.permutation_test`` with ``permutation_type="samples"`` (a
    random sign flip of each paired difference; exact when ``2**n <= n_resamples``) on the mean
    difference ``mean(a - b)``. ``alternative`` ("two-sided", "greater": a > b, "less").
    Secondary: Wilcoxon signed-rank p-value (``p_value_wilcoxon``; zero differences dropped).
    CI: percentile bootstrap of the mean difference.

    Returns diff, ci_low, ci_high, p_value, p_value_wilcoxon, n, test, alternative, n_resamples,
    seed, level, degenerate. Degenerate cases (n == 1 or all differences zero): diff as computed,
    zero-width CI, both p-values 1.0, ``degenerate: true``.
    """
    x, y = _paired_units(a, b, alternative, "units")
    d = x - y
    diff = float(d.mean())
    degenerate = d.size < 2 or bool(np.all(d == d[0]) and d[0] == 0)
    out = {
        "diff": diff,
        "n": int(d.size),
        "test": "paired sign-flip permutation test on mean(a - b)",
        "alternative": alternative,
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "level": float(level),
    }
    if degenerate:
        out.update(ci_low=diff, ci_high=diff, p_value=1.0, p_value_wilcoxon=1.0, degenerate=True)
        return out
    res = sps.permutation_test((x, y), _mean_diff, permutation_type="samples", vectorized=True,
                               n_resamples=int(n_resamples), alternative=alternative,
                               rng=np.random.default_rng(seed))
    ci = bootstrap_summary(d, np.mean, n_boot=n_boot, level=level, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pw = float(sps.wilcoxon(x, y, alternative=alternative).pvalue)
    if not np.isfinite(pw):
        pw = 1.0
    out.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"], p_value=float(min(1.0, res.pvalue)),
               p_value_wilcoxon=pw, degenerate=False)
    return out


def _diff_of_means(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def independent_comparison(
    a: Any,
    b: Any,
    n_resamples: int = 9999,
    seed: int = 0,
    alternative: str = "two-sided",
    level: float = 0.95,
    n_boot: int = 2000,
) -> dict:
    """Comparison of two scores measured on different units (e.g. two datasets' test trials).

    Test: ``scipy.stats.permutation_test`` with ``permutation_type="independent"`` (units
    reassigned between the groups; exact when the number of splits is <= ``n_resamples``) on
    ``mean(a) - mean(b)``. CI: percentile bootstrap resampling each group on its own
    (``scipy.stats.bootstrap``, ``paired=False``). Same keys as :func:`paired_comparison`, with
    ``n_a`` and ``n_b`` for ``n``. Degenerate (zero-width CI, p = 1) when a group has fewer than two
    units or every value in both groups is equal.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    x, y = _units(a, "a"), _units(b, "b")
    diff = float(x.mean() - y.mean())
    degenerate = x.size < 2 or y.size < 2 or bool(np.all(x == x[0]) and np.all(y == x[0]))
    out = {
        "diff": diff,
        "n_a": int(x.size),
        "n_b": int(y.size),
        "test": "permutation test (independent samples) on mean(a) - mean(b)",
        "alternative": alternative,
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "level": float(level),
    }
    if degenerate:
        out.update(ci_low=diff, ci_high=diff, p_value=1.0, degenerate=True)
        return out
    res = sps.permutation_test((x, y), _diff_of_means, permutation_type="independent", vectorized=True,
                               n_resamples=int(n_resamples), alternative=alternative,
                               rng=np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=sps.DegenerateDataWarning)
        ci = sps.bootstrap((x, y), _diff_of_means, paired=False, vectorized=True, n_resamples=int(n_boot),
                           confidence_level=level, method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(min(1.0, res.pvalue)), degenerate=False)
    return out


def subject_comparison(a: Any, b: Any, alternative: str = "two-sided", level: float = 0.95) -> dict:
    """Paired comparison across subjects (MOABB's convention): ``a[s]``, ``b[s]`` are subject s's scores.

    Test on the differences ``d = a - b``: the exact sign-flip permutation test of ``mean(d)``
    (``scipy.stats.permutation_test`` over all ``2**n`` sign patterns) for n <= 13 subjects, the
    Wilcoxon signed-rank test above. Effect size ``d_z = mean(d) / sd(d)`` (ddof 1; ``None`` when every
    difference is equal). CI: Student t interval of ``mean(d)``.

    Returns diff, ci_low, ci_high, d_z, p_value, test, n, alternative, level, differences, degenerate
    (fewer than two subjects or all differences zero: p = 1, no CI).
    """
    x, y = _paired_units(a, b, alternative, "subjects")
    d = x - y
    n = int(d.size)
    exact = n <= EXACT_SIGN_FLIP_MAX
    out = {
        "diff": float(d.mean()), "ci_low": None, "ci_high": None, "d_z": None, "p_value": 1.0,
        "test": f"exact sign-flip permutation test over subjects (2^{n} sign patterns)" if exact else "Wilcoxon signed-rank test over subjects",
        "n": n, "alternative": alternative, "level": float(level), "differences": [float(v) for v in d],
        "degenerate": bool(n < 2 or np.all(d == 0)),
    }
    if out["degenerate"]:
        return out
    sd = float(d.std(ddof=1))
    out["d_z"] = float(d.mean() / sd) if sd > 0 else None
    if sd > 0:
        ci = sps.ttest_1samp(d, 0.0).confidence_interval(level)
        out["ci_low"], out["ci_high"] = float(ci.low), float(ci.high)
    else:
        out["ci_low"] = out["ci_high"] = float(d[0])
    if exact:
        res = sps.permutation_test((d,), lambda v, axis=-1: np.mean(v, axis=axis), permutation_type="samples", vectorized=True,
                                   n_resamples=np.inf, alternative=alternative)
        p = float(res.pvalue)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(sps.wilcoxon(d, alternative=alternative).pvalue)
    out["p_value"] = min(1.0, p) if np.isfinite(p) else 1.0
    return out


def holm(p_values: Any) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    Sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where ``adj <= alpha``
    is Holm's procedure at level alpha.
    """
    p = to_numpy(p_values, name="p_values").astype(np.float64).ravel()
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise ValueError("p_values must lie in [0, 1]")
    m = p.size
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return [float(v) for v in adj]
