"""The generator role: a Stable-Diffusion-style latent diffusion driven through diffusers' pipelines.

Both scales use this class: SD 1.5 (paper) and the small AutoencoderKL + UNet2DConditionModel
trained on the synthetic world (mini). Conditioning is always ``prompt_embeds`` (a token sequence
``[B, n_tokens, width]``), which is exactly what BrainVis predicts from EEG; classifier-free
guidance uses the text encoder's embedding of the empty prompt as the negative.

The sampler is chosen per call by name (:data:`SAMPLERS`, a profile's ``[generation] sampler``):
``"plms"`` is BrainVis' published sampler; ``"dpmsolver++"`` (DPM-Solver++ 2M) reaches the same image
quality in about half the steps. Each is built from the generator's own scheduler config (betas,
timesteps), so both scales share the noise schedule they were trained with.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from PIL import Image

from bench.backbones.base import to_uint8_images


# sampler name -> (scheduler class, keyword arguments over the generator's scheduler config)
SAMPLERS: dict[str, tuple[type, dict]] = {
    "plms": (PNDMScheduler, {"skip_prk_steps": True}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
}
DEFAULT_SAMPLER = "plms"


class DiffusersGenerator:
    """txt2img / img2img from conditioning sequences, through diffusers' SD pipelines."""

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        scheduler,
        *,
        resolution: int,
        uncond_embeds: torch.Tensor,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.resolution = resolution
        self.device = torch.device(device)
        self.dtype = dtype
        self.uncond_embeds = uncond_embeds.to(self.device, dtype)  # [1, n_tokens, width]
        # Move only when needed: diffusers warns on any dtype cast, even a no-op one.
        for m in (vae, unet):
            if next(m.parameters()).dtype != dtype or next(m.parameters()).device != self.device:
                m.to(self.device, dtype)
        parts = dict(vae=vae.eval(), unet=unet.eval(), scheduler=scheduler)
        extra = dict(text_encoder=None, tokenizer=None, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        self.txt2img_pipe = StableDiffusionPipeline(**parts, **extra)
        self.img2img_pipe = StableDiffusionImg2ImgPipeline(**parts, **extra)
        for pipe in (self.txt2img_pipe, self.img2img_pipe):
            pipe.set_progress_bar_config(disable=True)
        self._schedulers: dict[str, object] = {}

    def _use_sampler(self, name: str) -> None:
        """Point both pipelines at the scheduler of sampler ``name`` (built once from the base config)."""
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
        if name not in self._schedulers:
            cls, kwargs = SAMPLERS[name]
            self._schedulers[name] = cls.from_config(self.txt2img_pipe.scheduler.config, **kwargs)
        for pipe in (self.txt2img_pipe, self.img2img_pipe):
            pipe.scheduler = self._schedulers[name]

    def _negatives(self, prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor | None) -> torch.Tensor:
        if negative_embeds is None:
            negative_embeds = self.uncond_embeds
        return negative_embeds.to(self.device, self.dtype).expand(prompt_embeds.shape[0], -1, -1)

    def _generator(self, seed: int | Sequence[int]) -> torch.Generator | list[torch.Generator]:
        """One generator for the batch (an int), or one per image (a sequence: image ``j`` draws its
        noise from ``seed[j]`` alone, whatever else is in the batch)."""
        if isinstance(seed, (int, np.integer)):
            return torch.Generator(device="cpu").manual_seed(int(seed))
        return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seed]

    @torch.no_grad()
    def txt2img(
        self, prompt_embeds: torch.Tensor, *, steps: int, guidance: float, seed: int | Sequence[int], negative_embeds: torch.Tensor | None = None,
        sampler: str = DEFAULT_SAMPLER,
    ) -> np.ndarray:
        self._use_sampler(sampler)
        emb = prompt_embeds.to(self.device, self.dtype)
        out = self.txt2img_pipe(
            prompt_embeds=emb,
            negative_prompt_embeds=self._negatives(emb, negative_embeds) if guidance > 1 else None,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=self.resolution,
            width=self.resolution,
            generator=self._generator(seed),
            output_type="np",
        )
        return _to_uint8(out.images)

    @torch.no_grad()
    def img2img(
        self,
        images: np.ndarray,
        prompt_embeds: torch.Tensor,
        *,
        strength: float,
        steps: int,
        guidance: float,
        seed: int | Sequence[int],
        negative_embeds: torch.Tensor | None = None,
        sampler: str = DEFAULT_SAMPLER,
    ) -> np.ndarray:
        self._use_sampler(sampler)
        images = to_uint8_images(images)
        pil = [Image.fromarray(im).resize((self.resolution, self.resolution), Image.BICUBIC) for im in images]
        emb = prompt_embeds.to(self.device, self.dtype)
        out = self.img2img_pipe(
            image=pil,
            prompt_embeds=emb,
            negative_prompt_embeds=self._negatives(emb, negative_embeds) if guidance > 1 else None,
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=self._generator(seed),
            output_type="np",
        )
        return _to_uint8(out.images)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
