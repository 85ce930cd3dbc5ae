"""Classification metrics of the EEG classifier: top-1/3/5 accuracy and macro-F1.

Top-k tie rule (same as N-way Top-K, ``ties="expected"``): the true class is outranked by the
``g`` classes with a strictly greater score and tied with ``t`` others; a trial scores
``clip(k - g, 0, t + 1) / (t + 1)`` (random tie-breaking in expectation; ``1[g < k]`` without
ties). A model emitting constant logits thus scores ``k / C`` instead of 1.0 (optimistic) or
0.0 (pessimistic). ``k >= C`` makes every trial correct; the result records ``k_effective``.

Macro-F1 uses the argmax prediction (first index on exact ties) and averages per-class
``F1 = 2 TP / (2 TP + FP + FN)`` over the classes present in the labels or the predictions
(scikit-learn's ``f1_score(average="macro")`` convention); pass ``num_classes`` with
``all_classes=True`` to average over every class instead (absent classes score 0).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._util import as_float_matrix, as_index_vector, tie_credit
from .registry import register

__all__ = ["top_k_accuracy", "top1", "top3", "top5", "macro_f1", "classification_metrics"]


def _prepare(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    S = as_float_matrix(logits, name="logits")
    y = as_index_vector(labels, name="labels", length=S.shape[0], upper=S.shape[1])
    return S, y


def _topk_credit(S: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    s_true = S[np.arange(S.shape[0]), y][:, None]
    g = (S > s_true).sum(axis=1)
    t = (S == s_true).sum(axis=1) - 1
    return tie_credit(g, t, k)


def top_k_accuracy(logits: Any, labels: Any, k: int = 1) -> dict:
    """Top-``k`` accuracy from scores [N, C] (logits or probabilities) and labels [N].

    Returns value, k, k_effective, count, num_classes and ``per_trial`` (credit in [0, 1] per
    trial; 0/1 without ties) for bootstrapping over test trials.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    S, y = _prepare(logits, labels)
    k_eff = min(int(k), S.shape[1])
    credit = _topk_credit(S, y, k_eff)
    return {
        "value": float(credit.mean()),
        "k": int(k),
        "k_effective": int(k_eff),
        "count": int(S.shape[0]),
        "num_classes": int(S.shape[1]),
        "per_trial": [float(v) for v in credit],
    }


@register("top1", higher_is_better=True, label="top-1", interval="wilson", rank=10, description="Top-1 accuracy of the EEG classifier")
def top1(logits: Any, labels: Any) -> dict:
    """Top-1 accuracy (see :func:`top_k_accuracy`)."""
    return top_k_accuracy(logits, labels, k=1)


@register("top3", higher_is_better=True, label="top-3", interval="wilson", show=False, description="Top-3 accuracy of the EEG classifier")
def top3(logits: Any, labels: Any) -> dict:
    """Top-3 accuracy (see :func:`top_k_accuracy`)."""
    return top_k_accuracy(logits, labels, k=3)


@register("top5", higher_is_better=True, label="top-5", interval="wilson", rank=20, description="Top-5 accuracy of the EEG classifier")
def top5(logits: Any, labels: Any) -> dict:
    """Top-5 accuracy (see :func:`top_k_accuracy`)."""
    return top_k_accuracy(logits, labels, k=5)


@register("macro_f1", higher_is_better=True, label="macro-F1", level="set", show=False, description="Macro-averaged F1 of the EEG classifier (argmax)")
def macro_f1(logits: Any, labels: Any, num_classes: int | None = None, all_classes: bool = False) -> dict:
    """Macro-F1 of argmax predictions; see the module doc for the class set averaged over.

    Returns value, count, num_classes, classes (averaged over), per_class_f1 (aligned with
    ``classes``), per_trial (1 if the argmax is correct) and ``averaging``.
    """
    S, y = _prepare(logits, labels)
    C = int(num_classes) if num_classes is not None else S.shape[1]
    if C < S.shape[1]:
        raise ValueError(f"num_classes={C} is smaller than the number of score columns {S.shape[1]}")
    pred = np.argmax(S, axis=1)
    classes = np.arange(C) if all_classes else np.union1d(y, pred)
    tp = np.array([np.sum((pred == c) & (y == c)) for c in classes], dtype=np.float64)
    fp = np.array([np.sum((pred == c) & (y != c)) for c in classes], dtype=np.float64)
    fn = np.array([np.sum((pred != c) & (y == c)) for c in classes], dtype=np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "value": float(f1.mean()),
        "count": int(S.shape[0]),
        "num_classes": int(C),
        "averaging": "all_classes" if all_classes else "present_classes",
        "classes": [int(c) for c in classes],
        "per_class_f1": [float(v) for v in f1],
        "per_trial": [float(v) for v in (pred == y)],
    }


def classification_metrics(logits: Any, labels: Any, ks: Sequence[int] = (1, 3, 5)) -> dict:
    """Flat summary: ``top{k}`` for each k, ``macro_f1``, count, num_classes, and
    ``per_trial_top{k}`` lists for bootstrapping."""
    out: dict = {}
    for k in ks:
        r = top_k_accuracy(logits, labels, k=k)
        out[f"top{k}"] = r["value"]
        out[f"per_trial_top{k}"] = r["per_trial"]
    f = macro_f1(logits, labels)
    out["macro_f1"] = f["value"]
    out["count"] = f["count"]
    out["num_classes"] = f["num_classes"]
    return out
