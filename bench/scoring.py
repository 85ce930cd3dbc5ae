"""Scoring: predictions and generated images of the test trials -> flat metric results with CIs.

Every metric result is ``{"value", "ci_low", "ci_high", ...protocol settings}``; per-trial values
(averaged over a trial's samples) are bootstrapped over test trials (95% percentile CI).
IS and FID are set-level: their headline comes from torch-fidelity, their CI from bootstrapping
trials over the same extractor's logits/features where the backbone exposes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from bench.metrics import (
    bootstrap_summary,
    classification_metrics,
    clip_similarity,
    fid_from_features,
    inception_score_from_logits,
    n_way_top_k,
    ssim,
)


@dataclass(frozen=True)
class ScoreSettings:
    n: int = 50
    k: int = 1
    trials: int = 50
    seed: int = 0
    n_boot: int = 1000
    fidelity: bool = True  # IS and FID (torch-fidelity)

    def to_dict(self) -> dict:
        return asdict(self)


def _with_ci(value: float, per_trial: np.ndarray | None, s: ScoreSettings, **extra) -> dict:
    """Headline value, bootstrap CI over trials, settings, and the per-trial values (in test-trial
    order) that paired comparisons between methods use."""
    out = {"value": float(value), "ci_low": None, "ci_high": None}
    if per_trial is not None and len(per_trial) > 1:
        b = bootstrap_summary(np.asarray(per_trial, dtype=float), n_boot=s.n_boot, seed=s.seed)
        out["ci_low"], out["ci_high"] = b["ci_low"], b["ci_high"]
    out.update(extra)
    if per_trial is not None:
        out["per_trial"] = [round(float(v), 6) for v in per_trial]
    return out


def score_classification(logits: torch.Tensor, labels: torch.Tensor, s: ScoreSettings) -> dict:
    m = classification_metrics(logits.detach().cpu().numpy(), labels.cpu().numpy())
    out = {}
    for k in (1, 3, 5):
        out[f"top{k}"] = _with_ci(m[f"top{k}"], np.array(m[f"per_trial_top{k}"]), s)
    out["macro_f1"] = _with_ci(m["macro_f1"], None, s)
    return out


def _bootstrap_set_metric(fn, n_trials: int, s: ScoreSettings) -> tuple[float | None, float | None]:
    """Percentile CI of a set-level metric by resampling trials (fewer resamples: costly)."""
    rng = np.random.default_rng(s.seed)
    vals = [fn(rng.integers(0, n_trials, n_trials)) for _ in range(min(100, s.n_boot))]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


MIN_SET_IMAGES = 2  # IS and FID need at least this many images (FID: a covariance per set)


def score_images(
    gt: np.ndarray, gen: np.ndarray, backbones, s: ScoreSettings, labels: np.ndarray | None = None, not_computable: dict | None = None
) -> dict:
    """``gt [N, H, W, 3]`` and ``gen [N, S, h, w, 3]`` (uint8) -> image metrics.

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
    if labels is not None and getattr(backbones.classifier, "label_space", None) == "dataset":
        # Label-based variant: the true class, where the classifier's classes are the dataset's.
        rl = n_way_top_k(p_gen, np.repeat(labels, S), n=s.n, k=s.k, trials=s.trials, seed=s.seed, clamp=True)
        out["n_way_top_k_label"] = _with_ci(rl["value"], np.asarray(rl["per_image"]).reshape(n, S).mean(1), s, **settings, reference="dataset label")
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
            for name in ("inception_score", "fid"):
                (not_computable if not_computable is not None else {})[name] = f"needs at least {MIN_SET_IMAGES} images; got {n} ground truth(s)"
        else:
            out.update(_fidelity_metrics(gt_small, flat, n, S, backbones, s))
    return out


def _fidelity_metrics(gt: np.ndarray, flat: np.ndarray, n: int, S: int, backbones, s: ScoreSettings) -> dict:
    from bench.metrics import fid_torch_fidelity, inception_score_torch_fidelity

    kw = backbones.fidelity.fidelity_kwargs()
    chw = torch.from_numpy(flat).permute(0, 3, 1, 2).contiguous()
    gt_chw = torch.from_numpy(gt).permute(0, 3, 1, 2).contiguous()
    splits = 10 if flat.shape[0] >= 1000 else 1
    isr = inception_score_torch_fidelity(chw, splits=splits, **kw)
    fr = fid_torch_fidelity(gt_chw, chw, **kw)
    is_ci = fid_ci = (None, None)
    if hasattr(backbones.fidelity, "features"):
        fg = {k: v.numpy() for k, v in backbones.fidelity.features(flat).items()}
        ft = backbones.fidelity.features(gt)["features"].numpy()
        logits = fg["logits_unbiased"].reshape(n, S, -1)
        feats = fg["features"].reshape(n, S, -1)
        is_ci = _bootstrap_set_metric(lambda idx: inception_score_from_logits(logits[idx].reshape(-1, logits.shape[-1]), splits=1)["value"], n, s)
        fid_ci = _bootstrap_set_metric(lambda idx: fid_from_features(ft[idx], feats[idx].reshape(-1, feats.shape[-1])), n, s)
    return {
        "inception_score": {"value": isr["value"], "ci_low": is_ci[0], "ci_high": is_ci[1], "splits": splits, "count": int(flat.shape[0]), "extractor": kw.get("feature_extractor", "inception-v3-compat"), "images": "generated only"},
        "fid": {"value": fr["value"], "ci_low": fid_ci[0], "ci_high": fid_ci[1], "ci_method": "percentile bootstrap over trials; biased upward (a resampled set repeats images), read it as spread", "count_generated": int(flat.shape[0]), "count_reference": int(gt.shape[0]), "extractor": kw.get("feature_extractor", "inception-v3-compat"), "reference": "matched ground-truth test images"},
    }
