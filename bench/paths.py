"""Where the harness keeps shared, reusable work (worlds, embeddings, captions)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

CACHE_ENV = "BRAINVIS_BENCH_CACHE"
# The shipped mini backbones and their manifest (here, so light modules need not import the models).
PACKAGE_DIR = Path(__file__).resolve().parent
MINI_WEIGHTS_DIR = PACKAGE_DIR / "weights"
GRIDS_DIR = PACKAGE_DIR / "grids"  # shipped grids (bench run --grid NAME)
PROFILES_DIR = PACKAGE_DIR / "profiles"  # model scales (bench/profiles/<name>.toml)
MINI_MANIFEST = "manifest.json"


def cache_dir(override: str | Path | None = None) -> Path:
    """The cache directory: ``override``, else ``$BRAINVIS_BENCH_CACHE``, else the user's cache dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(user_cache_dir("brainvis-bench"))


def world_dir(world_id: str, override: str | Path | None = None) -> Path:
    return cache_dir(override) / "worlds" / world_id
