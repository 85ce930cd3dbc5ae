"""Confidence intervals of the benchmark's metrics: one method per kind of metric (REFERENCE §8).

- Rates (top-k, N-way top-K; per-trial values in [0, 1]): the Wilson score interval. 0/1 values give
  the textbook Wilson interval (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``). A
  per-trial value that averages ``m`` 0/1 outcomes (N-way's draws, samples, seeds) has variance
  ``phi * p (1 - p)`` with ``1/m <= phi <= 1``; the interval is Wilson's with ``n / phi``
  (quasi-binomial), ``phi`` the observed dispersion clipped to ``[1/m, 1]`` (1 when the mean is 0 or
  1). It always contains the point value and never has zero width (0/80 -> [0, 0.046]).
- Continuous per-trial means (SSIM, CLIP similarity): the Student t interval of the mean.
- Set-level statistics (IS, FID, KID): a normal interval with the leave-one-trial-out jackknife
  standard error. IS and FID are biased at small n (IS low, FID high; at 80 images in 128 dimensions
  FID's bias exceeds its value), so their interval, on the log scale, is for the named quantity
  "expected IS (FID) of a set of this many test trials"; KID is unbiased and its interval (raw scale)
  is for the population value.

Each metric's spec (:class:`~bench.metrics.registry.Metric` ``interval``) names its method; ``CI_METHODS`` says what each method covers. Results
carry ``ci_method`` (a key of ``CI_METHODS``) and ``ci_level``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from ._util import to_numpy
from .registry import INTERVALS, METRICS

__all__ = [
    "CI_METHODS", "LEVEL", "interval_of", "draws_per_trial", "jackknife_interval", "mean_interval", "rate_interval",
    "trial_interval", "wilson_interval",
]

LEVEL = 0.95

CI_METHODS: dict[str, str] = {
    "wilson": "Wilson score interval of the rate over test trials (quasi-binomial for per-trial values that "
              "average several 0/1 outcomes: n scaled by the observed dispersion)",
    "student_t": "Student t interval of the mean over test trials",
    "jackknife_log": "log-scale normal interval with the leave-one-trial-out jackknife SE; it covers the "
                     "statistic's expected value at this number of test trials (not its value on infinitely many)",
    "jackknife": "normal interval with the leave-one-trial-out jackknife SE; KID is unbiased, so it covers the "
                 "population value",
}
if set(CI_METHODS) != set(INTERVALS):  # the registry validates specs against INTERVALS
    raise ImportError(f"interval methods {sorted(CI_METHODS)} differ from the registry's INTERVALS {sorted(INTERVALS)}")

def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(sps.norm.ppf(0.5 + level / 2))


def _values(values: Any, name: str = "values") -> np.ndarray:
    v = to_numpy(values, name=name).astype(np.float64).ravel()
    if v.size == 0:
        raise ValueError(f"{name}: empty")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return v


def wilson_interval(successes: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (both may be fractional: an effective count)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = _z(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def rate_interval(values: Any, draws_per_unit: float = 1, level: float = LEVEL) -> dict:
    """Wilson interval of the mean of per-trial rates in [0, 1] (see the module doc).

    ``draws_per_unit``: the number of 0/1 outcomes each value averages (1 for a top-k trial; draws x
    samples for N-way; times the seeds averaged). Returns value, ci_low, ci_high, ci_method, ci_level,
    n, dispersion and n_effective.
    """
    v = _values(values)
    if v.min() < 0 or v.max() > 1:
        raise ValueError(f"rates must lie in [0, 1], got range [{v.min()}, {v.max()}]")
    if draws_per_unit < 1:
        raise ValueError(f"draws_per_unit must be >= 1, got {draws_per_unit}")
    n, p = v.size, float(v.mean())
    bernoulli = p * (1 - p)
    if bernoulli <= 0 or n < 2:
        phi = 1.0
    else:
        phi = float(np.clip(v.var(ddof=1) / bernoulli, 1.0 / draws_per_unit, 1.0))
    n_eff = n / phi
    lo, hi = wilson_interval(p * n_eff, n_eff, level)
    return {"value": p, "ci_low": min(lo, p), "ci_high": max(hi, p), "ci_method": "wilson", "ci_level": float(level),
            "n": int(n), "dispersion": phi, "n_effective": float(n_eff)}


def mean_interval(values: Any, level: float = LEVEL) -> dict:
    """Student t interval of the mean (``scipy.stats.ttest_1samp``); ``None`` bounds for one value."""
    v = _values(values)
    out = {"value": float(v.mean()), "ci_low": None, "ci_high": None, "ci_method": "student_t", "ci_level": float(level), "n": int(v.size)}
    if v.size >= 2:
        if np.all(v == v[0]):  # zero spread: the t interval is the point (scipy would divide 0 by 0)
            out["ci_low"] = out["ci_high"] = float(v[0])
        else:
            ci = sps.ttest_1samp(v, 0.0).confidence_interval(level)
            out["ci_low"], out["ci_high"] = float(ci.low), float(ci.high)
    return out


def jackknife_interval(value: float, loo: Any, level: float = LEVEL, log: bool = False) -> dict:
    """Normal interval ``value -/+ z * SE`` with the jackknife SE of leave-one-out values ``loo``.

    ``log=True`` works on ``log(value)`` (a positive, multiplicative statistic such as IS or FID); where
    the value or a replicate is not positive it falls back to the raw scale (``ci_method`` says which).
    Returns ci_low, ci_high, ci_method, ci_level, se (on the scale used) and n (replicates).
    """
    t = _values(loo, "loo")
    n = t.size
    if n < 2:
        raise ValueError("the jackknife needs at least 2 leave-one-out values")
    use_log = bool(log and value > 0 and np.all(t > 0))
    u, centre = (np.log(t), float(np.log(value))) if use_log else (t, float(value))
    se = float(np.sqrt((n - 1) / n * np.sum((u - u.mean()) ** 2)))
    z = _z(level)
    lo, hi = centre - z * se, centre + z * se
    if use_log:
        lo, hi = np.exp(lo), np.exp(hi)
    return {"ci_low": float(lo), "ci_high": float(hi), "ci_method": "jackknife_log" if use_log else "jackknife",
            "ci_level": float(level), "se": se, "n": int(n)}


def draws_per_trial(result: dict) -> int:
    """0/1 outcomes behind one per-trial rate of a stored result: ``outcomes_per_trial`` where the result
    states it (attribute fidelity: attributes x samples), N-way's draws per image (``trials``; results of
    N-way carry ``chance``), else 1. Samples per trial are otherwise not counted: a lower floor of the
    dispersion is the conservative side."""
    if result.get("outcomes_per_trial"):
        return int(result["outcomes_per_trial"])
    return int(result.get("trials") or 1) if "chance" in result else 1


def interval_of(metric: str) -> str:
    """The interval method a metric's spec names ("student_t" for metrics not registered here)."""
    return METRICS[metric].interval if metric in METRICS else "student_t"


def trial_interval(metric: str, values: Any, draws_per_unit: float = 1, level: float = LEVEL) -> dict:
    """The interval a per-trial metric's spec names (rates: Wilson; others: Student t)."""
    method = interval_of(metric)
    if method == "wilson":
        return rate_interval(values, draws_per_unit=draws_per_unit, level=level)
    if method == "student_t":
        return mean_interval(values, level=level)
    raise ValueError(f"{metric} is a set-level metric ({method}); it has no per-trial interval")

