"""torch-fidelity wrappers, offline: a tiny registered feature extractor stands in for Inception."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch_fidelity = pytest.importorskip("torch_fidelity")
import torch.nn.functional as F  # noqa: E402
from torch_fidelity.feature_extractor_base import FeatureExtractorBase  # noqa: E402
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY  # noqa: E402

from bench.metrics import (  # noqa: E402
    fid_from_features,
    fid_torch_fidelity,
    inception_score_from_logits,
    inception_score_torch_fidelity,
)

NAME = "bench-test-tiny-linear"


class TinyLinearExtractor(FeatureExtractorBase):
    """Fixed random linear model on 4x4-pooled pixels; provides 'logits_unbiased' and '2048'."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w_logits", torch.randn(48, 12, generator=g) * 4.0)
        self.register_buffer("w_feat", torch.randn(48, 6, generator=g))

    @staticmethod
    def get_provided_features_list():
        return ("logits_unbiased", "2048")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "2048", "kid": "2048", "prc": "2048"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x):
        assert x.dtype == torch.uint8
        h = F.adaptive_avg_pool2d(x.float() / 255.0 - 0.5, 4).flatten(1)
        feats = {"logits_unbiased": h @ self.w_logits, "2048": h @ self.w_feat}
        return tuple(feats[a] for a in self.features_list)


if NAME not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(NAME, TinyLinearExtractor)


def _features(images: torch.Tensor, layer: str) -> np.ndarray:
    ext = TinyLinearExtractor(NAME, [layer]).eval()
    with torch.no_grad():
        return ext(images)[0].double().numpy()


def _images(seed: int, m: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (m, 3, 4, 4), generator=g, dtype=torch.uint8)
    return small.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # [m, 3, 16, 16], varied pooled features


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("splits", [1, 3])
def test_inception_score_torch_fidelity_matches_formula(splits):
    imgs = _images(0, 60)
    r = inception_score_torch_fidelity(imgs, splits=splits, feature_extractor=NAME, batch_size=25)
    ours = inception_score_from_logits(_features(imgs, "logits_unbiased"), splits=splits, shuffle=True, seed=2020)
    assert r["value"] == pytest.approx(ours["value"], abs=1e-4)
    assert r["std"] == pytest.approx(ours["std"], abs=1e-4)
    assert r["value"] > 1.5  # the fixed model is not degenerate
    assert r["count"] == 60 and r["splits"] == splits and r["backend"] == "torch-fidelity"
    json.dumps(r, allow_nan=False)


def test_fid_torch_fidelity_matches_features():
    a, b = _images(1, 50), _images(2, 40)
    r = fid_torch_fidelity(a, b, feature_extractor=NAME, batch_size=32)
    ours = fid_from_features(_features(a, "2048"), _features(b, "2048"))
    assert r["value"] == pytest.approx(ours, rel=1e-5, abs=1e-6)
    same = fid_torch_fidelity(a, a, feature_extractor=NAME)
    assert abs(same["value"]) < 1e-5
    assert r["count_a"] == 50 and r["count_b"] == 40
    json.dumps(r, allow_nan=False)


def test_wrappers_refuse_bad_images():
    imgs = _images(3, 4)
    with pytest.raises(ValueError, match="uint8"):
        inception_score_torch_fidelity(imgs.float(), splits=1, feature_extractor=NAME)
    with pytest.raises(ValueError, match="permute"):
        fid_torch_fidelity(imgs.permute(0, 2, 3, 1), imgs, feature_extractor=NAME)
    with pytest.raises(ValueError, match="splits"):
        inception_score_torch_fidelity(imgs, splits=10, feature_extractor=NAME)
