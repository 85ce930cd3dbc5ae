"""Metric intervals: Wilson / quasi-binomial rates, t means, jackknife, and a coverage simulation with
known population values (each interval type covers its named quantity 90-99% of the time)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from bench.metrics import (
    fid_with_ci,
    inception_score_with_ci,
    jackknife_interval,
    kid_with_ci,
    mean_interval,
    rate_interval,
    trial_interval,
    wilson_interval,
)
from bench.metrics.set_level import _frechet


def test_wilson_matches_scipy_for_every_count():
    for x in range(81):
        v = np.r_[np.ones(x), np.zeros(80 - x)]
        r = rate_interval(v)
        ref = stats.binomtest(x, 80).proportion_ci(method="wilson")
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((ref.low, ref.high), abs=1e-12)
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["ci_high"] > r["ci_low"]
        assert r["dispersion"] == 1.0 and r["ci_method"] == "wilson"
    assert wilson_interval(0, 80) == pytest.approx((0.0, 0.0458181), abs=1e-6)  # 0/80 -> [0, 0.046], never [0, 0]
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="rates"):
        rate_interval([0.5, 1.5])


def test_quasi_binomial_rates_scale_n_by_the_dispersion():
    rng = np.random.default_rng(0)
    v = rng.binomial(50, 0.3, size=80) / 50  # each value averages 50 draws of one probability: phi ~ 1/50
    r = rate_interval(v, draws_per_unit=50)
    phi = np.var(v, ddof=1) / (v.mean() * (1 - v.mean()))
    assert r["dispersion"] == pytest.approx(max(phi, 1 / 50))
    lo, hi = wilson_interval(v.mean() * 80 / r["dispersion"], 80 / r["dispersion"])
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))
    assert r["ci_high"] - r["ci_low"] < rate_interval(v, draws_per_unit=1)["ci_high"] - rate_interval(v, draws_per_unit=1)["ci_low"]
    const = rate_interval(np.full(80, 0.103))  # tie credit: one fractional value everywhere, draws 1 -> plain Wilson
    assert const["ci_high"] - const["ci_low"] > 0.1 and const["dispersion"] == 1.0
    zero = rate_interval(np.zeros(80), draws_per_unit=50)  # nothing to estimate a dispersion from: Bernoulli (conservative)
    assert zero["ci_low"] == 0.0 and zero["ci_high"] == pytest.approx(0.0458181, abs=1e-6)
    json.dumps(r, allow_nan=False)


def test_mean_interval_is_the_t_interval():
    rng = np.random.default_rng(1)
    v = rng.beta(2, 8, size=30)
    r = mean_interval(v)
    half = stats.t.ppf(0.975, 29) * v.std(ddof=1) / np.sqrt(30)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((v.mean() - half, v.mean() + half))
    assert mean_interval([0.4])["ci_low"] is None
    assert mean_interval(np.full(5, 0.2))["ci_low"] == mean_interval(np.full(5, 0.2))["ci_high"] == pytest.approx(0.2)
    assert trial_interval("ssim", v) == r and trial_interval("top1", (v > 0.2).astype(float))["ci_method"] == "wilson"
    with pytest.raises(ValueError, match="set-level"):
        trial_interval("fid", v)


def test_jackknife_interval_matches_numpy():
    loo = np.array([2.0, 2.2, 1.9, 2.1, 2.05])
    n = loo.size
    se = np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
    r = jackknife_interval(2.04, loo)
    assert r["se"] == pytest.approx(se) and (r["ci_low"], r["ci_high"]) == pytest.approx((2.04 - 1.959964 * se, 2.04 + 1.959964 * se), rel=1e-6)
    lg = jackknife_interval(2.04, loo, log=True)
    se_log = np.sqrt((n - 1) / n * np.sum((np.log(loo) - np.log(loo).mean()) ** 2))
    assert lg["ci_method"] == "jackknife_log" and lg["ci_low"] == pytest.approx(2.04 * np.exp(-1.959964 * se_log), rel=1e-6)
    assert jackknife_interval(0.0, [0.0, 0.1], log=True)["ci_method"] == "jackknife"  # not positive: raw scale


# --------------------------------------------------------------------------------------------------
# Coverage: repeated test sets drawn from a known population; each interval must cover its quantity
# --------------------------------------------------------------------------------------------------


def _covered(iv: dict, truth: float) -> bool:
    return iv["ci_low"] <= truth <= iv["ci_high"]


def test_coverage_of_rates():
    """Wilson on 0/1 trials (exact coverage by enumeration) and the quasi-binomial interval on N-way-like
    trials (each value: 50 draws of a per-image success probability), n = 80 trials."""
    n = 80
    for p in (0.0125, 0.025, 0.05, 0.1, 0.3, 0.5):
        x = np.arange(n + 1)
        inside = np.array([_covered(rate_interval(np.r_[np.ones(k), np.zeros(n - k)]), p) for k in x])
        coverage = float((stats.binom.pmf(x, n, p) * inside).sum())
        assert 0.90 <= coverage <= 0.99, (p, coverage)
    rng = np.random.default_rng(7)
    for mix in (0.0, 0.25):  # chance-level images only; a quarter of images recognisable
        q = lambda: np.where(rng.random(n) < mix, 0.6, 0.025)  # noqa: E731
        truth = 0.025 * (1 - mix) + 0.6 * mix
        hits = [_covered(rate_interval(rng.binomial(50, q()) / 50, draws_per_unit=50), truth) for _ in range(400)]
        assert 0.90 <= np.mean(hits) <= 0.99, (mix, np.mean(hits))


def test_coverage_of_means():
    rng = np.random.default_rng(8)
    hits = [_covered(mean_interval(rng.beta(2, 8, size=80)), 0.2) for _ in range(400)]  # skewed, like SSIM
    assert 0.90 <= np.mean(hits) <= 0.99


def _pool(rng, N=600, C=10, S=2, d=4):
    """A population of test trials: per trial, S samples' logits and features, and the ground truth's features."""
    centres = rng.normal(size=(C, C)) * 3
    logits = (centres[rng.integers(0, C, N)] + rng.normal(size=(N, C)) * 2.0)[:, None, :] + rng.normal(size=(N, S, C))
    gt = rng.normal(size=(N, d))
    gen = (0.6 * gt + 0.2 + rng.normal(size=(N, d)) * 0.8)[:, None, :] + rng.normal(size=(N, S, d)) * 0.3
    return logits, gen, gt


def test_coverage_of_set_level_metrics():
    """IS and FID: the log-scale jackknife interval covers the expected value at n = 40 trials (Monte-Carlo
    over 3,000 test sets); KID: the jackknife interval covers the population MMD^2 (exact for this finite
    population: trials drawn with replacement)."""
    from scipy.special import log_softmax

    rng = np.random.default_rng(2024)
    logits, gen, gt = _pool(rng)
    N, S, C = logits.shape
    d, n, reps = gen.shape[-1], 40, 300
    groups = np.repeat(np.arange(n), S)

    def is_plain(idx):
        lp = log_softmax(logits[idx].reshape(-1, C), axis=1)
        p = np.exp(lp)
        pb = p.mean(0)
        return np.exp((p * lp).sum(1).mean() - (pb * np.log(pb)).sum())

    draws = [rng.integers(0, N, n) for _ in range(3000)]
    expected_is = np.mean([is_plain(i) for i in draws])
    expected_fid = np.mean([_frechet(gen[i].reshape(-1, d), gt[i]) for i in draws])
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731  torch-fidelity's polynomial kernel
    flat = gen.reshape(-1, d)
    population_kid = k(flat, flat).reshape(N, S, N, S).mean() + k(gt, gt).mean() - 2 * k(flat, gt).mean()
    cov = {"is": 0, "fid": 0, "kid": 0}
    for _ in range(reps):
        i = rng.integers(0, N, n)
        cov["is"] += _covered(inception_score_with_ci(logits[i].reshape(-1, C), groups), expected_is)
        cov["fid"] += _covered(fid_with_ci(gen[i].reshape(-1, d), gt[i], groups), expected_fid)
        cov["kid"] += _covered(kid_with_ci(gen[i].reshape(-1, d), gt[i], groups), population_kid)
    for name, hits in cov.items():
        assert 0.90 <= hits / reps <= 0.99, (name, hits / reps)


def test_subject_comparison_is_the_exact_sign_flip_test_with_d_z():
    """Six subjects: p equals the share of all 2^6 sign patterns whose |mean| reaches the observed one;
    d_z = mean / sd of the differences; the CI is the t interval of the mean difference."""
    import itertools

    from bench.metrics import subject_comparison

    a = np.array([0.41, 0.35, 0.52, 0.30, 0.44, 0.39])
    b = np.array([0.30, 0.33, 0.40, 0.31, 0.35, 0.28])
    d = a - b
    r = subject_comparison(a, b)
    flips = np.array([np.mean(np.array(s) * d) for s in itertools.product([1, -1], repeat=6)])
    assert r["p_value"] == pytest.approx(np.mean(np.abs(flips) >= abs(d.mean()) - 1e-12))
    assert r["d_z"] == pytest.approx(d.mean() / d.std(ddof=1)) and r["n"] == 6 and "exact sign-flip" in r["test"]
    t = stats.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((d.mean() - t, d.mean() + t))
    a18, b18 = np.r_[a, a + 0.01, a + 0.02], np.r_[b, b, b]
    many = subject_comparison(a18, b18)  # 18 subjects: Wilcoxon
    assert "Wilcoxon" in many["test"] and many["p_value"] == pytest.approx(stats.wilcoxon(a18 - b18).pvalue)


def test_holm_matches_the_step_down_procedure():
    from bench.metrics import holm

    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == [] and holm([0.5]) == [0.5]


def test_compare_reports_the_subject_level_test(tmp_path):
    """bench compare over a store with three subjects: trial-level and subject-level results (d_z, exact test)."""
    from bench.results.compare import compare_markdown, compare_methods
    from bench.metrics import subject_comparison

    rng = np.random.default_rng(5)
    (tmp_path / "records").mkdir()
    means = {}
    for s in (1, 2, 3):
        for method, p in (("brainvis", 0.5), ("eegnet", 0.3)):
            x = (rng.random(60) < p).astype(float)
            means[method, s] = x.mean()
            rec = {"key": f"{method}{s}", "status": "ok", "method": method, "variant": "", "options": {}, "subject": s, "fraction": 1.0, "w": 0.5,
                   "seed": 0, "grid": "subjects", "config": {"dataset_id": "d"}, "metrics": {"top1": {"value": x.mean(), "per_trial": x.tolist()}}}  # fmt: skip
            (tmp_path / "records" / f"{method}{s}.json").write_text(json.dumps(rec))
    res = compare_methods(tmp_path, "brainvis", "eegnet", metrics=["top1"])
    sub = res["metrics"]["top1"]["subjects"]
    direct = subject_comparison([means["brainvis", s] for s in (1, 2, 3)], [means["eegnet", s] for s in (1, 2, 3)])
    assert sub["n"] == 3 and sub["d_z"] == pytest.approx(direct["d_z"]) and sub["p_value"] == pytest.approx(direct["p_value"])
    assert res["metrics"]["top1"]["n"] == 180 and "Across subjects" in compare_markdown(res)


def test_bench_score_headline_and_interval_come_from_one_feature_pass(tmp_path):
    """On 64 px images (where torch-fidelity's own resize and another extractor path differ) the IS, FID
    and KID headlines equal torch-fidelity's calculate_metrics on the same images, and each interval
    contains its headline; IS splits stay as set (1), whatever the number of images."""
    from PIL import Image

    from bench.backbones.mini import untrained_mini_backbones
    from bench.metrics import _fidelity
    from bench.evaluation.score_folders import score_folders
    from bench.evaluation.scoring import ScoreSettings

    rng = np.random.default_rng(0)
    gt_dir, gen_dir = tmp_path / "gt", tmp_path / "gen"
    gt_dir.mkdir(), gen_dir.mkdir()
    gts, gens = [], []
    for i in range(24):
        g = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        x = np.clip(g.astype(int) + rng.integers(-60, 60, g.shape), 0, 255).astype(np.uint8)
        Image.fromarray(g).save(gt_dir / f"n0000_{i}.png")
        Image.fromarray(x).save(gen_dir / f"n0000_{i}_0.png")
        gts.append(g), gens.append(x)
    bb = untrained_mini_backbones()
    metrics, _ = score_folders(gt_dir, gen_dir, bb, ScoreSettings(trials=5))
    kw = bb.fidelity.fidelity_kwargs()
    to_chw = lambda a: __import__("torch").from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    # the generated images are 64 px too: bench score resizes ground truth to the generated size
    tf = _fidelity.calculate(input1=_fidelity.UInt8ImageDataset(to_chw(gens)), input2=_fidelity.UInt8ImageDataset(to_chw(gts)),
                             isc=True, fid=True, kid=True, isc_splits=1, kid_subset_size=24, kid_subsets=1, **kw)
    assert metrics["inception_score"]["value"] == pytest.approx(tf["inception_score_mean"], rel=1e-5)
    assert metrics["fid"]["value"] == pytest.approx(max(0.0, tf["frechet_inception_distance"]), rel=1e-4, abs=1e-6)
    assert metrics["inception_score"]["splits"] == 1
    for m in ("inception_score", "fid", "kid"):
        r = metrics[m]
        assert r["ci_low"] <= r["value"] <= r["ci_high"], (m, r)
