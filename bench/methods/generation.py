"""Generation helpers shared by methods: prompts -> images, and BrainVis' two-stage cascade.

Outputs are ``uint8 [N, S, H, W, 3]`` (S samples per trial). Sample ``s`` of trial ``i`` is drawn
with its own seed, ``seed * 1_000_003 + i * 101 + s``, in fixed-size batches, so an image depends
on its conditioning and seed only (not on batching or on the other trials).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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


def _fixed_batches(fn, n: int, batch: int) -> np.ndarray:
    """``fn(index array) -> images`` over ``n`` items in batches of exactly ``batch`` items (the last one
    padded by repeating its final item; the padding's outputs are dropped). With a fixed batch size an
    item's image does not depend on its neighbours or its position in the batch (checked bit for bit
    on CPU), so an image is a function of its conditioning and seed alone."""
    out = []
    for start in range(0, n, batch):
        idx = np.arange(start, min(n, start + batch))
        padded = np.concatenate([idx, np.full(batch - idx.size, idx[-1])]) if idx.size < batch else idx
        out.append(fn(padded)[: idx.size])
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def txt2img_samples(cond: torch.Tensor, ctx: FitContext, *, seed: int, steps: int, guidance: float) -> np.ndarray:
    """``cond [N, T, W]`` -> ``[N, S, H, W, 3]``; sample ``s`` of trial ``i`` is drawn with its own seed."""
    gen, cfg = ctx.backbones.generator, settings(ctx)
    out = []
    for s in range(cfg["samples"]):
        def draw(idx: np.ndarray, s: int = s) -> np.ndarray:
            return gen.txt2img(cond[torch.as_tensor(idx)], steps=steps, guidance=guidance, seed=[_seed(seed, int(i), s) for i in idx], sampler=cfg["sampler"])

        out.append(_fixed_batches(draw, cond.shape[0], cfg["batch"]))
    return np.stack(out, axis=1)


def img2img_samples(images: np.ndarray, cond: torch.Tensor, ctx: FitContext, *, seed: int) -> np.ndarray:
    """Refine ``images [N, S, H, W, 3]`` with ``cond [N, T, W]`` (stage 2), each image with its own seed."""
    gen, cfg = ctx.backbones.generator, settings(ctx)
    n, S = images.shape[:2]
    out = []
    for s in range(S):
        def refine(idx: np.ndarray, s: int = s) -> np.ndarray:
            return gen.img2img(
                images[idx, s], cond[torch.as_tensor(idx)], strength=cfg["stage2_strength"], steps=cfg["stage2_steps"], guidance=cfg["stage2_guidance"],
                seed=[_seed(seed + 7, int(i), s) for i in idx], sampler=cfg["sampler"],
            )  # fmt: skip

        out.append(_fixed_batches(refine, n, cfg["batch"]))
    return np.stack(out, axis=1)


def _image_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def generate_from_prompts(prompts: list[str], ctx: FitContext, *, seed: int) -> np.ndarray:
    """Class-prompt generation (classify-then-draw baselines, reference rows, BrainVis' stage 2 alone):
    ``[N, S, H, W, 3]``, sample ``s`` of test trial ``i`` drawn from ``prompts[i]`` with the seed of
    ``(seed, i, s)``. Every method that draws class ``c`` for trial ``i`` therefore gets the same image
    (common random numbers: paired comparisons of image metrics see only where the predictions differ),
    and the image is drawn once: ``ctx.image_cache`` keeps each one under a key of the generator, its
    settings, the prompt and the seed (a cached image is the image the generator would draw)."""
    gen, cfg = ctx.backbones.generator, settings(ctx)
    text = ctx.backbones.text_encoder
    steps, guidance = cfg["stage2_steps"], cfg["stage2_guidance"]
    n, S = len(prompts), cfg["samples"]
    folder = Path(ctx.image_cache) if ctx.image_cache is not None else None
    common = {"generator": ctx.backbones.ids.get("generator", "?"), "text_encoder": ctx.backbones.ids.get("text_encoder", "?"), "sampler": cfg["sampler"],
              "steps": steps, "guidance": guidance, "batch": cfg["batch"], "resolution": gen.resolution}  # fmt: skip
    keys = [[_image_key({**common, "prompt": prompts[i], "seed": _seed(seed, i, s)}) for s in range(S)] for i in range(n)]
    out: np.ndarray | None = None
    todo: list[tuple[int, int]] = []
    for i in range(n):
        for s in range(S):
            path = folder / f"{keys[i][s]}.png" if folder is not None else None
            if path is not None and path.is_file():
                im = np.asarray(Image.open(path).convert("RGB"))
                if out is None:
                    out = np.zeros((n, S, *im.shape), np.uint8)
                out[i, s] = im
            else:
                todo.append((i, s))
    if todo:
        unique = sorted({prompts[i] for i, _ in todo})
        enc = dict(zip(unique, text.encode_tokens(unique)))
        cond = torch.stack([enc[prompts[i]] for i, _ in todo])

        def draw(idx: np.ndarray) -> np.ndarray:
            return gen.txt2img(cond[torch.as_tensor(idx)], steps=steps, guidance=guidance, seed=[_seed(seed, todo[j][0], todo[j][1]) for j in idx], sampler=cfg["sampler"])

        drawn = _fixed_batches(draw, len(todo), cfg["batch"])
        if out is None:
            out = np.zeros((n, S, *drawn.shape[1:]), np.uint8)
        for (i, s), im in zip(todo, drawn):
            out[i, s] = im
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{keys[i][s]}.{os.getpid()}.png"
                Image.fromarray(im).save(tmp)
                os.replace(tmp, folder / f"{keys[i][s]}.png")  # atomic: a concurrent trial reads whole files only
    return out


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
        if stage1:
            class_cond = ctx.backbones.text_encoder.encode_tokens(prompts)
            out["final"] = img2img_samples(out["stage1"], class_cond, ctx, seed=seed)
        else:
            out["final"] = generate_from_prompts(prompts, ctx, seed=seed)
    else:
        out["final"] = out["stage1"]
    return out
