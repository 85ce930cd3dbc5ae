"""Generation helpers shared by methods: prompts -> images, and BrainVis' two-stage cascade.

Outputs are ``uint8 [N, S, H, W, 3]`` (S samples per trial). Sample ``s`` of trial ``i`` uses
seed ``seed * 1_000_003 + i * 101 + s`` so that results do not depend on batching.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.methods.base import FitContext

DEFAULT_GENERATION = {"samples": 1, "sampler": "plms", "stage1_steps": 25, "stage1_guidance": 1.0, "stage2_steps": 25, "stage2_strength": 0.85, "stage2_guidance": 4.0, "batch": 64}


def settings(ctx: FitContext) -> dict:
    return {**DEFAULT_GENERATION, **ctx.profile.get("generation", {})}


def check_generation(section: dict) -> None:
    """A profile's ``[generation]`` section: known keys and a registered sampler (else ``UserError``)."""
    from bench.backbones.diffusion import SAMPLERS
    from bench.errors import UserError

    unknown = sorted(set(section) - set(DEFAULT_GENERATION))
    if unknown:
        raise UserError(f"[generation]: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_GENERATION)}")
    sampler = section.get("sampler", DEFAULT_GENERATION["sampler"])
    if sampler not in SAMPLERS:
        raise UserError(f"[generation] sampler = {sampler!r} is not a known sampler; known: {', '.join(SAMPLERS)}")


def _seed(seed: int, i: int, s: int) -> int:
    return (seed * 1_000_003 + i * 101 + s) % (2**63)


def _batched(fn, n: int, batch: int) -> np.ndarray:
    return np.concatenate([fn(slice(i, min(n, i + batch))) for i in range(0, n, batch)])


def txt2img_samples(cond: torch.Tensor, ctx: FitContext, *, seed: int, steps: int, guidance: float) -> np.ndarray:
    """``cond [N, T, W]`` -> ``[N, S, H, W, 3]``; one generator call per (sample, batch)."""
    gen, cfg = ctx.backbones.generator, settings(ctx)
    out = []
    for s in range(cfg["samples"]):
        # Batches share one seed per (sample, first trial): deterministic for a fixed batch size.
        imgs = _batched(lambda sl: gen.txt2img(cond[sl], steps=steps, guidance=guidance, seed=_seed(seed, sl.start, s), sampler=cfg["sampler"]), cond.shape[0], cfg["batch"])
        out.append(imgs)
    return np.stack(out, axis=1)


def img2img_samples(images: np.ndarray, cond: torch.Tensor, ctx: FitContext, *, seed: int) -> np.ndarray:
    """Refine ``images [N, S, H, W, 3]`` with ``cond [N, T, W]`` (stage 2)."""
    gen, cfg = ctx.backbones.generator, settings(ctx)
    n, S = images.shape[:2]
    out = []
    for s in range(S):
        refined = _batched(
            lambda sl: gen.img2img(
                images[sl, s], cond[sl], strength=cfg["stage2_strength"], steps=cfg["stage2_steps"], guidance=cfg["stage2_guidance"], seed=_seed(seed + 7, sl.start, s),
                sampler=cfg["sampler"],
            ),
            n,
            cfg["batch"],
        )
        out.append(refined)
    return np.stack(out, axis=1)


def generate_from_prompts(prompts: list[str], ctx: FitContext, *, seed: int) -> np.ndarray:
    """Class-prompt generation (classify-then-draw baselines and reference rows)."""
    cfg = settings(ctx)
    cond = ctx.backbones.text_encoder.encode_tokens(prompts)
    return txt2img_samples(cond, ctx, seed=seed, steps=cfg["stage2_steps"], guidance=cfg["stage2_guidance"])


def cascade(cond: torch.Tensor | None, prompts: list[str] | None, ctx: FitContext, *, seed: int, stage1: bool = True, stage2: bool = True) -> dict[str, np.ndarray]:
    """BrainVis' cascaded diffusion.

    Stage 1 ("semantic"): txt2img from the EEG-predicted conditioning ``cond`` (no guidance in the
    paper). Stage 2 ("refinement"): img2img of the stage-1 image with the predicted class prompt.
    ``stage1=False`` (the "stage 2 only" ablation) runs stage 2 as txt2img from the class prompt.
    """
    cfg = settings(ctx)
    out: dict[str, np.ndarray] = {}
    if stage1:
        out["stage1"] = txt2img_samples(cond, ctx, seed=seed, steps=cfg["stage1_steps"], guidance=cfg["stage1_guidance"])
    if stage2:
        class_cond = ctx.backbones.text_encoder.encode_tokens(prompts)
        if stage1:
            out["final"] = img2img_samples(out["stage1"], class_cond, ctx, seed=seed)
        else:
            out["final"] = txt2img_samples(class_cond, ctx, seed=seed, steps=cfg["stage2_steps"], guidance=cfg["stage2_guidance"])
    else:
        out["final"] = out["stage1"]
    return out
