"""Scoring: predictions and generated images of the test trials -> flat metric results with CIs.

Every metric result is ``{"value", "ci_low", "ci_high", "ci_method", "ci_level", ...protocol settings}``
(``ci_method`` is a key of :data:`bench.metrics.intervals.CI_METHODS`). Per-trial metrics (a trial's
value averaged over its samples) get the interval of their kind: rates (top-k, N-way) Wilson, means
(SSIM, CS) Student t. IS, FID and KID are set-level: headline and jackknife interval both come from
one torch-fidelity feature pass over the images (:mod:`bench.metrics.set_level`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from bench.metrics import (
    attribute_fidelity,
    classification_metrics,
    clip_similarity,
    n_way_top_k,
    n_way_top_k_label,
    ssim,
)
from bench.metrics.intervals import draws_per_trial, mean_interval, rate_interval


@dataclass(frozen=True)
class ScoreSettings:
    n: int = 50
    k: int = 1
    trials: int = 50
    seed: int = 0
    n_boot: int = 1000  # read from older profiles and records; the metric intervals do not resample (Wilson, t, jackknife)
    fidelity: bool = True  # IS, FID and KID (torch-fidelity)
    is_splits: int = 1  # Inception Score splits: a protocol setting, never derived from the set size

    def to_dict(self) -> dict:
        return asdict(self)


def _with_ci(value: float, per_trial: np.ndarray | None, s: ScoreSettings, *, interval: str | None = None, draws: float | None = None, **extra) -> dict:
    """Headline value, the interval of the metric's kind over trials, settings, and the per-trial values
    (in test-trial order) that paired comparisons between methods use.

    ``interval``: "wilson" (a rate) or "student_t" (a mean); by default N-way results (they carry
    ``chance``) are rates and every other metric a mean. ``draws``: 0/1 outcomes behind one per-trial
    rate (default: :func:`~bench.metrics.intervals.draws_per_trial`).
    """
    out = {"value": float(value), "ci_low": None, "ci_high": None}
    if per_trial is not None and len(per_trial) > 0:
        kind = interval or ("wilson" if "chance" in extra else "student_t")
        v = np.asarray(per_trial, dtype=float)
        iv = rate_interval(v, draws_per_unit=draws or draws_per_trial(extra)) if kind == "wilson" else mean_interval(v)
        out.update({k: iv[k] for k in ("ci_low", "ci_high", "ci_method", "ci_level")})
    out.update(extra)
    if per_trial is not None:
        out["per_trial"] = [round(float(v), 6) for v in per_trial]
    return out


def score_classification(logits: torch.Tensor, labels: torch.Tensor, s: ScoreSettings) -> dict:
    m = classification_metrics(logits.detach().cpu().numpy(), labels.cpu().numpy())
    out = {}
    for k in (1, 3, 5):
        out[f"top{k}"] = _with_ci(m[f"top{k}"], np.array(m[f"per_trial_top{k}"]), s, interval="wilson", draws=1)
    out["macro_f1"] = _with_ci(m["macro_f1"], None, s)
    return out


def _class_map(classifier, wnids: list[str] | None) -> np.ndarray | None:
    """The classifier's class index of each dataset class, or None where it has no such map."""
    if getattr(classifier, "label_space", None) == "dataset":
        return np.arange(classifier.n_classes)
    if wnids is None or not hasattr(classifier, "class_of_label"):
        return None
    return classifier.class_of_label(list(wnids))


def score_attributes(flat: np.ndarray, n: int, S: int, classifier, true: dict[str, np.ndarray], s: ScoreSettings) -> dict:
    """Attribute fidelity of ``flat`` [n*S, h, w, 3] (trial-major) read by the classifier's attribute heads."""
    probs = classifier.attribute_probs(flat)
    predicted = {a: p.argmax(1).numpy() for a, p in probs.items() if a in true}
    r = attribute_fidelity(predicted, true, {a: int(probs[a].shape[1]) for a in predicted}, samples=S)
    return _with_ci(r["value"], r["per_trial"], s, interval="wilson", outcomes_per_trial=len(r["attributes"]) * S, chance=r["chance"], attributes=r["attributes"],
                    per_attribute=r["per_attribute"], reader="mini classifier attribute heads")


MIN_SET_IMAGES = 2  # IS, FID and KID need at least this many images (FID: a covariance per set)
SET_METRICS = ("inception_score", "fid", "kid")


def score_images(
    gt: np.ndarray, gen: np.ndarray, backbones, s: ScoreSettings, labels: np.ndarray | None = None, not_computable: dict | None = None,
    *, wnids: list[str] | None = None, attributes: dict[str, np.ndarray] | None = None,
) -> dict:
    """``gt [N, H, W, 3]`` and ``gen [N, S, h, w, 3]`` (uint8) -> image metrics.

    ``labels`` [N] (dataset class indices) with ``wnids`` (the dataset's classes) add the label-based
    N-way Top-K where the classifier maps the dataset's classes to its own; ``attributes`` (true value
    index of each attribute per trial, a synthetic world's) add attribute fidelity.

    GT images are resized to the generated resolution for SSIM (recorded). Set-level metrics that
    too few images cannot give are left out, with the reason in ``not_computable`` (if given).
    """
    from PIL import Image

    n, S, h, w = gen.shape[:4]
    flat = gen.reshape(n * S, h, w, 3)
    out: dict = {}
    # N-way Top-K: reference = the classifier's argmax on the ground-truth image.
    p_gt = backbones.classifier.probs(gt).numpy()
    p_gen = backbones.classifier.probs(flat).numpy()
    ref = np.repeat(p_gt.argmax(1), S)
    r = n_way_top_k(p_gen, ref, n=s.n, k=s.k, trials=s.trials, seed=s.seed, clamp=True)
    per_trial = np.asarray(r["per_image"]).reshape(n, S).mean(1)
    settings = {k: r[k] for k in ("n", "n_effective", "k", "trials", "seed", "clamped", "chance") if k in r}
    out["n_way_top_k"] = _with_ci(r["value"], per_trial, s, **settings, reference="classifier argmax on ground truth")
    class_map = _class_map(backbones.classifier, wnids)
    if labels is not None and class_map is not None:
        # Label-based variant: the true class, mapped to the classifier's classes.
        rl = n_way_top_k_label(p_gen, np.repeat(labels, S), class_map, n=s.n, k=s.k, trials=s.trials, seed=s.seed, clamp=True)
        out["n_way_top_k_label"] = _with_ci(rl["value"], np.asarray(rl["per_image"]).reshape(n, S).mean(1), s, **settings, reference="dataset label")
    if attributes and hasattr(backbones.classifier, "attribute_probs"):
        out["attribute_fidelity"] = score_attributes(flat, n, S, backbones.classifier, attributes, s)
    # SSIM at the generated resolution.
    gt_small = np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BICUBIC)) for im in gt])
    ss = ssim(np.repeat(gt_small, S, axis=0), flat)
    out["ssim"] = _with_ci(ss["value"], np.asarray(ss["per_pair"]).reshape(n, S).mean(1), s, resolution=[h, w], data_range=255, implementation="skimage.metrics.structural_similarity")
    # CLIP similarity.
    e_gt = backbones.image_encoder.encode(gt).numpy()
    e_gen = backbones.image_encoder.encode(flat).numpy()
    cs = clip_similarity(np.repeat(e_gt, S, axis=0), e_gen)
    out["clip_similarity"] = _with_ci(cs["value"], np.asarray(cs["per_pair"]).reshape(n, S).mean(1), s)
    if s.fidelity and backbones.fidelity is not None:
        if min(n, n * S) < MIN_SET_IMAGES:
            for name in SET_METRICS:
                (not_computable if not_computable is not None else {})[name] = f"needs at least {MIN_SET_IMAGES} images; got {n} ground truth(s)"
        else:
            out.update(_fidelity_metrics(gt_small, flat, n, S, backbones, s))
    return out


def _fidelity_metrics(gt: np.ndarray, flat: np.ndarray, n: int, S: int, backbones, s: ScoreSettings) -> dict:
    """IS, FID and KID of ``flat`` [n*S, h, w, 3] (trial-major) against ``gt`` [n, h, w, 3]: one pass of
    torch-fidelity's extractor over each set; headline and interval from those arrays."""
    from bench.metrics import _fidelity
    from bench.metrics.set_level import fid_with_ci, inception_score_with_ci, kid_with_ci

    kw = backbones.fidelity.fidelity_kwargs()
    layers = _fidelity.feature_layers(kw.get("feature_extractor"))
    chw = torch.from_numpy(flat).permute(0, 3, 1, 2).contiguous()
    gt_chw = torch.from_numpy(gt).permute(0, 3, 1, 2).contiguous()
    fg, ft = _fidelity.extract_features([chw, gt_chw], list(layers.values()), **kw)
    groups = np.repeat(np.arange(n), S)
    common = {"extractor": kw.get("feature_extractor", "inception-v3-compat"), "backend": "torch-fidelity " + _fidelity.version()}
    reference = {"reference": "matched ground-truth test images"}
    return {
        "inception_score": {**inception_score_with_ci(fg[layers["isc"]], groups, splits=s.is_splits), **common, "images": "generated only"},
        "fid": {**fid_with_ci(fg[layers["fid"]], ft[layers["fid"]], groups, np.arange(n)), **common, **reference},
        "kid": {**kid_with_ci(fg[layers["kid"]], ft[layers["kid"]], groups, np.arange(n)), **common, **reference},
    }
