"""World specifications: the scales, and the world id derived from the specification."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from brainvis.errors import UserError

GENERATOR_VERSION = "1"  # bump whenever the generator's output changes


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a synthetic world. Its hash is the world id."""

    scale: str
    seed: int = 0
    block_drift: bool = False
    subjects: int = 6
    images_per_class: int = 12
    image_side: int = 64
    n_splits: int = 6
    odd_length_rate: float = 0.0  # share of trials with L outside 450..600 (dropped by the loader)
    generator_version: str = GENERATOR_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def world_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return f"cvpr40-synth-{self.scale}-{hashlib.sha256(blob).hexdigest()[:12]}"

    @property
    def n_images(self) -> int:
        return 40 * self.images_per_class


# smoke: tests (seconds). mini: the embedded default, 2 test images per class -> 80 test trials per
# subject with the release's 4:1:1 split by image (no odd-length trials, so none is dropped).
# full: the real set's size (6 x 2,000 trials). smoke and full include a few trials whose length
# is outside 450..600, as the release does, so the loader's length filter has work to do.
SCALES: dict[str, dict] = {
    "smoke": dict(subjects=3, images_per_class=6, odd_length_rate=0.01),
    "mini": dict(subjects=6, images_per_class=12),
    "full": dict(subjects=6, images_per_class=50, odd_length_rate=0.005),
}


def make_spec(scale: str, seed: int = 0, block_drift: bool = False) -> WorldSpec:
    if scale not in SCALES:
        raise UserError(f"unknown world scale {scale!r}; choose one of {', '.join(SCALES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"world seed must be a non-negative integer; got {seed!r}")
    return WorldSpec(scale=scale, seed=seed, block_drift=block_drift, **SCALES[scale])
