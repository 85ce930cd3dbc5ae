"""World specifications: the scales, the planted effects' strengths, and the ids derived from them."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from bench.world.effects import EFFECTS
from bench.errors import UserError

GENERATOR_VERSION = "3"  # bump whenever the EEG generator's output changes
STIMULUS_VERSION = "2"  # bump whenever the images, captions or splits change (invalidates the mini backbones)


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a synthetic world. Its hash is the world id.

    ``effects``: ``(name, strength)`` for every planted effect of :data:`bench.world.effects.EFFECTS`,
    sorted by name (``0`` = off). The stimulus part (images, captions, splits) depends only on
    :attr:`stimulus_id`, so worlds that differ only in effects (a world and its null worlds) show
    the same images in the same splits, and one set of mini backbones serves them all.
    """

    scale: str
    seed: int = 0
    subjects: int = 6
    images_per_class: int = 30
    image_side: int = 64
    n_splits: int = 6
    odd_length_rate: float = 0.0  # share of trials with L outside 450..600 (dropped by the loader)
    raw_file: bool = True  # also write eeg_signals_raw_with_mean_std.pth (slow content; the audit's band check)
    effects: tuple[tuple[str, float], ...] = tuple(sorted((e.name, e.default) for e in EFFECTS.values()))
    generator_version: str = GENERATOR_VERSION
    stimulus_version: str = STIMULUS_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["effects"] = {k: v for k, v in self.effects}
        return d

    def strength(self, effect: str) -> float:
        return dict(self.effects)[effect]

    @property
    def block_drift(self) -> bool:
        return self.strength("block_drift") > 0

    @property
    def world_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return f"cvpr40-synth-{self.scale}-{hashlib.sha256(blob).hexdigest()[:12]}"

    @property
    def stimulus_id(self) -> str:
        """Id of the images, captions and splits (shared by every world with the same stimuli)."""
        part = {k: getattr(self, k) for k in ("seed", "images_per_class", "image_side", "n_splits", "stimulus_version")}
        return f"stimuli-{hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]}"

    @property
    def n_images(self) -> int:
        return 40 * self.images_per_class

    def changed_effects(self) -> dict[str, float]:
        """Effects whose strength differs from the default world's."""
        return {k: v for k, v in self.effects if v != EFFECTS[k].default}

    def label(self) -> str:
        """A readable name: "mini world", "mini world, induced_class off", "mini world, block drift"."""
        parts = [f"{self.scale} world" + (f" seed {self.seed}" if self.seed else "")]
        for k, v in self.changed_effects().items():
            parts.append("block drift" if k == "block_drift" and v == 1 else f"{k} off" if v == 0 else f"{k} = {v:g}")
        return ", ".join(parts)


# smoke: tests (seconds). mini: the embedded default: every subject sees each of 1,200 images once
# (30 per class), so a 4:1:1 split by image leaves 800 training, 200 validation and 200 test
# trials per subject and a 10% fraction still has 2 images per class. full: the real set's size
# (6 x 2,000 trials). smoke and full include a few trials whose length is outside 450..600, as the
# release does, so the loader's length filter has work to do.
SCALES: dict[str, dict] = {
    "smoke": dict(subjects=3, images_per_class=6, odd_length_rate=0.01),
    "mini": dict(subjects=6, images_per_class=30),
    "full": dict(subjects=6, images_per_class=50, odd_length_rate=0.005),
}


def parse_effects(effects: dict | None) -> dict[str, float]:
    """Validated ``{effect: strength}`` overrides (unknown names or bad strengths: one UserError)."""
    out: dict[str, float] = {}
    problems = []
    for k, v in (effects or {}).items():
        if k not in EFFECTS:
            problems.append(f"unknown effect {k!r} (known: {', '.join(EFFECTS)})")
        elif isinstance(v, bool) and k == "block_drift":
            out[k] = 1.0 if v else 0.0
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            problems.append(f"effect {k}: strength must be a number >= 0 (0 = off), got {v!r}")
        elif k == "shared" and v > 1:
            problems.append(f"effect shared: a share in [0, 1], got {v!r}")
        else:
            out[k] = float(v)
    if problems:
        raise UserError("; ".join(problems))
    return out


def make_spec(scale: str, seed: int = 0, block_drift: bool = False, effects: dict | None = None, raw_file: bool = True) -> WorldSpec:
    """The world of ``scale`` with the default effects, changed by ``effects`` (and ``block_drift``)."""
    if scale not in SCALES:
        raise UserError(f"unknown world scale {scale!r}; choose one of {', '.join(SCALES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"world seed must be a non-negative integer; got {seed!r}")
    strengths = {e.name: e.default for e in EFFECTS.values()}
    if block_drift:
        strengths["block_drift"] = 1.0
    strengths.update(parse_effects(effects))
    return WorldSpec(scale=scale, seed=seed, raw_file=bool(raw_file), effects=tuple(sorted(strengths.items())), **SCALES[scale])


def null_spec(spec: WorldSpec, effect: str) -> WorldSpec:
    """The null world of ``effect``: ``spec`` with that effect switched off."""
    from dataclasses import replace

    if effect not in EFFECTS:
        raise UserError(f"unknown effect {effect!r} (known: {', '.join(EFFECTS)})")
    return replace(spec, effects=tuple(sorted({**dict(spec.effects), effect: 0.0}.items())))


def spec_of_world(entry: dict) -> WorldSpec:
    """The spec of a grid's ``worlds`` entry (``scale``, ``seed``, ``block_drift``, ``effects``, ``raw_file``)."""
    return make_spec(
        str(entry.get("scale", "mini")), seed=int(entry.get("seed", 0)), block_drift=bool(entry.get("block_drift", False)),
        effects=entry.get("effects"), raw_file=bool(entry.get("raw_file", True)),
    )
