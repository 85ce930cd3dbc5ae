"""`bench backbones train`: train the mini backbones for a synthetic world, reproducibly.

Training data ("the world's corpus"): the world's training-split stimulus images with their
captions, plus images drawn from the world's renderer with a seed disjoint from the stimulus images
(the analogue of the web-scale data real backbones are trained on). The evaluation classifier and
the fidelity network also see renders of all 200 concepts of the renderer (the world's 40 classes
among them), as ImageNet models know far more classes than EEG-CVPR40 shows. Validation and test
stimulus images are never used for training; the quality figures are measured on them.

Stages run two at a time (one torch thread each): CLIP || VAE, then UNet || (the three CNNs, then the VAE decoder fine-tune).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.backbones import mini as M
from bench.world.images import ATTRIBUTES, N_CONCEPTS, caption, concept_of_label, render, sample_specs
from bench.data.classes import CLASS_NAMES, class_prompt
from bench.data.eegcvpr40 import EEG_FILE, SPLIT_FILES, image_path, load_splits
from bench.errors import UserError


@dataclass(frozen=True)
class TrainConfig:
    """Steps and sizes of each stage (the defaults made the shipped weights)."""

    seed: int = 0
    corpus_per_class: int = 250  # extra rendered images per class (10,000 in all)
    clip_steps: int = 1500
    clip_batch: int = 128
    clip_lr: float = 1e-3
    clip_class_share: float = 1 / 3  # share of texts that are the bare class prompt (phase 1)
    clip2_steps: int = 600  # phase 2: more class prompts, lower learning rate (class-prompt retrieval)
    clip2_lr: float = 3e-4
    clip2_class_share: float = 0.6
    vae_steps: int = 2000
    vae_batch: int = 64
    vae_lr: float = 1e-3
    vae_decoder_steps: int = 3000  # decoder-only fine-tune (encoder, hence the UNet's latent space, fixed)
    vae_decoder_lr: float = 1e-3
    unet_steps: int = 5000
    unet_batch: int = 64
    unet_lr: float = 1e-3
    unet_ema: float = 0.995
    cond_dropout: float = 0.1  # share of empty-prompt conditions (for classifier-free guidance)
    concept_per_class: int = 60  # renders per concept (200 concepts) for the classifier and fidelity net
    cnn_steps: int = 800  # the captioner (40 classes)
    judge_steps: int = 2500  # the classifier and the fidelity net (200 concepts)
    cnn_batch: int = 128
    cnn_lr: float = 2e-3
    eval_steps: int = 25  # sampling steps for the generator quality figure
    guidance_grid: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0)  # classifier-free guidance scales tried
    guidance_per_class: int = 5  # fresh renders per class for choosing the scale (never world images)


SHIPPED = ("clip", "vae", "unet", "classifier", "fidelity", "captioner")
QUICK = TrainConfig(clip2_steps=2, vae_decoder_steps=2, corpus_per_class=8, concept_per_class=2, clip_steps=3, vae_steps=3, unet_steps=3, cnn_steps=3, judge_steps=3, clip_batch=16, vae_batch=8, unet_batch=8, cnn_batch=16, eval_steps=2, guidance_grid=(1.0, 2.0), guidance_per_class=1)


# --------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------


def _jpeg_roundtrip(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _small(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((M.RESOLUTION, M.RESOLUTION), Image.BICUBIC))


def world_stimuli(world: Path, part: str | tuple[str, ...]) -> dict:
    """Stimulus images of the world's split 0 ('all') parts, at mini resolution, with labels."""
    parts = (part,) if isinstance(part, str) else part
    attrs = json.loads((world / "attributes.json").read_text())
    captions = json.loads((world / "captions.json").read_text())
    split = load_splits(world / SPLIT_FILES["all"])[0]
    # 'all' indices are subject-major, image-minor: image index = trial index mod n_images.
    images_list = torch.load(world / EEG_FILE, weights_only=True, mmap=True)["images"]
    chosen = sorted({images_list[int(i) % len(images_list)] for p in parts for i in split[p]})
    imgs = np.stack([_small(Image.open(image_path(world / "images", n))) for n in chosen])
    return {
        "names": chosen,
        "images": imgs,
        "captions": [captions[n] for n in chosen],
        "labels": {k: np.array([ATTRIBUTES[k].index(attrs[n][k]) if k != "class" else attrs[n]["label"] for n in chosen]) for k in M.CAPTION_HEADS},
    }


def build_corpus(world: Path, cfg: TrainConfig, world_seed: int) -> dict:
    """World training stimuli + freshly rendered images (disjoint seed), at mini resolution; and
    renders of all 200 concepts (labels: concept index) for the evaluation classifier and fidelity net."""
    train = world_stimuli(world, "train")
    rng = np.random.default_rng(np.random.SeedSequence([world_seed, 0xC0, cfg.seed]))
    specs = sample_specs(cfg.corpus_per_class, rng)
    extra = np.stack([_small(_jpeg_roundtrip(render(s, 64))) for s in specs])
    labels = {
        k: np.concatenate([train["labels"][k], np.array([s.label if k == "class" else ATTRIBUTES[k].index(getattr(s, k)) for s in specs])])
        for k in M.CAPTION_HEADS
    }
    # Concepts: sample_specs draws balanced attributes per "class"; each spec is drawn as one concept.
    crng = np.random.default_rng(np.random.SeedSequence([world_seed, 0xC1, cfg.seed]))
    cspecs = [s for _ in range(N_CONCEPTS // 40) for s in sample_specs(cfg.concept_per_class, crng)]
    concept = np.repeat(np.arange(N_CONCEPTS), cfg.concept_per_class)
    cimages = np.stack([_small(_jpeg_roundtrip(render(s, 64, concept_index=int(c)))) for s, c in zip(cspecs, concept)])
    images = np.concatenate([train["images"], extra])
    judge_labels = {
        "class": np.concatenate([np.array([concept_of_label(int(c)) for c in labels["class"]]), concept]),
        **{k: np.concatenate([labels[k], np.array([ATTRIBUTES[k].index(getattr(s, k)) for s in cspecs])]) for k in ATTRIBUTES},
    }
    return {"images": images, "captions": train["captions"] + [caption(s) for s in specs], "labels": labels,
            "judge_images": np.concatenate([images, cimages]), "judge_labels": judge_labels}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Stages (each runs in its own process with one torch thread)
# --------------------------------------------------------------------------------------------------


def _setup(seed: int) -> torch.Generator:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _batches(n: int, batch: int, steps: int, g: torch.Generator):
    for _ in range(steps):
        yield torch.randint(0, n, (batch,), generator=g)


def _cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, warmup: int = 100) -> None:
    lr = base * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    for group in opt.param_groups:
        group["lr"] = lr


def _log(work: Path, name: str, step: int, total: int, loss: float) -> None:
    with open(work / f"{name}.progress", "w") as fh:
        fh.write(f"{step} {total} {loss:.5f}\n")


def _clip_phase(model, x_all, tokens_cap, tokens_cls, labels, *, steps, batch, lr, class_share, g, work, tag) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    lab = torch.as_tensor(labels)
    for step, idx in enumerate(_batches(len(x_all), batch, steps, g)):
        _cosine_lr(opt, lr, step, steps)
        # Some texts are the bare class prompt, so class prompts land where their captions do.
        use_cls = torch.rand(len(idx), generator=g) < class_share
        tok = torch.where(use_cls[:, None], tokens_cls[lab[idx]], tokens_cap[idx])
        img = model.encode_image(x_all[idx], normalize=True)
        txt = model.encode_text(tok, normalize=True)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        # Same-class pairs are positives when either text is a class prompt (soft targets).
        same = (lab[idx][:, None] == lab[idx][None, :]) & (use_cls[None, :] | use_cls[:, None])
        target = torch.eye(len(idx)) + same.float()
        target = target / target.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean() + torch.sum(-target.T * F.log_softmax(logits.T, 1), 1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            _log(work, tag, step + 1, steps, float(loss.detach()))


def stage_clip(work: Path, cfg: TrainConfig) -> str:
    """Contrastive image-caption training (phase 1), then more class prompts at a lower LR (phase 2).

    Resumes from ``clip_phase1.safetensors`` in the work folder when present (phase 1 is
    deterministic for a given config, so resuming gives the same weights as a fresh run).
    """
    g = _setup(cfg.seed + 1)
    data = np.load(work / "corpus.npz")
    captions = json.loads((work / "captions.json").read_text())
    x_all = M.images_to_tensor(data["images"])
    tokens_cap = M.open_clip.tokenize(captions, context_length=77)
    tokens_cls = M.open_clip.tokenize([class_prompt(c) for c in range(len(CLASS_NAMES))], context_length=77)
    kw = dict(x_all=x_all, tokens_cap=tokens_cap, tokens_cls=tokens_cls, labels=data["class"], batch=cfg.clip_batch, work=work)
    phase1 = work / "clip_phase1.safetensors"
    if phase1.is_file():
        model = M.load_model("clip_phase1", work).train()  # phase 2 below draws from its own stream
    else:
        model = M.build_clip().train()
        _clip_phase(model, steps=cfg.clip_steps, lr=cfg.clip_lr, class_share=cfg.clip_class_share, g=g, tag="clip", **kw)
        M.save_model(model, phase1)
    g2 = torch.Generator().manual_seed(cfg.seed + 101)
    _clip_phase(model, steps=cfg.clip2_steps, lr=cfg.clip2_lr, class_share=cfg.clip2_class_share, g=g2, tag="clip_phase2", **kw)
    M.save_model(model, work / "clip.safetensors")
    return "clip"


def stage_vae_decoder(work: Path, cfg: TrainConfig) -> str:
    """Fine-tune the VAE decoder alone on the frozen encoder's latents (as SD's ft-MSE decoder):
    sharper, truer colours, and the latent space the UNet learns in does not change."""
    if cfg.vae_decoder_steps <= 0:
        return "vae_decoder (skipped)"
    g = _setup(cfg.seed + 301)
    x_all = M.images_to_tensor(np.load(work / "corpus.npz")["images"])
    vae = M.load_model("vae", work)
    for p in vae.parameters():
        p.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    vae.decoder.train()
    opt = torch.optim.AdamW(params, lr=cfg.vae_decoder_lr)
    for step, idx in enumerate(_batches(len(x_all), cfg.vae_batch, cfg.vae_decoder_steps, g)):
        _cosine_lr(opt, cfg.vae_decoder_lr, step, cfg.vae_decoder_steps, warmup=50)
        x = x_all[idx]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=g)
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == cfg.vae_decoder_steps - 1:
            _log(work, "vae_decoder", step + 1, cfg.vae_decoder_steps, float(loss.detach()))
    vae.eval()
    M.save_model(vae, work / "vae.safetensors")
    return "vae_decoder"


def stage_cnns_then_vae_decoder(work: Path, cfg: TrainConfig) -> str:
    stage_cnns(work, cfg)
    return stage_vae_decoder(work, cfg)


def stage_vae(work: Path, cfg: TrainConfig) -> str:
    if (work / "vae.safetensors").is_file():  # resumed: this stage already finished
        return "vae"
    g = _setup(cfg.seed + 2)
    x_all = M.images_to_tensor(np.load(work / "corpus.npz")["images"])
    vae = M.build_vae().train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    for step, idx in enumerate(_batches(len(x_all), cfg.vae_batch, cfg.vae_steps, g)):
        _cosine_lr(opt, cfg.vae_lr, step, cfg.vae_steps, warmup=50)
        x = x_all[idx]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == cfg.vae_steps - 1:
            _log(work, "vae", step + 1, cfg.vae_steps, float(loss.detach()))
    M.save_model(vae, work / "vae.safetensors")
    return "vae"


def stage_unet(work: Path, cfg: TrainConfig) -> str:
    g = _setup(cfg.seed + 3)
    data = np.load(work / "corpus.npz")
    captions = json.loads((work / "captions.json").read_text())
    clip = M.load_model("clip", work)
    vae = M.load_model("vae", work)
    text = M.MiniClipText(clip)
    with torch.no_grad():
        x_all = M.images_to_tensor(data["images"])
        scale = 1.0 / float(torch.cat([vae.encode(x_all[i : i + 256]).latent_dist.mean for i in range(0, min(len(x_all), 2048), 256)]).std())
        lat = torch.cat([vae.encode(x_all[i : i + 256]).latent_dist.mean for i in range(0, len(x_all), 256)]) * scale
        uniq = sorted(set(captions))
        pos = {c: i for i, c in enumerate(uniq)}
        cond_u = torch.cat([text.encode_tokens(uniq[i : i + 256]) for i in range(0, len(uniq), 256)])
        cond_idx = torch.tensor([pos[c] for c in captions])
        uncond = text.encode_tokens([""])
    unet = M.build_unet().train()
    ema = M.build_unet().eval()
    ema.load_state_dict(unet.state_dict())
    sched = M.noise_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.01)
    for step, idx in enumerate(_batches(len(lat), cfg.unet_batch, cfg.unet_steps, g)):
        _cosine_lr(opt, cfg.unet_lr, step, cfg.unet_steps)
        z0 = lat[idx]
        cond = cond_u[cond_idx[idx]]
        drop = torch.rand(len(idx), generator=g) < cfg.cond_dropout
        cond = torch.where(drop[:, None, None], uncond.expand_as(cond), cond)
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=g)
        zt = sched.add_noise(z0, noise, t)
        loss = F.mse_loss(unet(zt, t, encoder_hidden_states=cond).sample, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(cfg.unet_ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        if step % 20 == 0 or step == cfg.unet_steps - 1:
            _log(work, "unet", step + 1, cfg.unet_steps, float(loss.detach()))
    M.save_model(ema, work / "unet.safetensors")
    (work / "latent_scale.json").write_text(json.dumps({"scaling_factor": scale}))
    return "unet"


def _train_cnn(name: str, x_all: torch.Tensor, targets: dict[str, torch.Tensor], steps: int, cfg: TrainConfig, seed: int, work: Path) -> None:
    g = _setup(seed)
    net = M.MODELS[name]().train()
    heads = list(net.heads)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.cnn_lr, weight_decay=1e-4)
    for step, idx in enumerate(_batches(len(x_all), cfg.cnn_batch, steps, g)):
        _cosine_lr(opt, cfg.cnn_lr, step, steps, warmup=50)
        x = x_all[idx]
        # light augmentation: small shifts keep the classifier robust to generated images
        dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        out = net(x)
        loss = sum(F.cross_entropy(out[h], targets[h][idx], label_smoothing=0.05) for h in heads)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            _log(work, name, step + 1, steps, float(loss.detach()))
    M.save_model(net, work / f"{name}.safetensors")


def stage_cnns(work: Path, cfg: TrainConfig) -> str:
    """The captioner on the world corpus (40 classes + attributes); the evaluation classifier and
    the fidelity net on the corpus plus the 200-concept renders."""
    data = np.load(work / "corpus.npz")
    _train_cnn("captioner", M.images_to_tensor(data["images"]), {k: torch.as_tensor(data[k]) for k in M.CAPTION_HEADS}, cfg.cnn_steps, cfg, cfg.seed + 12, work)
    judge = np.load(work / "judge.npz")
    x_judge = M.images_to_tensor(judge["images"])
    targets = {k: torch.as_tensor(judge[k]) for k in M.JUDGE_HEADS}
    _train_cnn("classifier", x_judge, targets, cfg.judge_steps, cfg, cfg.seed + 10, work)
    _train_cnn("fidelity", x_judge, {"class": targets["class"]}, cfg.judge_steps, cfg, cfg.seed + 11, work)
    return "cnns"


# --------------------------------------------------------------------------------------------------
# Quality figures (held-out world images: validation + test stimuli)
# --------------------------------------------------------------------------------------------------


def render_validation(world_seed: int, cfg: TrainConfig) -> dict:
    """Fresh renders (seed disjoint from the corpus' and the world's) for choosing settings."""
    rng = np.random.default_rng(np.random.SeedSequence([world_seed, 0x6A1D, cfg.seed]))
    specs = sample_specs(cfg.guidance_per_class, rng)
    return {
        "images": np.stack([_small(_jpeg_roundtrip(render(s, 64))) for s in specs]),
        "captions": [caption(s) for s in specs],
        "labels": np.array([s.label for s in specs]),
    }


def _judged(bb, images: np.ndarray) -> np.ndarray:
    """The evaluation classifier's class (a concept index) of each image."""
    return bb.classifier.probs(images).argmax(1).numpy()


def _concepts(labels: np.ndarray) -> np.ndarray:
    return np.array([concept_of_label(int(c)) for c in labels])


def class_fidelity(bb, captions: list[str], labels: np.ndarray, *, steps: int, guidance: float, seed: int) -> float:
    """Share of images generated from ``captions`` that the evaluation classifier (200 concepts)
    puts in the concept of their world class ``labels``."""
    gen = bb.generator.txt2img(bb.text_encoder.encode_tokens(captions), steps=steps, guidance=guidance, seed=seed)
    return float((_judged(bb, gen) == _concepts(labels)).mean())


def select_guidance(world_seed: int, weights_dir: Path, cfg: TrainConfig) -> dict:
    """The classifier-free guidance scale with the best class fidelity on fresh renders.

    Chosen on the backbones' own validation renders, so the held-out world images that the quality
    figures use play no part in it. Too strong a guidance saturates this small model's latents.
    """
    torch.set_num_threads(1)
    val = render_validation(world_seed, cfg)
    bb = M.load_mini_backbones(weights_dir)
    sweep = {float(g): class_fidelity(bb, val["captions"], val["labels"], steps=cfg.eval_steps, guidance=float(g), seed=cfg.seed) for g in cfg.guidance_grid}
    best = max(sweep, key=lambda g: (sweep[g], -g))  # ties: the weaker guidance
    return {"guidance": best, "sweep": sweep, "n_images": int(len(val["labels"]))}


def measure_quality(world: Path, weights_dir: Path, cfg: TrainConfig, *, limit: int | None = None, guidance: float | None = None) -> dict:
    """Known-answer quality of the mini backbones on the world's held-out images.

    ``limit`` keeps every ``k``-th held-out image (an even spread over classes) for a faster check.
    ``guidance``: the generator's guidance scale (default: the one recorded in the weights' manifest).
    """
    torch.set_num_threads(1)
    held = world_stimuli(world, ("val", "test"))
    if limit and limit < len(held["names"]):
        keep = np.linspace(0, len(held["names"]) - 1, limit).round().astype(int)
        held = {k: ([v[i] for i in keep] if isinstance(v, list) else v[keep] if isinstance(v, np.ndarray) else {kk: vv[keep] for kk, vv in v.items()}) for k, v in held.items()}
    bb = M.load_mini_backbones(weights_dir)
    if guidance is None:
        manifest = M.read_manifest(weights_dir)
        guidance = manifest.get("generator_guidance", manifest.get("quality", {}).get("settings", {}).get("guidance"))
        if guidance is None:
            raise UserError(f"{weights_dir}: the manifest records no generator guidance; retrain with `bench backbones train`")
    guidance = float(guidance)
    labels = held["labels"]["class"]
    out: dict = {"n_heldout": int(len(labels))}
    out["classifier_accuracy"] = float((_judged(bb, held["images"]) == _concepts(labels)).mean())  # 200-way
    att = bb.classifier.attribute_probs(held["images"])
    out["classifier_attribute_accuracy"] = float(np.mean([(att[k].argmax(1).numpy() == held["labels"][k]).mean() for k in ATTRIBUTES]))
    img = bb.image_encoder.encode(held["images"])
    txt = bb.text_encoder.encode_pooled([class_prompt(c) for c in range(len(CLASS_NAMES))])
    out["clip_retrieval_top1"] = float(((img @ txt.T).argmax(1).numpy() == labels).mean())
    caps = bb.captioner.caption(held["images"])
    out["captioner_exact"] = float(np.mean([c == t for c, t in zip(caps, held["captions"])]))
    kw = dict(steps=cfg.eval_steps, guidance=guidance, seed=cfg.seed)
    out["generator_class_fidelity"] = class_fidelity(bb, held["captions"], labels, **kw)
    perm = np.random.default_rng(cfg.seed).permutation(len(labels))
    out["generator_class_fidelity_shuffled"] = class_fidelity(bb, [held["captions"][i] for i in perm], labels, **kw)
    out["chance"] = 1 / len(CLASS_NAMES)
    out["settings"] = {"resolution": M.RESOLUTION, "sampling_steps": cfg.eval_steps, "guidance": guidance, "scheduler": "PNDM (PLMS)"}
    return out


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_backbones(world: str | Path, out: str | Path, cfg: TrainConfig = TrainConfig(), *, workers: int = 2, progress: Callable[[dict], None] | None = None) -> dict:
    """Train every mini backbone for ``world`` into ``out``; return the manifest written there."""
    world, out = Path(world), Path(out)
    manifest_path = world / "world.json"
    if not manifest_path.is_file():
        raise UserError(f"{world}: not a synthetic world (no world.json); build one with `bench world build`")
    world_manifest = json.loads(manifest_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    work.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    if "stimulus_id" not in world_manifest:
        raise UserError(f"{world}: built by an older generator (no stimulus id in world.json); rebuild it with `bench world build`")
    stamp = json.dumps({"stimuli": world_manifest["stimulus_id"], "cfg": asdict(cfg)}, sort_keys=True)
    if not (work / "stamp.json").is_file() or (work / "stamp.json").read_text() != stamp:
        # A fresh start (or a different world/config): nothing in the work folder can be reused.
        shutil.rmtree(work)
        work.mkdir()
        corpus = build_corpus(world, cfg, world_manifest["spec"]["seed"])
        np.savez(work / "corpus.npz", images=corpus["images"], **corpus["labels"])
        np.savez(work / "judge.npz", images=corpus["judge_images"], **corpus["judge_labels"])
        (work / "captions.json").write_text(json.dumps(corpus["captions"]))
        (work / "stamp.json").write_text(stamp)
    timings = {"corpus": time.perf_counter() - t0}

    def run_pair(a: Callable, b: Callable) -> None:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=2) as pool:
                futs = [pool.submit(a, work, cfg), pool.submit(b, work, cfg)]
                while not all(f.done() for f in futs):
                    time.sleep(1.0)
                    if progress:
                        progress(read_progress(work))
                for f in futs:
                    f.result()
        else:
            a(work, cfg)
            b(work, cfg)

    t1 = time.perf_counter()
    run_pair(stage_clip, stage_vae)
    timings["clip_vae"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    run_pair(stage_unet, stage_cnns_then_vae_decoder)
    timings["unet_cnns"] = time.perf_counter() - t2
    for name in SHIPPED:
        os.replace(work / f"{name}.safetensors", out / f"{name}.safetensors")
    scale = json.loads((work / "latent_scale.json").read_text())["scaling_factor"]
    manifest = {
        "stimulus_id": world_manifest["stimulus_id"],
        "world_id": world_manifest["world_id"],
        "seed": cfg.seed,
        "command": f"bench backbones train --world <{world_manifest['world_id']}> --seed {cfg.seed}",
        "train_config": asdict(cfg),
        "latent_scaling_factor": scale,
        "digests": {name: _digest(out / f"{name}.safetensors") for name in SHIPPED},
        "versions": {"torch": torch.__version__},
    }
    (out / M.MANIFEST).write_text(json.dumps(manifest, indent=1))
    t3 = time.perf_counter()
    choice = select_guidance(world_manifest["spec"]["seed"], out, cfg)
    manifest["generator_guidance"] = choice["guidance"]
    manifest["guidance_selection"] = choice
    (out / M.MANIFEST).write_text(json.dumps(manifest, indent=1))
    timings["guidance"] = time.perf_counter() - t3
    t3 = time.perf_counter()
    manifest["quality"] = measure_quality(world, out, cfg)
    timings["quality"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    manifest["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    manifest["train_minutes"] = round(timings["total"] / 60, 1)
    (out / M.MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def read_progress(work: Path) -> dict:
    out = {}
    for p in work.glob("*.progress"):
        try:
            step, total, loss = p.read_text().split()
            out[p.stem] = (int(step), int(total), float(loss))
        except ValueError:
            continue
    return out




def backbone_report(world: Path, weights_dir: Path = M.WEIGHTS_DIR, *, limit: int | None = 80) -> dict:
    """The ``backbones`` section of a world's report: verify the shipped weights match the world,
    then re-measure their quality on its held-out images (``limit`` of them for the generator)."""
    stimuli = json.loads((Path(world) / "world.json").read_text()).get("stimulus_id", "")
    try:
        manifest = M.check_stimuli(stimuli, Path(weights_dir))
    except UserError as exc:
        return {"status": "unavailable", "reason": str(exc)}
    t0 = time.perf_counter()
    known = {f.name for f in fields(TrainConfig)}  # a manifest from another version may list other fields
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest.get("train_config", {}).items() if k in known})
    quality = measure_quality(Path(world), Path(weights_dir), cfg, limit=limit)
    return {
        "status": "ok",
        "weights": str(weights_dir),
        "trained_for": manifest.get("stimulus_id"),
        "command": manifest.get("command"),
        "digests": manifest.get("digests"),
        **{k: quality[k] for k in ("classifier_accuracy", "classifier_attribute_accuracy", "clip_retrieval_top1", "generator_class_fidelity", "generator_class_fidelity_shuffled", "captioner_exact", "chance", "n_heldout")},
        "settings": quality["settings"],
        "at_training": {k: v for k, v in manifest.get("quality", {}).items() if isinstance(v, float)},
        "seconds": round(time.perf_counter() - t0, 1),
    }
