"""Scoring: predictions and generated images of the test trials -> flat metric results with CIs.

One loop (:func:`score`) over the metric registry: every metric with a scorer whose ``needs`` the
trial's :class:`ScoringInputs` have is computed, built-in or plugin alike. Shared intermediate work
(classifier probabilities, CLIP embeddings, one torch-fidelity feature pass) is computed once per
trial, on first use.

Every metric result is ``{"value", "ci_low", "ci_high", "ci_method", "ci_level", ...protocol settings}``
(``ci_method`` is a key of :data:`bench.metrics.intervals.CI_METHODS`). Per-trial metrics (a trial's
value averaged over its samples) get the interval of their kind: rates (top-k, N-way) Wilson, means
(SSIM, CS) Student t. IS, FID and KID are set-level: headline and jackknife interval both come from
one torch-fidelity feature pass over the images (:mod:`bench.metrics.set_level`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from functools import cached_property
from typing import Any, Callable

import numpy as np
import torch

from bench.metrics import (
    METRICS,
    Metric,
    NEEDS,
    attribute_fidelity,
    classification_metrics,
    clip_similarity,
    n_way_top_k,
    n_way_top_k_label,
    scores,
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


MIN_SET_IMAGES = 2  # IS, FID and KID need at least this many images (FID: a covariance per set)


class NotComputable(Exception):
    """A scorer's inputs are present but cannot give the metric (e.g. too few images); the message says why."""


@dataclass
class ScoringInputs:
    """What one trial hands to scoring. ``needs`` of a metric name these (see :meth:`has`):

    - ``logits``: the EEG classifier's logits ``[N, C]`` with the test ``labels``;
    - ``labels``: dataset class indices ``[N]`` of the test trials (with ``wnids``, the dataset's classes);
    - ``images``: ground truth ``gt [N, H, W, 3]`` and generated ``gen [N, S, h, w, 3]`` (uint8) and backbones;
    - ``stage1``: with ``images``, the images of a cascade's first stage in ``stages["stage1"]`` (same shape as ``gen``);
    - ``attributes``: true attribute value indices per test trial (a synthetic world's);
    - ``fidelity``: a fidelity backbone, with ``settings.fidelity`` on (IS, FID, KID).
    """

    settings: ScoreSettings = field(default_factory=ScoreSettings)
    backbones: Any = None
    logits: torch.Tensor | None = None
    labels: np.ndarray | None = None
    wnids: list[str] | None = None
    gt: np.ndarray | None = None
    gen: np.ndarray | None = None
    attributes: dict[str, np.ndarray] | None = None
    stages: dict[str, np.ndarray] = field(default_factory=dict)  # intermediate images by stage name (e.g. "stage1")

    def has(self, need: str) -> bool:
        """Whether these inputs meet ``need`` (one of :data:`bench.metrics.registry.NEEDS`)."""
        return bool(_HAS[need](self))

    # Shared work, computed once per trial on first use ---------------------------------------------
    @property
    def n(self) -> int:
        return int(self.gen.shape[0])

    @property
    def samples(self) -> int:
        return int(self.gen.shape[1])

    @cached_property
    def classification(self) -> dict:
        """Top-k and macro-F1 of the logits (per-trial hits included)."""
        return classification_metrics(self.logits.detach().cpu().numpy(), np.asarray(self.labels))

    @cached_property
    def flat(self) -> np.ndarray:
        """Generated images ``[N * S, h, w, 3]``, trial-major."""
        return self.gen.reshape(self.n * self.samples, *self.gen.shape[2:])

    @cached_property
    def gt_small(self) -> np.ndarray:
        """Ground truth resized (bicubic) to the generated resolution."""
        from PIL import Image

        h, w = self.gen.shape[2:4]
        return np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BICUBIC)) for im in self.gt])

    @cached_property
    def probs_gt(self) -> np.ndarray:
        return self.backbones.classifier.probs(self.gt).numpy()

    @cached_property
    def probs_gen(self) -> np.ndarray:
        return self.backbones.classifier.probs(self.flat).numpy()

    @cached_property
    def fidelity_features(self) -> tuple[dict, dict, dict]:
        """(generated, ground-truth) feature arrays by layer, and the extractor's layer names."""
        from bench.metrics import _fidelity

        kw = self.backbones.fidelity.fidelity_kwargs()
        layers = _fidelity.feature_layers(kw.get("feature_extractor"))
        chw = torch.from_numpy(self.flat).permute(0, 3, 1, 2).contiguous()
        gt_chw = torch.from_numpy(self.gt_small).permute(0, 3, 1, 2).contiguous()
        fg, ft = _fidelity.extract_features([chw, gt_chw], list(layers.values()), **kw)
        common = {"extractor": kw.get("feature_extractor", "inception-v3-compat"), "backend": "torch-fidelity " + _fidelity.version()}
        return fg, ft, {"layers": layers, "common": common}

    def stage(self, name: str) -> "ScoringInputs":
        """The same inputs with ``gen`` = the images of stage ``name`` (computed once per stage)."""
        views = self.__dict__.setdefault("_stage_views", {})
        if name not in views:
            views[name] = replace(self, gen=self.stages[name], stages={})
        return views[name]

    def per_trial(self, per_image: Any) -> np.ndarray:
        """Per-image values ``[N * S]`` averaged over each trial's samples -> ``[N]``."""
        return np.asarray(per_image, dtype=float).reshape(self.n, self.samples).mean(1)


_HAS: dict[str, Callable[[ScoringInputs], bool]] = {
    "logits": lambda i: i.logits is not None and i.labels is not None,
    "labels": lambda i: i.labels is not None,
    "images": lambda i: i.gt is not None and i.gen is not None and i.backbones is not None,
    "stage1": lambda i: _HAS["images"](i) and "stage1" in i.stages,
    "attributes": lambda i: bool(i.attributes),
    "fidelity": lambda i: i.settings.fidelity and getattr(i.backbones, "fidelity", None) is not None,
}
if set(_HAS) != set(NEEDS):
    raise ImportError(f"scoring inputs {sorted(_HAS)} differ from the registry's NEEDS {sorted(NEEDS)}")


def score(inputs: ScoringInputs, metrics: list[str] | None = None) -> tuple[dict, dict]:
    """Every registered metric with a scorer whose needs ``inputs`` meet (or only ``metrics``) ->
    ``(results, not_computable)``: metric name -> flat result with its interval; name -> why not."""
    results: dict = {}
    skipped: dict[str, str] = {}
    for m in list(METRICS.values()):
        if m.score is None or (metrics is not None and m.name not in metrics) or not all(inputs.has(n) for n in m.needs):
            continue
        try:
            r = m.score(inputs)
        except NotComputable as exc:
            skipped[m.name] = str(exc)
            continue
        if r is not None:
            results[m.name] = finish(m, r, inputs.settings)
    return results, skipped


def finish(metric: Metric, result: dict, s: ScoreSettings) -> dict:
    """A scorer's ``{"value", "per_trial"?, ...}`` completed with the interval its spec names (scorers
    that set ``ci_low`` themselves are kept as they are)."""
    if "value" not in result:
        raise ValueError(f"metric {metric.name}: its scorer returned no 'value'")
    if "ci_low" in result:
        return result
    rest = dict(result)
    value, per_trial = rest.pop("value"), rest.pop("per_trial", None)
    if metric.level == "set" or per_trial is None:
        return _with_ci(value, None, s, **rest)
    return _with_ci(value, np.asarray(per_trial, dtype=float), s, interval=metric.interval, **rest)


# --------------------------------------------------------------------------------------------------
# Built-in scorers (the metric functions and their specs are in bench.metrics)
# --------------------------------------------------------------------------------------------------


def _top_k(k: int):
    def scorer(inp: ScoringInputs) -> dict:
        m = inp.classification
        return _with_ci(m[f"top{k}"], np.array(m[f"per_trial_top{k}"]), inp.settings, interval="wilson", draws=1, n_classes=int(inp.logits.shape[1]))

    return scorer


for _k in (1, 3, 5):
    scores(f"top{_k}", needs=("logits",))(_top_k(_k))


@scores("macro_f1", needs=("logits",))
def _macro_f1(inp: ScoringInputs) -> dict:
    return _with_ci(inp.classification["macro_f1"], None, inp.settings)


def _nway_settings(r: dict) -> dict:
    return {k: r[k] for k in ("n", "n_effective", "k", "trials", "seed", "clamped", "chance") if k in r}


@scores("n_way_top_k", needs=("images",))
def _n_way(inp: ScoringInputs) -> dict:
    """Reference: the classifier's argmax on the ground-truth image."""
    s = inp.settings
    ref = np.repeat(inp.probs_gt.argmax(1), inp.samples)
    r = n_way_top_k(inp.probs_gen, ref, n=s.n, k=s.k, trials=s.trials, seed=s.seed, clamp=True)
    return _with_ci(r["value"], inp.per_trial(r["per_image"]), s, **_nway_settings(r), reference="classifier argmax on ground truth")


def _class_map(classifier, wnids: list[str] | None) -> np.ndarray | None:
    """The classifier's class index of each dataset class, or None where it has no such map."""
    if getattr(classifier, "label_space", None) == "dataset":
        return np.arange(classifier.n_classes)
    if wnids is None or not hasattr(classifier, "class_of_label"):
        return None
    return classifier.class_of_label(list(wnids))


@scores("n_way_top_k_label", needs=("images", "labels"))
def _n_way_label(inp: ScoringInputs) -> dict | None:
    """Reference: the true class, mapped to the classifier's classes (where it has such a map)."""
    class_map = _class_map(inp.backbones.classifier, inp.wnids)
    if class_map is None:
        return None
    s = inp.settings
    r = n_way_top_k_label(inp.probs_gen, np.repeat(inp.labels, inp.samples), class_map, n=s.n, k=s.k, trials=s.trials, seed=s.seed, clamp=True)
    return _with_ci(r["value"], inp.per_trial(r["per_image"]), s, **_nway_settings(r), reference="dataset label")


@scores("attribute_fidelity", needs=("images", "attributes"))
def _attributes(inp: ScoringInputs) -> dict | None:
    """Attributes of each reconstruction read by the classifier's attribute heads, against the truth."""
    classifier = inp.backbones.classifier
    if not hasattr(classifier, "attribute_probs"):
        return None
    probs = classifier.attribute_probs(inp.flat)
    predicted = {a: p.argmax(1).numpy() for a, p in probs.items() if a in inp.attributes}
    r = attribute_fidelity(predicted, inp.attributes, {a: int(probs[a].shape[1]) for a in predicted}, samples=inp.samples)
    return _with_ci(r["value"], r["per_trial"], inp.settings, interval="wilson", outcomes_per_trial=len(r["attributes"]) * inp.samples, chance=r["chance"],
                    attributes=r["attributes"], per_attribute=r["per_attribute"], reader="mini classifier attribute heads")


@scores("stage1_attribute_fidelity", needs=("stage1", "attributes"))
def _stage1_attributes(inp: ScoringInputs) -> dict | None:
    r = _attributes(inp.stage("stage1"))
    return None if r is None else {**r, "images": "stage 1"}


@scores("ssim", needs=("images",))
def _ssim(inp: ScoringInputs) -> dict:
    """At the generated resolution (ground truth resized; recorded)."""
    h, w = inp.gen.shape[2:4]
    ss = ssim(np.repeat(inp.gt_small, inp.samples, axis=0), inp.flat)
    return _with_ci(ss["value"], inp.per_trial(ss["per_pair"]), inp.settings, resolution=[h, w], data_range=255, implementation="skimage.metrics.structural_similarity")


@scores("clip_similarity", needs=("images",))
def _clip_similarity(inp: ScoringInputs) -> dict:
    e_gt = inp.backbones.image_encoder.encode(inp.gt).numpy()
    e_gen = inp.backbones.image_encoder.encode(inp.flat).numpy()
    cs = clip_similarity(np.repeat(e_gt, inp.samples, axis=0), e_gen)
    return _with_ci(cs["value"], inp.per_trial(cs["per_pair"]), inp.settings)


@scores("stage1_clip_similarity", needs=("stage1",))
def _stage1_clip_similarity(inp: ScoringInputs) -> dict:
    return {**_clip_similarity(inp.stage("stage1")), "images": "stage 1"}


def _set_features(inp: ScoringInputs, layer: str) -> tuple[np.ndarray, np.ndarray, dict]:
    if min(inp.n, inp.n * inp.samples) < MIN_SET_IMAGES:
        raise NotComputable(f"needs at least {MIN_SET_IMAGES} images; got {inp.n} ground truth(s)")
    fg, ft, info = inp.fidelity_features
    name = info["layers"][layer]
    return fg[name], ft[name], info["common"]


_REFERENCE = {"reference": "matched ground-truth test images"}


@scores("inception_score", needs=("images", "fidelity"))
def _inception_score(inp: ScoringInputs) -> dict:
    from bench.metrics.set_level import inception_score_with_ci

    fg, _, common = _set_features(inp, "isc")
    return {**inception_score_with_ci(fg, np.repeat(np.arange(inp.n), inp.samples), splits=inp.settings.is_splits), **common, "images": "generated only"}


@scores("fid", needs=("images", "fidelity"))
def _fid(inp: ScoringInputs) -> dict:
    from bench.metrics.set_level import fid_with_ci

    fg, ft, common = _set_features(inp, "fid")
    return {**fid_with_ci(fg, ft, np.repeat(np.arange(inp.n), inp.samples), np.arange(inp.n)), **common, **_REFERENCE}


@scores("kid", needs=("images", "fidelity"))
def _kid(inp: ScoringInputs) -> dict:
    from bench.metrics.set_level import kid_with_ci

    fg, ft, common = _set_features(inp, "kid")
    return {**kid_with_ci(fg, ft, np.repeat(np.arange(inp.n), inp.samples), np.arange(inp.n)), **common, **_REFERENCE}
