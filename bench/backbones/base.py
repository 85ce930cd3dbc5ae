"""Backbone roles: what the methods and metrics need from pretrained models, at either scale.

Images cross every interface as ``uint8`` arrays ``[B, H, W, 3]`` (RGB); each backbone does its
own resizing/normalisation. Text conditioning is a token sequence ``[B, n_tokens, width]``
(SD 1.5: the CLIP ViT-L/14 text encoder's last hidden state, 77 x 768).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch

ROLES = ("text_encoder", "image_encoder", "captioner", "generator", "classifier", "fidelity")


@runtime_checkable
class TextEncoder(Protocol):
    n_tokens: int
    width: int

    def encode_tokens(self, prompts: list[str]) -> torch.Tensor:
        """Conditioning sequence ``[B, n_tokens, width]`` (what the generator's UNet attends to)."""

    def encode_pooled(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised embedding ``[B, D]`` in the joint image-text space (retrieval, CS)."""


@runtime_checkable
class ImageEncoder(Protocol):
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """L2-normalised image embedding ``[B, D]`` (CLIP image tower; CLIP similarity)."""


@runtime_checkable
class Captioner(Protocol):
    def caption(self, images: np.ndarray) -> list[str]:
        """One caption per image."""


@runtime_checkable
class Generator(Protocol):
    resolution: int

    def txt2img(
        self, prompt_embeds: torch.Tensor, *, steps: int, guidance: float, seed: int | Sequence[int], negative_embeds: torch.Tensor | None = None,
        sampler: str = "plms",
    ) -> np.ndarray:
        """Images ``[B, H, W, 3]`` uint8 from conditioning sequences ``[B, n_tokens, width]``;
        ``seed``: one for the batch or one per image; ``sampler`` names the diffusion sampler
        (``bench.backbones.diffusion.SAMPLERS``)."""

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
        sampler: str = "plms",
    ) -> np.ndarray:
        """Refine ``images`` towards the conditioning (SDEdit / img2img); ``seed`` as for ``txt2img``."""


@runtime_checkable
class Classifier(Protocol):
    n_classes: int

    def probs(self, images: np.ndarray) -> torch.Tensor:
        """Softmax over the classifier's own classes, ``[B, n_classes]`` (N-way Top-K)."""


@runtime_checkable
class FidelityExtractor(Protocol):
    name: str  # torch-fidelity feature-extractor name (registered)

    def fidelity_kwargs(self) -> dict:
        """Keyword arguments for ``torch_fidelity.calculate_metrics`` selecting this extractor."""


@dataclass
class Backbones:
    """One backbone per role, with the identifiers recorded in every trial record."""

    text_encoder: TextEncoder | None = None
    image_encoder: ImageEncoder | None = None
    captioner: Captioner | None = None
    generator: Generator | None = None
    classifier: Classifier | None = None
    fidelity: FidelityExtractor | None = None
    ids: dict[str, str] = field(default_factory=dict)  # role -> id (path, hub id or mini weights digest)


def to_uint8_images(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Validate/convert a batch to ``uint8 [B, H, W, 3]``."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [B, H, W, 3]; got {images.dtype} {list(images.shape)}")
    return images
