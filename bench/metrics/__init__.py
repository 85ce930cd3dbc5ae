"""Metric core of brainvis-bench (REFERENCE §4-5).

Small functions with explicit array inputs; each registered metric returns a flat JSON-safe
dict whose ``"value"`` is the headline number. Look metrics up by name with
:func:`get_metric`; ``METRICS[name].higher_is_better`` gives the direction.
"""

from .registry import METRICS, NEEDS, Metric, UnknownMetricError, get_metric, list_metrics, register, scores, shown_metrics
from .nway import (
    TIE_RULES,
    n_way_top_k,
    n_way_top_k_exact,
    n_way_top_k_label,
    reference_from_probs,
    resolve_n_way,
)
from .inception_score import inception_score_from_logits, inception_score_torch_fidelity
from .fid import feature_statistics, fid, fid_from_features, fid_torch_fidelity, frechet_distance
from .ssim import SSIM_SETTINGS, ssim
from .clip_similarity import clip_similarity
from .classification import classification_metrics, macro_f1, top1, top3, top5, top_k_accuracy
from .stats import bootstrap_ci, bootstrap_summary, holm, independent_comparison, paired_comparison, subject_comparison
from .intervals import CI_METHODS, interval_of, jackknife_interval, mean_interval, rate_interval, trial_interval, wilson_interval
from .set_level import fid_with_ci, inception_score_with_ci, kid_with_ci
from .attribute_fidelity import attribute_fidelity

__all__ = [
    "METRICS", "NEEDS", "Metric", "UnknownMetricError", "get_metric", "list_metrics", "register", "scores", "shown_metrics",
    "TIE_RULES", "n_way_top_k", "n_way_top_k_exact", "n_way_top_k_label", "reference_from_probs", "resolve_n_way",
    "inception_score_from_logits", "inception_score_torch_fidelity",
    "feature_statistics", "fid", "fid_from_features", "fid_torch_fidelity", "frechet_distance",
    "SSIM_SETTINGS", "ssim",
    "clip_similarity",
    "classification_metrics", "macro_f1", "top1", "top3", "top5", "top_k_accuracy",
    "bootstrap_ci", "bootstrap_summary", "holm", "independent_comparison", "paired_comparison", "subject_comparison",
    "CI_METHODS", "interval_of", "jackknife_interval", "mean_interval", "rate_interval", "trial_interval", "wilson_interval",
    "fid_with_ci", "inception_score_with_ci", "kid_with_ci",
    "attribute_fidelity",
]
