"""Top-k accuracy and macro-F1 vs scikit-learn and hand-made cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, top_k_accuracy_score

from bench.metrics import classification_metrics, macro_f1, top1, top3, top5, top_k_accuracy


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    N, C = 300, 40
    labels = rng.integers(0, C, size=N)
    logits = rng.normal(size=(N, C))
    logits[np.arange(N), labels] += 1.5  # a better-than-chance classifier
    return logits, labels


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_matches_sklearn(scored, k):
    logits, labels = scored
    ref = top_k_accuracy_score(labels, logits, k=k, labels=np.arange(logits.shape[1]))
    r = top_k_accuracy(logits, labels, k=k)
    assert r["value"] == pytest.approx(ref, abs=1e-12)
    assert len(r["per_trial"]) == len(labels) and set(r["per_trial"]) <= {0.0, 1.0}


def test_registered_top_k_and_summary(scored):
    logits, labels = scored
    assert top1(logits, labels)["value"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert top3(logits, labels)["k"] == 3 and top5(logits, labels)["k"] == 5
    s = classification_metrics(logits, labels)
    assert s["top1"] == top1(logits, labels)["value"] and s["top5"] == top5(logits, labels)["value"]
    assert s["macro_f1"] == macro_f1(logits, labels)["value"]
    assert len(s["per_trial_top3"]) == len(labels)
    json.dumps(s, allow_nan=False)


def test_macro_f1_matches_sklearn(scored):
    logits, labels = scored
    r = macro_f1(logits, labels)
    assert r["value"] == pytest.approx(f1_score(labels, logits.argmax(1), average="macro"), abs=1e-12)
    # a class never predicted nor present is excluded by default (sklearn), counted as 0 with all_classes
    sub = labels < 20
    lg = logits[sub][:, :25]
    lb = labels[sub]
    pred = lg.argmax(1)
    assert macro_f1(lg, lb)["value"] == pytest.approx(f1_score(lb, pred, average="macro"), abs=1e-12)
    all_c = macro_f1(lg, lb, all_classes=True)
    assert all_c["value"] == pytest.approx(
        f1_score(lb, pred, average="macro", labels=np.arange(25), zero_division=0), abs=1e-12)


def test_hand_made_cases():
    logits = np.array([[3.0, 2.0, 1.0, 0.0],   # label 0: rank 1
                       [3.0, 2.0, 1.0, 0.0],   # label 2: rank 3
                       [0.0, 1.0, 2.0, 3.0]])  # label 0: rank 4
    labels = np.array([0, 2, 0])
    assert top_k_accuracy(logits, labels, k=1)["per_trial"] == [1.0, 0.0, 0.0]
    assert top_k_accuracy(logits, labels, k=3)["per_trial"] == [1.0, 1.0, 0.0]
    r = top_k_accuracy(logits, labels, k=5)  # k >= C: trivially correct
    assert r["value"] == 1.0 and r["k_effective"] == 4
    # predictions: 0, 0, 3 -> class 0: TP1 FP1 FN1 -> F1 .5 ; class 2: FN1 -> 0 ; class 3: FP1 -> 0
    assert macro_f1(logits, labels)["value"] == pytest.approx(0.5 / 3)
    # constant logits: ties broken at random in expectation -> k / C, not 1.0
    const = np.zeros((10, 40))
    assert top_k_accuracy(const, np.arange(10), k=1)["value"] == pytest.approx(1 / 40)
    assert top_k_accuracy(const, np.arange(10), k=5)["value"] == pytest.approx(5 / 40)
    with pytest.raises(ValueError, match="labels"):
        top_k_accuracy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="k must"):
        top_k_accuracy(logits, labels, k=0)
