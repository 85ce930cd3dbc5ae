"""CLIP similarity (CS): cosine between CLIP image embeddings of each ground-truth image and
its generated image, averaged (published: OpenAI CLIP ViT-B/32). Embeddings are computed by
the caller; this module only does the (float64) cosine."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._util import as_float_matrix
from .registry import register

__all__ = ["clip_similarity"]


@register("clip_similarity", higher_is_better=True, label="CS", rank=60,
          description="Mean cosine similarity between CLIP image embeddings of GT and generated images")
def clip_similarity(emb_gt: Any, emb_gen: Any) -> dict:
    """Per-pair cosine of ``emb_gt[i]`` and ``emb_gen[i]`` ([M, D] each; normalised here).

    Zero-norm rows raise ``ValueError`` (cosine undefined). Returns value, per_pair, count, dim.
    """
    A = as_float_matrix(emb_gt, name="emb_gt")
    B = as_float_matrix(emb_gen, name="emb_gen")
    if A.shape != B.shape:
        raise ValueError(f"shape mismatch: emb_gt {A.shape} vs emb_gen {B.shape}")
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    bad = np.flatnonzero((na == 0) | (nb == 0))
    if bad.size:
        raise ValueError(f"zero-norm embedding rows {bad[:10].tolist()}: cosine is undefined")
    cos = np.clip(np.einsum("ij,ij->i", A / na[:, None], B / nb[:, None]), -1.0, 1.0)
    return {
        "value": float(cos.mean()),
        "per_pair": [float(v) for v in cos],
        "count": int(A.shape[0]),
        "dim": int(A.shape[1]),
    }


register("stage1_clip_similarity", higher_is_better=True, label="CS (stage 1)", rank=62,
         description="CLIP similarity of the cascade's stage-1 images (before the class-prompt refinement)")(clip_similarity)
