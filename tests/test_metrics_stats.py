"""Bootstrap CIs and paired tests: coverage, shrinkage, determinism, degenerate inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.metrics import bootstrap_ci, bootstrap_summary, independent_comparison, paired_comparison


def test_ci_covers_true_mean():
    rng = np.random.default_rng(0)
    lo, hi = bootstrap_ci(rng.normal(0.3, 1.0, size=400), seed=0)
    assert lo < 0.3 < hi
    # frequentist coverage over repeated datasets of a known distribution (nominal 95%)
    hits = 0
    reps = 60
    for r in range(reps):
        x = rng.exponential(2.0, size=150)  # skewed, true mean 2.0
        lo, hi = bootstrap_ci(x, n_boot=500, seed=r)
        hits += lo <= 2.0 <= hi
    assert hits >= 50  # expected ~56; P(< 50) is ~1% for 95% coverage


def test_ci_shrinks_with_n_and_is_deterministic():
    rng = np.random.default_rng(1)
    big = rng.normal(size=4000)
    w_small = np.subtract(*bootstrap_ci(big[:100])[::-1])
    w_big = np.subtract(*bootstrap_ci(big)[::-1])
    assert w_big < w_small / 4  # width ~ 1/sqrt(n): ratio ~ 6.3
    assert bootstrap_ci(big[:100], seed=3) == bootstrap_ci(big[:100], seed=3)
    assert bootstrap_ci(big[:100], seed=3) != bootstrap_ci(big[:100], seed=4)


def test_methods_stat_and_two_dimensional_units():
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 1.0, size=200)
    for method in ("percentile", "basic", "BCa"):
        s = bootstrap_summary(x, method=method, n_boot=1000)
        assert s["ci_low"] < s["value"] < s["ci_high"] and s["method"] == method
    med = bootstrap_summary(x, stat=np.median, n_boot=500)
    assert med["value"] == pytest.approx(np.median(x))
    units = rng.normal(size=(50, 3))  # 50 trials x 3 seeds: units resampled, seeds averaged
    assert bootstrap_ci(units) == bootstrap_ci(units.mean(axis=1))
    with pytest.raises(ValueError, match="method"):
        bootstrap_ci(x, method="studentized")


def test_bootstrap_degenerate_inputs():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    s = bootstrap_summary(np.full(20, 0.25))
    assert (s["ci_low"], s["ci_high"], s["degenerate"]) == (0.25, 0.25, True)
    assert bootstrap_summary(np.full(20, 0.25), method="BCa")["ci_low"] == 0.25
    assert bootstrap_summary([0.1, 0.2])["degenerate"] is False
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, float("nan")])
    json.dumps(s, allow_nan=False)


def test_paired_clear_shift_and_null():
    rng = np.random.default_rng(3)
    base = rng.normal(size=100)
    a = base + 0.5 + rng.normal(scale=0.5, size=100)
    b = base
    r = paired_comparison(a, b, n_resamples=2000, seed=0)
    assert r["p_value"] < 0.01 and r["p_value_wilcoxon"] < 0.01
    assert r["ci_low"] < r["diff"] < r["ci_high"] and r["ci_low"] > 0
    assert r["diff"] == pytest.approx(np.mean(a - b)) and r["n"] == 100 and not r["degenerate"]
    assert "permutation" in r["test"]
    greater = paired_comparison(a, b, n_resamples=2000, alternative="greater")
    less = paired_comparison(a, b, n_resamples=2000, alternative="less")
    assert greater["p_value"] < 0.01 < 0.99 < less["p_value"]
    # identical distributions, paired
    c = base + rng.normal(scale=0.5, size=100)
    d = base + rng.normal(scale=0.5, size=100)
    null = paired_comparison(c, d, n_resamples=2000, seed=0)
    assert null["p_value"] > 0.1 and null["p_value_wilcoxon"] > 0.1
    assert null["ci_low"] < 0 < null["ci_high"]
    assert paired_comparison(c, d, n_resamples=2000, seed=0) == null
    json.dumps(r, allow_nan=False)


def test_paired_exact_permutation_small_n():
    # 5 positive differences: exact two-sided sign-flip p = 2 / 2**5
    r = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.5, 1.0, 1.5, 2.0])
    assert r["p_value"] == pytest.approx(2 / 32)


def test_paired_degenerate_inputs():
    one = paired_comparison([0.4], [0.1])
    assert one["degenerate"] and one["p_value"] == 1.0 and one["diff"] == pytest.approx(0.3)
    assert one["ci_low"] == one["ci_high"] == pytest.approx(0.3)
    same = paired_comparison([0.2, 0.5, 0.9], [0.2, 0.5, 0.9])
    assert same["degenerate"] and same["p_value"] == 1.0 and same["p_value_wilcoxon"] == 1.0
    assert same["diff"] == 0.0 and same["ci_low"] == 0.0 == same["ci_high"]
    const = paired_comparison(np.full(8, 1.0), np.zeros(8))  # constant non-zero difference
    assert not const["degenerate"] and const["p_value"] == pytest.approx(2 / 256)
    for r in (one, same, const):
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in r.values())
        json.dumps(r, allow_nan=False)
    with pytest.raises(ValueError, match="same number"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="alternative"):
        paired_comparison([1.0, 2.0], [1.0, 2.0], alternative="bigger")


def test_independent_comparison_matches_exact_enumeration_and_a_hand_bootstrap():
    """p-value against every reassignment of the pooled units (itertools); CI against a numpy bootstrap."""
    import itertools

    a, b = np.array([0.9, 0.7, 1.0, 0.8, 0.6]), np.array([0.1, 0.5, 0.2, 0.4])
    r = independent_comparison(a, b)
    pooled, observed = np.concatenate([a, b]), a.mean() - b.mean()
    diffs = []
    for idx in itertools.combinations(range(pooled.size), a.size):
        mask = np.zeros(pooled.size, bool)
        mask[list(idx)] = True
        diffs.append(pooled[mask].mean() - pooled[~mask].mean())
    diffs = np.asarray(diffs)  # 126 splits < n_resamples, so scipy enumerates them all
    greater, less = np.mean(diffs >= observed - 1e-12), np.mean(diffs <= observed + 1e-12)
    assert r["diff"] == pytest.approx(observed) and r["p_value"] == pytest.approx(min(1.0, 2 * min(greater, less)))  # scipy's two-sided rule
    assert independent_comparison(a, b, alternative="greater")["p_value"] == pytest.approx(greater) == pytest.approx(1 / 126)
    assert (r["n_a"], r["n_b"], r["degenerate"]) == (5, 4, False)

    rng = np.random.default_rng(1)
    x, y = rng.binomial(1, 0.6, 300).astype(float), rng.binomial(1, 0.4, 250).astype(float)
    r = independent_comparison(x, y, n_boot=4000)
    hand = np.random.default_rng(7)
    boot = [hand.choice(x, x.size).mean() - hand.choice(y, y.size).mean() for _ in range(4000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert r["ci_low"] == pytest.approx(lo, abs=0.015) and r["ci_high"] == pytest.approx(hi, abs=0.015)
    assert r["ci_low"] < r["diff"] < r["ci_high"] and r["p_value"] < 0.001

    same = independent_comparison([1.0, 1.0], [1.0, 1.0, 1.0])
    assert same["degenerate"] and same["p_value"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0
    json.dumps(r, allow_nan=False)
    with pytest.raises(ValueError, match="alternative"):
        independent_comparison([1.0, 2.0], [1.0], alternative="bigger")
