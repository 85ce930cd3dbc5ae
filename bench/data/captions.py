"""Captions of dataset images from the captioner backbone, computed once per image and cached.

(The published pipeline captioned per trial; captions depend only on the image.)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.eegcvpr40 import image_path


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:120]


def cached_captions(names: list[str], image_root: Path, captioner, cache_file: Path, *, batch: int = 64) -> dict[str, str]:
    """``{name: caption}`` for ``names``; misses are captioned in batches and added to ``cache_file``."""
    cache: dict[str, str] = {}
    if cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except ValueError:
            cache = {}  # a corrupt cache is rebuilt, never trusted
    missing = [n for n in dict.fromkeys(names) if n not in cache]
    for i in range(0, len(missing), batch):
        chunk = missing[i : i + batch]
        imgs = np.stack([np.asarray(Image.open(image_path(image_root, n)).convert("RGB")) for n in chunk])
        cache.update(zip(chunk, captioner.caption(imgs)))
    if missing:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(cache, fh, sort_keys=True)
        os.replace(tmp, cache_file)
    return {n: cache[n] for n in names}


def caption_cache_file(cache_root: Path, dataset_id: str, captioner_id: str) -> Path:
    return cache_root / "captions" / f"{_safe(dataset_id)}__{_safe(captioner_id)}.json"
