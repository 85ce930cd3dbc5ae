"""The generator's samplers: chosen by name per call, built from the generator's own noise schedule,
and checked when a profile is loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.backbones.diffusion import SAMPLERS
from bench.backbones.mini import noise_scheduler, untrained_mini_backbones
from bench.errors import UserError
from bench.experiment.run import load_profile
from bench.methods.generation import check_generation


@pytest.fixture(scope="module")
def generator():
    return untrained_mini_backbones(seed=3).generator


@pytest.fixture(scope="module")
def cond(generator):
    torch.manual_seed(0)
    return generator.uncond_embeds.expand(3, -1, -1) + 0.1 * torch.randn(3, *generator.uncond_embeds.shape[1:])


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_sampler_draws_seeded_images_with_the_base_noise_schedule(generator, cond, name):
    a = generator.txt2img(cond, steps=3, guidance=2.0, seed=5, sampler=name)
    b = generator.txt2img(cond, steps=3, guidance=2.0, seed=5, sampler=name)
    assert a.shape == (3, generator.resolution, generator.resolution, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    cls, _ = SAMPLERS[name]
    for pipe in (generator.txt2img_pipe, generator.img2img_pipe):
        assert type(pipe.scheduler) is cls
    # every sampler uses the noise schedule the mini UNet was trained with
    torch.testing.assert_close(pipe.scheduler.alphas_cumprod, noise_scheduler().alphas_cumprod)
    refined = generator.img2img(a, cond, strength=0.85, steps=4, guidance=2.0, seed=5, sampler=name)
    assert refined.shape == a.shape


def test_samplers_differ_and_switch_back(generator, cond):
    plms = generator.txt2img(cond, steps=4, guidance=1.0, seed=1, sampler="plms")
    dpm = generator.txt2img(cond, steps=4, guidance=1.0, seed=1, sampler="dpmsolver++")
    assert not np.array_equal(plms, dpm)
    np.testing.assert_array_equal(generator.txt2img(cond, steps=4, guidance=1.0, seed=1, sampler="plms"), plms)


def test_an_unknown_sampler_is_an_error(generator, cond):
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        generator.txt2img(cond, steps=2, guidance=1.0, seed=0, sampler="euler")


def test_profiles_generation_sections_are_checked():
    for name in ("mini", "paper"):
        check_generation(load_profile(name)["generation"])
    assert load_profile("mini")["generation"]["sampler"] in SAMPLERS
    with pytest.raises(UserError, match="sampler = 'euler'"):
        check_generation({"sampler": "euler"})
    with pytest.raises(UserError, match="unknown key.*stage3_steps"):
        check_generation({"stage3_steps": 4})
