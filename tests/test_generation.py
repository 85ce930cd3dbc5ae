"""Generation helpers: an image depends on its conditioning and seed only (not on its batch), and the
class-prompt image cache returns exactly what the generator draws (common random numbers across methods)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.backbones.mini import untrained_mini_backbones
from bench.methods.base import FitContext, TrialSpec
from bench.methods.generation import cascade, generate_from_prompts, txt2img_samples

PROMPTS = [f"a photo of a thing {i}" for i in range(7)]
GEN = {"samples": 2, "sampler": "dpmsolver++", "stage1_steps": 2, "stage1_guidance": 1.0, "stage2_steps": 2, "stage2_strength": 0.8, "stage2_guidance": 2.0, "batch": 3}


@pytest.fixture(scope="module")
def backbones():
    return untrained_mini_backbones(seed=0)


def _ctx(backbones, cache: Path | None = None, **generation) -> FitContext:
    return FitContext(spec=TrialSpec("x"), profile={"generation": {**GEN, **generation}}, backbones=backbones, class_prompts=[], image_cache=cache)


def test_image_independent_of_batch_neighbours(backbones):
    """Seven trials in batches of 3 (the last one padded): changing trials 0 and 4 leaves every other
    trial's images unchanged, including their batch neighbours (per-image seeds, fixed batch size)."""
    ctx = _ctx(backbones)
    cond = backbones.text_encoder.encode_tokens(PROMPTS)
    full = txt2img_samples(cond, ctx, seed=4, steps=2, guidance=2.0)
    assert full.shape[:2] == (7, 2)
    assert not np.array_equal(full[:, 0], full[:, 1])  # samples differ
    changed = cond.clone()
    changed[[0, 4]] = backbones.text_encoder.encode_tokens(["something else", "and another"])
    other = txt2img_samples(changed, ctx, seed=4, steps=2, guidance=2.0)
    keep = [1, 2, 3, 5, 6]
    np.testing.assert_array_equal(other[keep], full[keep])
    assert not np.array_equal(other[0], full[0])


def test_class_prompt_cache_is_exact_and_shared(backbones, tmp_path):
    """A second method drawing some of the same (trial, class) pairs gets the same images, from the
    cache, and the cached images equal freshly drawn ones."""
    cache = tmp_path / "images"
    a = generate_from_prompts(PROMPTS, _ctx(backbones, cache), seed=1)
    files = sorted(cache.glob("*.png"))
    assert len(files) == 7 * 2
    fresh = generate_from_prompts(PROMPTS, _ctx(backbones, None), seed=1)
    np.testing.assert_array_equal(a, fresh)
    other = list(PROMPTS)
    other[2], other[5] = PROMPTS[0], "a photo of something else"  # two predictions differ
    b = generate_from_prompts(other, _ctx(backbones, cache), seed=1)
    same = [i for i in range(7) if other[i] == PROMPTS[i]]
    np.testing.assert_array_equal(b[same], a[same])
    assert len(list(cache.glob("*.png"))) == 7 * 2 + 2 * 2  # only the two new (trial, prompt) pairs were drawn
    np.testing.assert_array_equal(b, generate_from_prompts(other, _ctx(backbones, None), seed=1))
    # another seed or other settings: other keys
    c = generate_from_prompts(PROMPTS, _ctx(backbones, cache), seed=2)
    assert not np.array_equal(c, a)
    d = generate_from_prompts(PROMPTS, _ctx(backbones, cache, stage2_steps=3), seed=1)
    assert not np.array_equal(d, a)


def test_stage2_alone_is_class_prompt_drawing(backbones, tmp_path):
    """The cascade without stage 1 draws the class prompts exactly as classify-then-draw methods do."""
    ctx = _ctx(backbones, tmp_path / "images")
    out = cascade(None, PROMPTS, ctx, seed=3, stage1=False, stage2=True)
    np.testing.assert_array_equal(out["final"], generate_from_prompts(PROMPTS, _ctx(backbones, None), seed=3))
