"""Metric registry: names, directions, lookup errors, and JSON-safe results for every metric."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bench.metrics as bm
from bench.metrics import METRICS, Metric, UnknownMetricError, get_metric, list_metrics, register

REQUIRED = {
    "n_way_top_k": True, "n_way_top_k_label": True, "inception_score": True, "fid": False, "ssim": True,
    "clip_similarity": True, "top1": True, "top3": True, "top5": True, "macro_f1": True,
    "kid": False, "attribute_fidelity": True, "inception_score_ci": True, "fid_ci": False,
}


def test_required_metrics_registered_with_direction():
    for name, hib in REQUIRED.items():
        m = get_metric(name)
        assert isinstance(m, Metric) and m.name == name
        assert m.higher_is_better is hib, name
        assert m.description
        json.dumps(m.to_dict())
    assert set(REQUIRED) <= set(list_metrics())


def test_unknown_metric_error_lists_names():
    with pytest.raises(UnknownMetricError) as e:
        get_metric("fidd")
    msg = str(e.value)
    assert "fidd" in msg and "fid" in msg and "n_way_top_k" in msg
    assert isinstance(e.value, KeyError)


def test_register_rejects_clashing_name():
    with pytest.raises(ValueError, match="already registered"):
        @register("fid", higher_is_better=True)
        def other(x):  # pragma: no cover
            return {"value": 0.0}
    assert METRICS["fid"].fn is bm.fid

    @register("_test_tmp_metric", higher_is_better=True)
    def tmp(x):
        """Temporary metric."""
        return {"value": float(x)}

    try:
        assert get_metric("_test_tmp_metric")(2) == {"value": 2.0}
        assert get_metric("_test_tmp_metric").description == "Temporary metric."
    finally:
        METRICS.pop("_test_tmp_metric")


def test_every_registered_metric_returns_json_safe_value():
    rng = np.random.default_rng(0)
    M, C = 12, 20
    probs = rng.dirichlet(np.ones(C), size=M).astype(np.float32)
    ref = rng.integers(0, C, size=M)
    imgs = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    inputs = {
        "n_way_top_k": ((probs, ref), {"n": 5}),
        "n_way_top_k_exact": ((probs, ref), {"n": 5}),
        "n_way_top_k_label": ((probs, ref), {"n": 5}),
        "inception_score": ((rng.normal(size=(M, C)),), {"splits": 2}),
        "fid": ((rng.normal(size=(30, 4)), rng.normal(size=(20, 4))), {}),
        "ssim": ((imgs, imgs[::-1].copy()), {}),
        "clip_similarity": ((rng.normal(size=(M, 8)), rng.normal(size=(M, 8))), {}),
        "top1": ((probs, ref), {}), "top3": ((probs, ref), {}), "top5": ((probs, ref), {}),
        "macro_f1": ((probs, ref), {}),
        "inception_score_ci": ((rng.normal(size=(M, C)),), {}),
        "fid_ci": ((rng.normal(size=(30, 4)), rng.normal(size=(20, 4)), np.arange(30) % 20, np.arange(20)), {}),
        "kid": ((rng.normal(size=(20, 4)), rng.normal(size=(20, 4))), {}),
        "attribute_fidelity": (({"colour": rng.integers(0, 6, M)}, {"colour": rng.integers(0, 6, M)}, {"colour": 6}), {}),
    }
    # The cascade's stage-1 metrics are the same functions on the stage-1 images.
    inputs["stage1_attribute_fidelity"] = inputs["attribute_fidelity"]
    inputs["stage1_clip_similarity"] = inputs["clip_similarity"]
    for name in list_metrics():
        if name.startswith("_"):
            continue
        args, kwargs = inputs[name]
        out = get_metric(name)(*args, **kwargs)
        assert isinstance(out["value"], float), name
        text = json.dumps(out, allow_nan=False)
        assert json.loads(text) == out, name


def test_package_imports_without_torch_fidelity():
    import subprocess
    import sys

    code = "import sys, bench.metrics; print('torch_fidelity' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_metric_with_an_unknown_need_is_refused_at_registration():
    """A typo in ``needs`` fails where the metric is registered, not later inside every trial."""
    import pytest

    from bench.metrics import register

    with pytest.raises(ValueError, match="unknown need"):
        register("typo_metric", higher_is_better=True, needs=("imges",))(lambda inputs: {"value": 0.0})
