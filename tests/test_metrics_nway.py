"""N-way Top-K: Monte-Carlo and exact estimators vs exhaustive enumeration of distractor sets."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from bench.metrics import n_way_top_k, n_way_top_k_exact, n_way_top_k_label, reference_from_probs, resolve_n_way


def brute_force(probs: np.ndarray, ref: np.ndarray, n: int, k: int, ties: str = "expected") -> np.ndarray:
    """Per-image success probability by enumerating every distractor subset and, for the
    'expected' rule, every tie-breaking order of the n candidates (uniform random tie-breaking)."""
    M, C = probs.shape
    out = np.zeros(M)
    for i in range(M):
        others = [c for c in range(C) if c != ref[i]]
        scores = []
        for subset in itertools.combinations(others, n - 1):
            cand = [int(ref[i]), *subset]
            if ties == "expected":
                wins = 0
                perms = list(itertools.permutations(range(n)))
                for perm in perms:  # perm[j] = tie-break key of candidate j (lower wins)
                    order = sorted(range(n), key=lambda j: (-probs[i, cand[j]], perm[j]))
                    wins += 0 in order[:k]
                scores.append(wins / len(perms))
            else:
                p_ref = probs[i, ref[i]]
                vals = probs[i, list(subset)]
                beaten = (vals > p_ref).sum() if ties == "optimistic" else (vals >= p_ref).sum()
                scores.append(float(beaten < k))
        out[i] = np.mean(scores)
    return out


@pytest.fixture
def small_case():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(6), size=8)
    ref = rng.integers(0, 6, size=8)
    return probs, ref


@pytest.mark.parametrize("k", [1, 2])
def test_exact_equals_exhaustive_enumeration(small_case, k):
    probs, ref = small_case
    expected = brute_force(probs, ref, n=3, k=k)
    r = n_way_top_k_exact(probs, ref, n=3, k=k)
    np.testing.assert_allclose(r["per_image"], expected, atol=1e-12)
    assert r["value"] == pytest.approx(expected.mean(), abs=1e-12)
    assert r["estimator"] == "exact" and r["n_effective"] == 3 and not r["clamped"]


@pytest.mark.parametrize("k", [1, 2])
def test_monte_carlo_converges_to_exhaustive(small_case, k):
    probs, ref = small_case
    expected = brute_force(probs, ref, n=3, k=k)
    trials = 20000
    r = n_way_top_k(probs, ref, n=3, k=k, trials=trials, seed=3)
    # per-image binomial sd <= 0.5 / sqrt(trials) = 0.0035; allow ~5 sd
    np.testing.assert_allclose(r["per_image"], expected, atol=0.018)
    assert r["value"] == pytest.approx(expected.mean(), abs=0.008)


@pytest.mark.parametrize("ties", ["expected", "optimistic", "pessimistic"])
@pytest.mark.parametrize("n,k", [(3, 1), (3, 2), (4, 2)])
def test_tie_rules_match_enumeration(ties, n, k):
    rng = np.random.default_rng(7)
    probs = rng.integers(0, 3, size=(6, 6)).astype(np.float64)  # heavy ties
    probs /= probs.sum(1, keepdims=True) + 1e-9
    ref = rng.integers(0, 6, size=6)
    expected = brute_force(probs, ref, n=n, k=k, ties=ties)
    exact = n_way_top_k_exact(probs, ref, n=n, k=k, ties=ties)
    np.testing.assert_allclose(exact["per_image"], expected, atol=1e-12)
    mc = n_way_top_k(probs, ref, n=n, k=k, ties=ties, trials=8000, seed=0)
    np.testing.assert_allclose(mc["per_image"], expected, atol=0.03)


def test_perfect_classifier_scores_one():
    C, M = 40, 30
    ref = np.arange(M) % C
    logits = np.full((M, C), -5.0)
    logits[np.arange(M), ref] = 5.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for k in (1, 5):
        assert n_way_top_k(probs, ref, n=10, k=k)["value"] == 1.0
        assert n_way_top_k_exact(probs, ref, n=10, k=k)["value"] == 1.0


@pytest.mark.parametrize("n,k", [(50, 1), (10, 3)])
def test_all_equal_probabilities_score_k_over_n(n, k):
    C, M = 100, 12
    probs = np.full((M, C), 1.0 / C)
    ref = np.arange(M)
    mc = n_way_top_k(probs, ref, n=n, k=k, trials=5)
    ex = n_way_top_k_exact(probs, ref, n=n, k=k)
    assert mc["value"] == pytest.approx(k / n, abs=1e-12)
    assert ex["value"] == pytest.approx(k / n, abs=1e-12)
    assert mc["chance"] == pytest.approx(k / n)
    # the published-code behaviour (reference wins ties) would report a perfect score
    assert n_way_top_k(probs, ref, n=n, k=k, ties="optimistic")["value"] == 1.0
    assert n_way_top_k(probs, ref, n=n, k=k, ties="pessimistic")["value"] == 0.0


def test_uninformative_random_probabilities_score_k_over_n():
    # one random probability vector scored against every possible reference class: the rank of
    # the reference is uniform, so the exact expectation is exactly k/n
    rng = np.random.default_rng(0)
    C, n, k = 60, 20, 3
    p = rng.dirichlet(np.ones(C))
    probs = np.tile(p, (C, 1))
    ref = np.arange(C)
    assert n_way_top_k_exact(probs, ref, n=n, k=k)["value"] == pytest.approx(k / n, abs=1e-12)
    mc = n_way_top_k(probs, ref, n=n, k=k, trials=200, seed=1)
    assert mc["value"] == pytest.approx(k / n, abs=0.02)  # sd ~ sqrt(.15*.85/12000) = 0.003
    # iid random probabilities with independent references (published setting, N=50)
    probs = rng.dirichlet(np.ones(200), size=400)
    ref = rng.integers(0, 200, size=400)
    mc = n_way_top_k(probs, ref, n=50, k=1, trials=50, seed=0)
    assert mc["value"] == pytest.approx(1 / 50, abs=0.01)


def test_seeded_draws_are_reproducible_and_per_image():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(30), size=20)
    ref = rng.integers(0, 30, size=20)
    a = n_way_top_k(probs, ref, n=10, k=1, trials=7, seed=5)
    b = n_way_top_k(probs, ref, n=10, k=1, trials=7, seed=5)
    c = n_way_top_k(probs, ref, n=10, k=1, trials=7, seed=6)
    assert a == b
    assert a["per_image"] != c["per_image"]
    # image i's draws depend only on (seed, i): scoring a prefix gives the same per-image rates
    head = n_way_top_k(probs[:8], ref[:8], n=10, k=1, trials=7, seed=5)
    assert head["per_image"] == a["per_image"][:8]
    assert a["seed"] == 5 and a["trials"] == 7


def test_clamp_rule():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(10), size=5)
    ref = rng.integers(0, 10, size=5)
    r = n_way_top_k(probs, ref, n=50, k=1, trials=4)
    assert r["clamped"] is True and r["n"] == 50 and r["n_effective"] == 10 and r["chance"] == 0.1
    # with n = C every trial uses all classes: success iff the reference is the argmax
    assert r["per_image"] == [float(np.argmax(p) == c) for p, c in zip(probs, ref)]
    assert n_way_top_k_exact(probs, ref, n=50, k=1)["per_image"] == r["per_image"]
    with pytest.raises(ValueError, match="clamp=True"):
        n_way_top_k(probs, ref, n=50, k=1, clamp=False)
    with pytest.raises(ValueError, match="n_effective"):
        n_way_top_k(probs, ref, n=50, k=11)
    assert resolve_n_way(1000, 50, 1, clamp=False) == (50, False)


def test_input_validation():
    probs = np.full((3, 5), 0.2)
    with pytest.raises(ValueError, match="ref_class"):
        n_way_top_k(probs, np.array([0, 1, 5]), n=3)
    with pytest.raises(ValueError, match="ref_class"):
        n_way_top_k(probs, np.array([0, 1]), n=3)
    with pytest.raises(ValueError, match="NaN"):
        n_way_top_k(np.full((3, 5), np.nan), np.array([0, 1, 2]), n=3)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        n_way_top_k(probs, np.array([0, 1, 2]), n=3, k=4)
    with pytest.raises(ValueError, match="ties"):
        n_way_top_k(probs, np.array([0, 1, 2]), n=3, ties="random")
    with pytest.raises(ValueError, match="2-D"):
        n_way_top_k(np.full(5, 0.2), np.array([0]), n=3)


def test_label_variant_and_reference_helper():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(20), size=15)
    labels = rng.integers(0, 4, size=15)  # dataset classes 0..3
    class_map = [7, 2, 19, 11]  # dataset class -> classifier class
    mapped = np.array(class_map)[labels]
    r = n_way_top_k_label(probs, labels, class_map, n=5, k=1, trials=9, seed=2)
    base = n_way_top_k(probs, mapped, n=5, k=1, trials=9, seed=2)
    assert r["reference"] == "label"
    assert r["per_image"] == base["per_image"]
    r_dict = n_way_top_k_label(probs, labels, dict(enumerate(class_map)), n=5, k=1, trials=9, seed=2)
    assert r_dict["per_image"] == base["per_image"]
    ex = n_way_top_k_label(probs, labels, class_map, n=5, k=1, exact=True)
    assert ex["per_image"] == n_way_top_k_exact(probs, mapped, n=5, k=1)["per_image"]
    with pytest.raises(ValueError, match="class_map"):
        n_way_top_k_label(probs, labels, {0: 1}, n=5)
    gt_probs = rng.dirichlet(np.ones(20), size=15)
    np.testing.assert_array_equal(reference_from_probs(gt_probs), gt_probs.argmax(1))


def test_results_are_json_safe():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(12), size=4).astype(np.float32)
    ref = rng.integers(0, 12, size=4)
    for r in (n_way_top_k(probs, ref, n=4), n_way_top_k_exact(probs, ref, n=4),
              n_way_top_k_label(probs, ref, n=4)):
        s = json.dumps(r, allow_nan=False)
        assert json.loads(s) == r
        assert math.isfinite(r["value"])
