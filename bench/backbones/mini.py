"""Mini-scale backbones: small models of the same library classes, trained on the synthetic world.

- CLIP: ``open_clip.model.CLIP`` with a small custom config (open_clip's ModifiedResNet image
  tower, as in OpenAI's RN50 but narrow, on 32 px; a text transformer over open_clip's own BPE
  tokens, 77-token context like SD's). Its text tower's last hidden state ``[B, 77, 64]`` is the
  generator's conditioning (SD 1.5 uses 77 x 768). A patch-4 ViT tower of the same budget reached
  only 0.69 held-out class-prompt retrieval; this conv tower 0.97.
- Generator: diffusers ``AutoencoderKL`` (32 px <-> 8x8x8 latents: 8 channels rather than SD's 4,
  because at 4 channels the 8x8 latent lost the fills' 4-pixel stripes and checks, and with them
  the class) + ``UNet2DConditionModel`` + PNDM (PLMS) scheduler, driven by
  :class:`~bench.backbones.diffusion.DiffusersGenerator`.
- Evaluation classifier (N-way Top-K over the renderer's 200 concepts, of which the world's 40
  classes are a part, as ImageNet's 1,000 classes hold EEG-CVPR40's 40; plus attribute heads for
  attribute fidelity), fidelity network (IS/FID features over the 200 concepts, registered with
  torch-fidelity) and captioner (class + attribute heads -> caption): small CNNs.

Weights live in one safetensors file per model under ``bench/weights/`` (stored as float16 to keep
the package small) with ``manifest.json`` recording the stimulus id they were trained for (one set of
weights serves every world with those images and splits: a world and its null worlds), the
command, the training seed and their measured quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file, save_file

from bench.backbones.base import Backbones, to_uint8_images
from bench.backbones.diffusion import DiffusersGenerator
from bench.paths import MINI_MANIFEST, MINI_WEIGHTS_DIR
from bench.world.images import ATTRIBUTES, N_CONCEPTS, concept_of_label
from bench.data.classes import CLASS_NAMES, WNIDS
from bench.errors import UserError

RESOLUTION = 32
WEIGHTS_DIR = MINI_WEIGHTS_DIR
MANIFEST = MINI_MANIFEST

CLIP_CFG = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=RESOLUTION, layers=(1, 1, 1, 1), width=16),  # ModifiedResNet (layers as a tuple)
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2, mlp_ratio=2.0),
)
VAE_CFG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=8,
    norm_num_groups=16,
    sample_size=RESOLUTION,
)
UNET_CFG = dict(
    sample_size=RESOLUTION // 4,
    in_channels=VAE_CFG["latent_channels"],
    out_channels=VAE_CFG["latent_channels"],
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 128),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=16,
)
SCHEDULER_CFG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
ATTRIBUTE_HEADS = {k: len(v) for k, v in ATTRIBUTES.items()}
CAPTION_HEADS = {"class": len(CLASS_NAMES), **ATTRIBUTE_HEADS}  # the captioner: the world's 40 classes
JUDGE_HEADS = {"class": N_CONCEPTS, **ATTRIBUTE_HEADS}  # the evaluation classifier: the renderer's 200 concepts
MEAN = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
STD = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def build_clip() -> open_clip.model.CLIP:
    return open_clip.model.CLIP(
        embed_dim=CLIP_CFG["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**CLIP_CFG["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**CLIP_CFG["text_cfg"]),
    )


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(**VAE_CFG)


def build_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(**UNET_CFG)


class SmallCNN(nn.Module):
    """Conv-BN-ReLU x 3 stages on 32 px -> pooled features -> one linear head per output."""

    def __init__(self, heads: dict[str, int], width: int = 32, feat_dim: int = 128) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2),
            )  # fmt: skip

        self.body = nn.Sequential(stage(3, width), stage(width, 2 * width), stage(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.neck = nn.Sequential(nn.Linear(4 * width, feat_dim), nn.ReLU())
        self.heads = nn.ModuleDict({k: nn.Linear(feat_dim, n) for k, n in heads.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        return {k: h(f) for k, h in self.heads.items()}


def images_to_tensor(images: np.ndarray, resolution: int = RESOLUTION) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, r, r]`` in [-1, 1] (bicubic resize when needed)."""
    images = to_uint8_images(images)
    if images.shape[1] != resolution or images.shape[2] != resolution:
        images = np.stack([np.asarray(Image.fromarray(im).resize((resolution, resolution), Image.BICUBIC)) for im in images])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


# --------------------------------------------------------------------------------------------------
# Role adapters
# --------------------------------------------------------------------------------------------------


class MiniClipText:
    """Text role: token sequence (last hidden state) and pooled, normalised embedding."""

    def __init__(self, clip: open_clip.model.CLIP) -> None:
        self.clip = clip.eval()
        self.n_tokens = CLIP_CFG["text_cfg"]["context_length"]
        self.width = CLIP_CFG["text_cfg"]["width"]

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return open_clip.tokenize(list(prompts), context_length=self.n_tokens)

    @torch.no_grad()
    def encode_tokens(self, prompts: list[str]) -> torch.Tensor:
        return token_sequence(self.clip, self.tokenize(prompts))

    @torch.no_grad()
    def encode_pooled(self, prompts: list[str]) -> torch.Tensor:
        return self.clip.encode_text(self.tokenize(prompts), normalize=True)


def token_sequence(clip: open_clip.model.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """The text tower's last hidden state ``[B, n_ctx, width]`` (as SD uses CLIP's)."""
    x = clip.token_embedding(tokens) + clip.positional_embedding
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    return clip.ln_final(x)


class MiniClipImage:
    def __init__(self, clip: open_clip.model.CLIP) -> None:
        self.clip = clip.eval()

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        return self.clip.encode_image(images_to_tensor(images), normalize=True)


class MiniClassifier:
    """Evaluation classifier: softmax over the renderer's 200 concepts (a superset of the world's 40
    classes, as ImageNet's classes are of EEG-CVPR40's), and the image's attributes."""

    label_space = "concepts"

    def __init__(self, net: SmallCNN) -> None:
        self.net = net.eval()
        self.n_classes = self.net.heads["class"].out_features

    @torch.no_grad()
    def probs(self, images: np.ndarray) -> torch.Tensor:
        return F.softmax(self.net(images_to_tensor(images))["class"], dim=-1)

    def class_of_label(self, wnids: list[str]) -> np.ndarray | None:
        """The classifier's class index of each dataset class (by WNID); None if one is unknown."""
        try:
            return np.array([concept_of_label(WNIDS.index(w)) for w in wnids])
        except ValueError:
            return None

    @torch.no_grad()
    def attribute_probs(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        """Softmax of each attribute head (``ATTRIBUTES`` order of values), ``{name: [B, n_values]}``."""
        out = self.net(images_to_tensor(images))
        return {k: F.softmax(out[k], dim=-1) for k in ATTRIBUTES if k in out}


class MiniCaptioner:
    """Predicts class and attributes, and states them in the world's caption template."""

    def __init__(self, net: SmallCNN) -> None:
        self.net = net.eval()

    @torch.no_grad()
    def caption(self, images: np.ndarray) -> list[str]:
        out = {k: v.argmax(-1).tolist() for k, v in self.net(images_to_tensor(images)).items()}
        caps = []
        for i in range(len(out["class"])):
            a = {k: ATTRIBUTES[k][out[k][i]] for k in ATTRIBUTES}
            caps.append(
                f"a photo of a {CLASS_NAMES[out['class'][i]]}, {a['size']} and {a['colour']}, on the {a['position']}, on a {a['background']} background"
            )
        return caps


class MiniFidelity:
    """IS/FID features of the fidelity CNN (class logits; 128-d features), via torch-fidelity."""

    name = "brainvis-mini-fidelity"

    def __init__(self, net: SmallCNN, weights_path: Path) -> None:
        self.net = net.eval()
        self.weights_path = Path(weights_path)

    @torch.no_grad()
    def features(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        x = images_to_tensor(images)
        f = self.net.features(x)
        return {"logits_unbiased": self.net.heads["class"](f), "features": f}

    def fidelity_kwargs(self) -> dict:
        from bench.backbones.fidelity import register_mini_extractor

        name = register_mini_extractor(lambda folder: load_model("fidelity", folder), RESOLUTION)
        return {"feature_extractor": name, "feature_extractor_weights_path": str(self.weights_path)}


# --------------------------------------------------------------------------------------------------
# Weights on disk
# --------------------------------------------------------------------------------------------------

MODELS = {
    "clip": build_clip,
    "clip_phase1": build_clip,
    "vae": build_vae,
    "unet": build_unet,
    "classifier": lambda: SmallCNN(JUDGE_HEADS, width=24),
    "fidelity": lambda: SmallCNN({"class": N_CONCEPTS}, width=12),
    "captioner": lambda: SmallCNN(CAPTION_HEADS, width=16),
}


def save_model(model: nn.Module, path: Path) -> None:
    """Store a model's state as float16 safetensors (integer buffers kept as they are)."""
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def load_model(name: str, weights_dir: Path) -> nn.Module:
    path = weights_dir / f"{name}.safetensors"
    if not path.is_file():
        raise UserError(
            f"mini backbone '{name}': weights not found at {path}; they ship with the package "
            f"(bench/weights/) or are made by `bench backbones train --world DIR --out {weights_dir}`"
        )
    model = MODELS[name]()
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()


def read_manifest(weights_dir: Path = WEIGHTS_DIR) -> dict:
    path = weights_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"no mini backbones at {weights_dir} ({MANIFEST} missing); run `bench backbones train --world DIR --out {weights_dir}`")
    return json.loads(path.read_text())


def check_stimuli(stimulus_id: str, weights_dir: Path = WEIGHTS_DIR) -> dict:
    """Verify the mini weights were trained on these stimuli (images and splits); raise a
    how-to-retrain error if not."""
    manifest = read_manifest(weights_dir)
    if manifest.get("stimulus_id") != stimulus_id:
        raise UserError(
            f"the mini backbones at {weights_dir} were trained for stimuli {manifest.get('stimulus_id', manifest.get('world_id'))}, "
            f"not {stimulus_id}; retrain them with `bench backbones train --world <this world's folder> --out DIR` "
            f"(about {manifest.get('train_minutes', '?')} min on 2 cores) and pass `--backbones-dir DIR`"
        )
    return manifest


def load_mini_backbones(weights_dir: Path = WEIGHTS_DIR, *, stimulus_id: str | None = None) -> Backbones:
    """All roles at mini scale from ``weights_dir`` (checked against ``stimulus_id`` if given)."""
    weights_dir = Path(weights_dir)
    manifest = check_stimuli(stimulus_id, weights_dir) if stimulus_id else read_manifest(weights_dir)
    clip = load_model("clip", weights_dir)
    text = MiniClipText(clip)
    vae = load_model("vae", weights_dir)
    vae.register_to_config(scaling_factor=float(manifest["latent_scaling_factor"]))
    generator = DiffusersGenerator(
        vae,
        load_model("unet", weights_dir),
        PNDMScheduler(**SCHEDULER_CFG, skip_prk_steps=True),
        resolution=RESOLUTION,
        uncond_embeds=text.encode_tokens([""]),
    )
    digests = manifest.get("digests", {})
    return Backbones(
        text_encoder=text,
        image_encoder=MiniClipImage(clip),
        captioner=MiniCaptioner(load_model("captioner", weights_dir)),
        generator=generator,
        classifier=MiniClassifier(load_model("classifier", weights_dir)),
        fidelity=MiniFidelity(load_model("fidelity", weights_dir), weights_dir / "fidelity.safetensors"),
        ids={role: f"mini:{name}@{digests.get(name, '?')[:12]}" for role, name in (
            ("text_encoder", "clip"), ("image_encoder", "clip"), ("captioner", "captioner"),
            ("generator", "unet"), ("classifier", "classifier"), ("fidelity", "fidelity"),
        )},  # fmt: skip
    )


def noise_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULER_CFG)


def untrained_mini_backbones(seed: int = 0) -> Backbones:
    """Every role at mini shapes with random weights: for tests of code paths (never for numbers)."""
    torch.manual_seed(seed)
    clip = build_clip().eval()
    text = MiniClipText(clip)
    vae = build_vae().eval()
    generator = DiffusersGenerator(vae, build_unet().eval(), PNDMScheduler(**SCHEDULER_CFG, skip_prk_steps=True), resolution=RESOLUTION, uncond_embeds=text.encode_tokens([""]))
    fidelity_net = MODELS["fidelity"]().eval()
    return Backbones(
        text_encoder=text,
        image_encoder=MiniClipImage(clip),
        captioner=MiniCaptioner(MODELS["captioner"]().eval()),
        generator=generator,
        classifier=MiniClassifier(MODELS["classifier"]().eval()),
        fidelity=_InMemoryFidelity(fidelity_net),
        ids={role: f"untrained:{seed}" for role in ("text_encoder", "image_encoder", "captioner", "generator", "classifier", "fidelity")},
    )


class _InMemoryFidelity(MiniFidelity):
    """A fidelity role whose weights are written to a temporary file for torch-fidelity."""

    def __init__(self, net: SmallCNN) -> None:
        import shutil
        import tempfile
        import weakref

        folder = Path(tempfile.mkdtemp(prefix="bench-fidelity-"))
        save_model(net, folder / "fidelity.safetensors")
        super().__init__(net, folder / "fidelity.safetensors")
        weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)  # the file lives as long as the role
