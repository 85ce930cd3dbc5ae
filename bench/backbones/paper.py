"""Paper-scale backbones: the pretrained models BrainVis and its metrics use (REFERENCE §2, §4).

Roles, their config keys and sources:

- ``generator`` (``sd``): Stable Diffusion 1.5, a diffusers folder or hub id, or one
  ``.safetensors``/``.ckpt`` file plus ``sd_config`` (a local diffusers config folder); driven by
  :class:`~bench.backbones.diffusion.DiffusersGenerator` with the PNDM (PLMS) scheduler, as in
  BrainVis stage 1.
- ``text_encoder`` (``clip_text``): CLIP ViT-L/14 text encoder (``CLIPTextModel`` + ``CLIPTokenizer``),
  77 x 768; by default the ``sd`` source's ``text_encoder/`` and ``tokenizer/``.
- ``captioner`` (``blip2``): BLIP-2 opt-2.7b (``Blip2ForConditionalGeneration`` + its processor).
- ``classifier`` (``vit_h14``): a torchvision ``vit_h_14`` state-dict file (``ViT_H_14_Weights.DEFAULT``,
  https://download.pytorch.org/models/vit_h_14_swag-80465313.pth), ImageNet's 1000 classes.
- ``fidelity`` (``inception``): torch-fidelity's ``inception-v3-compat`` weights file
  (``weights-inception-2015-12-05-6726825d.pth``).
- ``image_encoder`` (``clip_cs``): OpenAI CLIP ViT-B/32 through open_clip: a checkpoint file, a
  folder with ``open_clip_config.json``, or a hub id.

A source is a local path (file or folder) or, for the Hugging Face roles (``sd``, ``clip_text``,
``blip2``, ``clip_cs``), a hub id such as ``Salesforce/blip2-opt-2.7b``, downloaded on first use
with internet access. With ``HF_HUB_OFFLINE=1`` only the local Hugging Face cache is searched (no
network). Every failure is a :class:`BackboneError` naming the role, the expected format and how
to provide it.

Example ``paper_backbones.toml`` (read with :func:`load_paper_config`; relative paths are taken
from the file's folder; omitted keys keep their defaults)::

    sd = "models/stable-diffusion-v1-5"                  # diffusers folder (or hub id)
    # sd = "models/v1-5-pruned-emaonly.safetensors"      # ... or one checkpoint file
    # sd_config = "models/sd15-config"                   # ... with a local diffusers config folder
    # clip_text = "openai/clip-vit-large-patch14"        # default: the sd text_encoder/tokenizer
    blip2 = "models/blip2-opt-2.7b"
    vit_h14 = "models/vit_h_14_swag-80465313.pth"
    inception = "models/weights-inception-2015-12-05-6726825d.pth"
    clip_cs = "models/vit_b32_openai_open_clip.bin"      # open_clip state dict (QuickGELU)
    device = "cuda"
    dtype = "float16"                                    # float32 | float16 | bfloat16
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from bench.backbones.base import ROLES, Backbones, to_uint8_images
from bench.errors import UserError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "BackboneError",
    "PaperBackboneConfig",
    "ClassifierSpec",
    "VIT_H_14",
    "ROLE_KEYS",
    "HFClipTextEncoder",
    "Blip2Captioner",
    "TorchvisionClassifier",
    "OpenClipImageEncoder",
    "TorchFidelityInception",
    "load_paper_config",
    "load_paper_backbones",
    "load_torchvision_classifier",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class BackboneError(UserError):
    """A paper-scale backbone is missing, unreadable or not in the expected format."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class PaperBackboneConfig:
    """Where each paper-scale backbone comes from (local path or hub id) and how to run it."""

    sd: str | None = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # SD 1.5 (runwayml's repo is gone)
    sd_config: str | None = None  # local diffusers config folder, required for a single-file `sd`
    sd_resolution: int = 512
    clip_text: str | None = None  # None: the `sd` source's text_encoder/ + tokenizer/
    blip2: str | None = "Salesforce/blip2-opt-2.7b"
    blip2_max_new_tokens: int = 30
    vit_h14: str | None = None  # torchvision state dict file (no hub id)
    inception: str | None = None  # torch-fidelity inception-v3-compat weights file (no hub id)
    clip_cs: str | None = "timm/vit_base_patch32_clip_224.openai"
    clip_cs_model: str = "ViT-B-32"  # open_clip architecture name used with a checkpoint file
    clip_cs_quick_gelu: bool = True  # OpenAI's CLIP weights were trained with QuickGELU
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 16  # images per forward pass (classifier, captioner, image encoder)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise BackboneError(f"paper backbone config: dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise BackboneError(f"paper backbone config: invalid device {self.device!r} ({_first_line(exc)})") from exc
        for name in ("sd_resolution", "blip2_max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise BackboneError(f"paper backbone config: {name} must be >= 1, got {getattr(self, name)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


_BOOL_KEYS = {"clip_cs_quick_gelu"}
_INT_KEYS = {"sd_resolution", "blip2_max_new_tokens", "batch_size"}
_PATH_KEYS = {"sd", "sd_config", "clip_text", "blip2", "vit_h14", "inception", "clip_cs"}


def load_paper_config(path: str | os.PathLike) -> PaperBackboneConfig:
    """Read a :class:`PaperBackboneConfig` from a TOML file (example in the module docstring).

    Relative paths that exist relative to the TOML file's folder are resolved there; ``~`` is
    expanded; an empty string means "not set" (the default for that key is ``None`` then).
    """
    path = Path(path).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackboneError(f"paper backbone config {path} not found") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BackboneError(f"paper backbone config {path} is not a readable TOML file: {_first_line(exc)}") from exc
    known = {f.name for f in fields(PaperBackboneConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BackboneError(f"paper backbone config {path}: unknown keys {unknown}; valid keys: {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        want = bool if key in _BOOL_KEYS else int if key in _INT_KEYS else str
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise BackboneError(f"paper backbone config {path}: {key} must be of type {want.__name__}, got {value!r}")
        if key in _PATH_KEYS:
            value = _resolve_relative(value, path.parent) if value else None
        values[key] = value
    return PaperBackboneConfig(**values)


def _resolve_relative(value: str, base: Path) -> str:
    expanded = Path(value).expanduser()
    if not expanded.is_absolute() and (base / expanded).exists():
        return str((base / expanded).resolve())
    return str(expanded) if value.startswith("~") else value


# --------------------------------------------------------------------------------------------
# Errors and sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RoleSpec:
    key: str  # config key
    expected: str  # expected path / format
    how: str  # how to provide it
    hub: bool  # accepts a Hugging Face hub id


_CONFIG_HINT = "in the paper backbone TOML (bench.backbones.paper.load_paper_config)"
ROLE_SPECS: dict[str, _RoleSpec] = {
    "generator": _RoleSpec(
        "sd",
        "a diffusers Stable Diffusion 1.5 folder (model_index.json, unet/, vae/, scheduler/, text_encoder/, "
        "tokenizer/), or one .safetensors/.ckpt checkpoint together with sd_config = a local diffusers config folder",
        f'set sd = "<folder or checkpoint file>" {_CONFIG_HINT}, or use the hub id '
        '"stable-diffusion-v1-5/stable-diffusion-v1-5" with internet access',
        True,
    ),
    "text_encoder": _RoleSpec(
        "clip_text",
        "a transformers CLIPTextModel + CLIPTokenizer folder (CLIP ViT-L/14, 77 x 768), or an SD 1.5 folder "
        "with text_encoder/ and tokenizer/",
        f'set clip_text = "<folder>" {_CONFIG_HINT} (default: the sd folder), or use the hub id '
        '"openai/clip-vit-large-patch14" with internet access',
        True,
    ),
    "captioner": _RoleSpec(
        "blip2",
        "a transformers Blip2ForConditionalGeneration folder with its processor (BLIP-2 opt-2.7b)",
        f'set blip2 = "<folder>" {_CONFIG_HINT}, or use the hub id "Salesforce/blip2-opt-2.7b" with internet access',
        True,
    ),
    "classifier": _RoleSpec(
        "vit_h14",
        "a torchvision vit_h_14 state-dict file (ViT_H_14_Weights.DEFAULT = vit_h_14_swag-80465313.pth)",
        f'download https://download.pytorch.org/models/vit_h_14_swag-80465313.pth and set vit_h14 = "<file>" '
        f"{_CONFIG_HINT}",
        False,
    ),
    "fidelity": _RoleSpec(
        "inception",
        "torch-fidelity's inception-v3-compat weights file (weights-inception-2015-12-05-6726825d.pth)",
        "download https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        f'weights-inception-2015-12-05-6726825d.pth and set inception = "<file>" {_CONFIG_HINT}',
        False,
    ),
    "image_encoder": _RoleSpec(
        "clip_cs",
        "an open_clip ViT-B-32 checkpoint file (OpenAI CLIP ViT-B/32 state dict), or a folder with "
        "open_clip_config.json and weights",
        f'set clip_cs = "<file>" {_CONFIG_HINT}, or use the hub id "timm/vit_base_patch32_clip_224.openai" '
        "with internet access",
        True,
    ),
}
ROLE_KEYS: dict[str, str] = {role: spec.key for role, spec in ROLE_SPECS.items()}


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):  # "Error(s) in loading state_dict for X:" + the first error
        lines[0] = f"{lines[0]} {lines[1]}"
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _hub_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always present with transformers
        return False


def _error(role: str, problem: str) -> BackboneError:
    spec = ROLE_SPECS[role]
    return BackboneError(
        f"{role} backbone (config key '{spec.key}'): {problem}. Expected: {spec.expected}. How to provide: {spec.how}."
    )


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class _Source:
    """A resolved source: ``kind`` is ``"file"``, ``"dir"`` or ``"hub"``; ``value`` is the path or hub id."""

    role: str
    kind: str
    value: str

    def fail(self, exc: BaseException, what: str) -> BackboneError:
        """Wrap a library exception raised while loading this source."""
        where = "hub id" if self.kind == "hub" else "path"
        problem = f"could not load {what} from {where} '{self.value}' ({_first_line(exc)})"
        if self.kind == "hub" and _hub_offline():
            problem += "; HF_HUB_OFFLINE=1 is set, so only the local Hugging Face cache was searched (no download)"
        elif self.kind == "hub":
            problem += "; check the hub id and internet access to huggingface.co, or give a local path"
        return _error(self.role, problem)


def _classify(value: str | None, *, hub_ok: bool) -> tuple[str, str]:
    """``(kind, value)`` of a configured source, or ``("", problem)`` when it is unusable."""
    if not value:
        return "", "no source configured"
    path = Path(value).expanduser()
    if path.is_file():
        return "file", str(path.resolve())
    if path.is_dir():
        return "dir", str(path.resolve())
    looks_like_path = value.startswith(("/", ".", "~")) or value.lower().endswith(WEIGHT_SUFFIXES) or "\\" in value
    if hub_ok and not looks_like_path and _HUB_ID.fullmatch(value):
        return "hub", value
    return "", f"'{value}' is not an existing file or folder"


def _resolve(role: str, value: str | None) -> _Source:
    """Classify a configured source as a local file/folder or a hub id, or raise BackboneError."""
    kind, value_or_problem = _classify(value, hub_ok=ROLE_SPECS[role].hub)
    if not kind:
        raise _error(role, value_or_problem)
    return _Source(role, kind, value_or_problem)


def _tf_dtype_kwargs(dtype: torch.dtype) -> dict:
    """transformers >= 4.56 takes ``dtype=``; older releases ``torch_dtype=``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _local_only(src: _Source) -> dict:
    return {"local_files_only": True} if src.kind != "hub" else {}


def _chunks(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# --------------------------------------------------------------------------------------------
# Role adapters
# --------------------------------------------------------------------------------------------


class HFClipTextEncoder:
    """TextEncoder over a transformers ``CLIPTextModel`` + ``CLIPTokenizer`` (SD 1.5: CLIP ViT-L/14).

    ``encode_tokens``: ``last_hidden_state`` ``[B, 77, 768]`` of prompts padded to 77 tokens, exactly
    what SD 1.5's UNet attends to. ``encode_pooled``: the L2-normalised ``pooler_output`` (end-of-text
    token). SD's text encoder ships without CLIP's text projection, so this pooled vector is *not* in the
    joint image-text space of the CLIP image tower; use it for text-text similarity only. Outputs are
    float32 on the CPU.
    """

    def __init__(self, model, tokenizer, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 n_tokens: int = 77, batch_size: int = 64) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device, dtype).eval()
        self.tokenizer = tokenizer
        self.n_tokens = int(n_tokens)
        self.width = int(model.config.hidden_size)
        self.batch_size = int(batch_size)

    def _run(self, prompts: list[str]):
        ids = self.tokenizer(
            list(prompts), padding="max_length", max_length=self.n_tokens, truncation=True, return_tensors="pt"
        ).input_ids
        return self.model(ids.to(self.device))

    @torch.no_grad()
    def encode_tokens(self, prompts: list[str]) -> torch.Tensor:
        outs = [self._run(prompts[s]).last_hidden_state.float().cpu() for s in _chunks(len(prompts), self.batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.n_tokens, self.width)

    @torch.no_grad()
    def encode_pooled(self, prompts: list[str]) -> torch.Tensor:
        outs = [self._run(prompts[s]).pooler_output.float().cpu() for s in _chunks(len(prompts), self.batch_size)]
        pooled = torch.cat(outs) if outs else torch.empty(0, self.width)
        return torch.nn.functional.normalize(pooled, dim=-1)


class Blip2Captioner:
    """Captioner over transformers' ``Blip2ForConditionalGeneration`` and its processor.

    Unprompted captioning (as BrainVis captioned its images), batched, greedy decoding,
    ``max_new_tokens`` tokens at most; returns stripped strings.
    """

    def __init__(self, model, processor, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 max_new_tokens: int = 30, batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        self.processor = processor
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def caption(self, images: np.ndarray) -> list[str]:
        images = to_uint8_images(images)
        captions: list[str] = []
        for s in _chunks(len(images), self.batch_size):
            inputs = self.processor(images=list(images[s]), return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
            out = self.model.generate(pixel_values=pixel_values, max_new_tokens=self.max_new_tokens, do_sample=False)
            captions += [c.strip() for c in self.processor.batch_decode(out, skip_special_tokens=True)]
        return captions


@dataclass(frozen=True)
class ClassifierSpec:
    """A torchvision classifier architecture and its evaluation preprocessing.

    ``factory()`` builds the untrained model the weights file is loaded into. Preprocessing follows
    ``torchvision.transforms._presets.ImageClassification``: resize the shorter side to
    ``resize_size`` (antialiased), center-crop ``crop_size``, scale to [0, 1], normalise.
    """

    name: str
    factory: Callable[[], torch.nn.Module]
    crop_size: int
    resize_size: int
    interpolation: str = "bicubic"  # torchvision InterpolationMode value
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _vit_h_14() -> torch.nn.Module:
    from torchvision.models import vit_h_14

    return vit_h_14(weights=None, image_size=518)  # the SWAG E2E weights are at 518 px


# ViT_H_14_Weights.DEFAULT (IMAGENET1K_SWAG_E2E_V1): 518 px bicubic resize and crop, ImageNet mean/std.
VIT_H_14 = ClassifierSpec("vit_h_14", _vit_h_14, crop_size=518, resize_size=518)


class TorchvisionClassifier:
    """Classifier over a torchvision classification model: ``probs`` = softmax ``[B, n_classes]`` (float32, CPU)."""

    def __init__(self, model: torch.nn.Module, spec: ClassifierSpec, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        self.spec = spec
        self.n_classes = _n_classes(model)
        self.batch_size = int(batch_size)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` -> normalised float ``[B, 3, crop, crop]`` (ImageClassification semantics)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        x = torch.from_numpy(to_uint8_images(images)).permute(0, 3, 1, 2).contiguous()
        x = F.resize(x, [self.spec.resize_size], interpolation=InterpolationMode(self.spec.interpolation), antialias=True)
        x = F.center_crop(x, [self.spec.crop_size])
        x = F.convert_image_dtype(x, torch.float)
        return F.normalize(x, mean=list(self.spec.mean), std=list(self.spec.std))

    @torch.no_grad()
    def probs(self, images: np.ndarray) -> torch.Tensor:
        images = to_uint8_images(images)
        outs = []
        for s in _chunks(len(images), self.batch_size):
            logits = self.model(self.preprocess(images[s]).to(self.device, self.dtype))
            outs.append(torch.softmax(logits.float(), dim=-1).cpu())
        return torch.cat(outs) if outs else torch.empty(0, self.n_classes)


def _n_classes(model: torch.nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"cannot tell the number of classes of {type(model).__name__}")
    return int(linears[-1].out_features)


def load_torchvision_classifier(weights: str | os.PathLike, spec: ClassifierSpec = VIT_H_14, *,
                                device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                                batch_size: int = 16) -> TorchvisionClassifier:
    """Build ``spec.factory()`` and load a state-dict file into it (``torch.load(weights_only=True)``)."""
    src = _resolve("classifier", str(weights))
    if src.kind != "file":
        raise _error("classifier", f"'{src.value}' is a folder, not a weights file")
    try:
        state = torch.load(src.value, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        model = spec.factory()
        model.load_state_dict(state)
    except Exception as exc:
        raise src.fail(exc, f"{spec.name} weights") from exc
    return TorchvisionClassifier(model, spec, device=device, dtype=dtype, batch_size=batch_size)


class OpenClipImageEncoder:
    """ImageEncoder over an open_clip model: L2-normalised image features ``[B, D]`` (float32, CPU),
    after open_clip's own preprocessing of PIL images."""

    def __init__(self, model, preprocess: Callable, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        self.preprocess = preprocess
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        from PIL import Image

        images = to_uint8_images(images)
        outs = []
        for s in _chunks(len(images), self.batch_size):
            x = torch.stack([self.preprocess(Image.fromarray(im)) for im in images[s]])
            outs.append(self.model.encode_image(x.to(self.device, self.dtype)).float().cpu())
        feats = torch.cat(outs) if outs else torch.empty(0, 0)
        return torch.nn.functional.normalize(feats, dim=-1)


@dataclass
class TorchFidelityInception:
    """FidelityExtractor: torch-fidelity's ``inception-v3-compat`` with a local weights file."""

    weights_path: str
    name: str = field(default="inception-v3-compat")

    def fidelity_kwargs(self) -> dict:
        return {"feature_extractor": self.name, "feature_extractor_weights_path": self.weights_path}


# --------------------------------------------------------------------------------------------
# Loaders (one per role, registered in _ROLE_LOADERS)
# --------------------------------------------------------------------------------------------


@dataclass
class _SDParts:
    vae: Any
    unet: Any
    scheduler: Any
    text_encoder: Any = None  # filled only for a single-file checkpoint (it carries the text encoder)
    tokenizer: Any = None


class _PaperLoader:
    """Loads roles from one config, sharing what roles have in common (the SD checkpoint)."""

    def __init__(self, cfg: PaperBackboneConfig, classifier_spec: ClassifierSpec = VIT_H_14) -> None:
        self.cfg = cfg
        self.classifier_spec = classifier_spec

    def source(self, role: str) -> _Source:
        """The checked source of ``role`` (the generator, and by default the text encoder, use ``sd``)."""
        if role == "generator" or (role == "text_encoder" and not self.cfg.clip_text):
            return self.sd_source(role)
        src = _resolve(role, getattr(self.cfg, ROLE_KEYS[role]))
        if role in ("classifier", "fidelity") and src.kind != "file":
            raise _error(role, f"'{src.value}' is a folder, not a weights file")
        return src

    def sd_source(self, role: str = "generator") -> _Source:
        """The ``sd`` source, checked; ``role`` names who needs it (the text encoder defaults to SD's)."""
        prefix = "" if role == "generator" else "clip_text is not set, so the text encoder comes from sd, and sd: "
        kind, value = _classify(self.cfg.sd, hub_ok=True)
        if not kind:
            raise _error(role, prefix + value)
        if kind == "file":
            if not value.lower().endswith(WEIGHT_SUFFIXES):
                raise _error(role, f"{prefix}'{value}' is neither a diffusers folder nor a .safetensors/.ckpt file")
            if not self.cfg.sd_config or not Path(self.cfg.sd_config).expanduser().is_dir():
                raise _error(role, f"{prefix}the single-file checkpoint '{value}' needs sd_config = a local diffusers "
                                   f"config folder (got {self.cfg.sd_config!r}); without one diffusers would go online")
        return _Source(role, kind, value)

    @cached_property
    def sd_parts(self) -> _SDParts:
        from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

        src, dtype = self.sd_source(), self.cfg.torch_dtype
        try:
            if src.kind == "file":
                pipe = StableDiffusionPipeline.from_single_file(
                    src.value, config=str(Path(self.cfg.sd_config).expanduser()), local_files_only=True,
                    torch_dtype=dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                )
                parts = _SDParts(pipe.vae, pipe.unet, pipe.scheduler, pipe.text_encoder, pipe.tokenizer)
            else:
                kw = _local_only(src)
                parts = _SDParts(
                    AutoencoderKL.from_pretrained(src.value, subfolder="vae", torch_dtype=dtype, **kw),
                    UNet2DConditionModel.from_pretrained(src.value, subfolder="unet", torch_dtype=dtype, **kw),
                    PNDMScheduler.from_pretrained(src.value, subfolder="scheduler", **kw),
                )
        except Exception as exc:
            raise src.fail(exc, "Stable Diffusion 1.5") from exc
        parts.scheduler = PNDMScheduler.from_config(parts.scheduler.config)  # PLMS, as in BrainVis stage 1
        return parts

    @cached_property
    def text_encoder(self) -> tuple[HFClipTextEncoder, str]:
        from transformers import CLIPTextModel, CLIPTokenizer

        src, cfg = self.source("text_encoder"), self.cfg
        if src.kind == "file":  # the single-file SD checkpoint carries its text encoder
            parts = self.sd_parts
            model, tokenizer, ident = parts.text_encoder, parts.tokenizer, f"{src.value}::text_encoder"
        else:
            nested = not cfg.clip_text or (src.kind == "dir" and (Path(src.value) / "text_encoder").is_dir())
            te_sub, tok_sub = ("text_encoder", "tokenizer") if nested else ("", "")
            kw = _local_only(src)
            try:
                model = CLIPTextModel.from_pretrained(src.value, subfolder=te_sub, **_tf_dtype_kwargs(cfg.torch_dtype), **kw)
                tokenizer = CLIPTokenizer.from_pretrained(src.value, subfolder=tok_sub, **kw)
            except Exception as exc:
                raise src.fail(exc, "the CLIP text encoder") from exc
            ident = f"{src.value}::text_encoder" if nested else src.value
        if model is None or tokenizer is None:
            raise _error("text_encoder", f"'{src.value}' has no text encoder/tokenizer")
        enc = HFClipTextEncoder(model, tokenizer, device=cfg.device, dtype=cfg.torch_dtype)
        return enc, ident


def _load_generator(ld: _PaperLoader) -> tuple[Any, str]:
    from bench.backbones.diffusion import DiffusersGenerator

    src = ld.sd_source()
    parts = ld.sd_parts
    text_encoder, _ = ld.text_encoder  # the empty prompt's embedding is the classifier-free negative
    gen = DiffusersGenerator(
        parts.vae, parts.unet, parts.scheduler, resolution=ld.cfg.sd_resolution,
        uncond_embeds=text_encoder.encode_tokens([""]), device=ld.cfg.device, dtype=ld.cfg.torch_dtype,
    )
    return gen, src.value


def _load_text_encoder(ld: _PaperLoader) -> tuple[Any, str]:
    return ld.text_encoder


def _load_captioner(ld: _PaperLoader) -> tuple[Any, str]:
    from transformers import AutoProcessor, Blip2ForConditionalGeneration

    src, cfg = ld.source("captioner"), ld.cfg
    kw = _local_only(src)
    try:
        model = Blip2ForConditionalGeneration.from_pretrained(src.value, **_tf_dtype_kwargs(cfg.torch_dtype), **kw)
        processor = AutoProcessor.from_pretrained(src.value, **kw)
    except Exception as exc:
        raise src.fail(exc, "BLIP-2") from exc
    cap = Blip2Captioner(model, processor, device=cfg.device, dtype=cfg.torch_dtype,
                         max_new_tokens=cfg.blip2_max_new_tokens, batch_size=cfg.batch_size)
    return cap, src.value


def _load_classifier(ld: _PaperLoader) -> tuple[Any, str]:
    src, cfg = ld.source("classifier"), ld.cfg
    clf = load_torchvision_classifier(src.value, ld.classifier_spec, device=cfg.device, dtype=cfg.torch_dtype,
                                      batch_size=cfg.batch_size)
    return clf, src.value


def _load_fidelity(ld: _PaperLoader) -> tuple[Any, str]:
    src = ld.source("fidelity")
    return TorchFidelityInception(src.value), src.value


def _load_image_encoder(ld: _PaperLoader) -> tuple[Any, str]:
    import open_clip

    src, cfg = ld.source("image_encoder"), ld.cfg
    if src.kind == "file":
        name, kw = cfg.clip_cs_model, {"pretrained": src.value, "force_quick_gelu": cfg.clip_cs_quick_gelu}
    else:  # folder with open_clip_config.json, or hub repo: the config there decides the architecture
        name, kw = ("local-dir:" if src.kind == "dir" else "hf-hub:") + src.value, {}
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, **kw)
    except Exception as exc:
        raise src.fail(exc, f"the open_clip model {name!r}") from exc
    enc = OpenClipImageEncoder(model, preprocess, device=cfg.device, dtype=cfg.torch_dtype, batch_size=cfg.batch_size)
    return enc, src.value


_ROLE_LOADERS: dict[str, Callable[[_PaperLoader], tuple[Any, str]]] = {
    "text_encoder": _load_text_encoder,
    "image_encoder": _load_image_encoder,
    "captioner": _load_captioner,
    "generator": _load_generator,
    "classifier": _load_classifier,
    "fidelity": _load_fidelity,
}


def load_paper_backbones(cfg: PaperBackboneConfig, roles: Iterable[str] = ROLES, *,
                         classifier_spec: ClassifierSpec = VIT_H_14) -> Backbones:
    """Load the requested roles (others stay ``None``); ``ids[role]`` records the path or hub id.

    All sources are checked before anything heavy loads, so configuration mistakes in several
    roles are reported together in one :class:`BackboneError`.
    """
    roles = list(dict.fromkeys(roles))
    unknown = [r for r in roles if r not in _ROLE_LOADERS]
    if unknown:
        raise BackboneError(f"unknown backbone roles {unknown}; valid roles: {list(ROLES)}")
    loader = _PaperLoader(cfg, classifier_spec)
    problems = []
    for role in roles:
        try:
            loader.source(role)
        except BackboneError as exc:
            problems.append(str(exc))
    if problems:
        raise BackboneError("\n".join(problems))
    out = Backbones()
    for role in roles:
        backbone, ident = _ROLE_LOADERS[role](loader)
        setattr(out, role, backbone)
        out.ids[role] = ident
    return out

