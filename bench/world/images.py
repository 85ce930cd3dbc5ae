"""Procedural images of the synthetic world.

Each of the 40 classes is a distinct visual concept: one of 10 shapes drawn with one of 4 fills
(10 x 4 = 40). Within a class, images vary in attributes a caption can state: colour, size,
position and background. The class is what an image classifier must recognise; the attributes are
what a caption adds on top of the class prompt (the "semantic interpolation" axis of BrainVis).

The renderer knows more concepts than the EEG shows: 20 shapes x 10 fills = 200 (:data:`N_CONCEPTS`),
of which the 40 EEG classes are the first 10 shapes with the first 4 fills. The evaluation
classifier is trained on all 200, so N-way top-K draws 50 of 200 classes as the real protocol
draws 50 of ImageNet's 1,000 (:func:`concept_of_label` maps an EEG label into that space).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.data.classes import CLASS_NAMES, WNIDS

SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross", "crescent", "arrow",
          "semicircle", "trapezoid", "parallelogram", "chevron", "bolt", "tee", "ell", "hourglass", "heart", "drop")  # fmt: skip
FILLS = ("solid", "striped", "checkered", "hollow", "vertical", "diagonal", "dotted", "grid", "half", "core")
EEG_SHAPES, EEG_FILLS = 10, 4  # the EEG's 40 classes: the first 10 shapes x the first 4 fills
N_CONCEPTS = len(SHAPES) * len(FILLS)
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
    "purple": (150, 60, 190),
    "orange": (240, 130, 30),
}
SIZES = {"small": 0.5, "large": 0.8}  # object diameter as a fraction of the image side
POSITIONS = {"left": -0.17, "centre": 0.0, "right": 0.17}  # horizontal offset of the centre
BACKGROUNDS = {"white": (240, 240, 235), "grey": (128, 128, 128), "black": (20, 20, 25), "sky": (150, 200, 240)}
ATTRIBUTES = {"colour": tuple(COLOURS), "size": tuple(SIZES), "position": tuple(POSITIONS), "background": tuple(BACKGROUNDS)}
_SUPERSAMPLE = 4


def class_concept(label: int) -> tuple[str, str]:
    """(shape, fill) of an EEG class (0..39): shapes cycle fastest so neighbouring labels differ in shape."""
    return SHAPES[label % EEG_SHAPES], FILLS[label // EEG_SHAPES]


def concept(index: int) -> tuple[str, str]:
    """(shape, fill) of a concept of the full renderer space (0..199): fill-major, shapes fastest."""
    return SHAPES[index % len(SHAPES)], FILLS[index // len(SHAPES)]


def concept_of_label(label: int) -> int:
    """The concept index (0..199) of EEG class ``label`` (0..39)."""
    shape, fill = class_concept(label)
    return FILLS.index(fill) * len(SHAPES) + SHAPES.index(shape)


def concept_name(index: int) -> str:
    """A readable name of a concept ("striped heart")."""
    shape, fill = concept(index)
    return f"{fill} {shape}"


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines one rendered image."""

    name: str
    label: int
    colour: str
    size: str
    position: str
    background: str
    rotation: float  # degrees, small within-class jitter
    dy: float  # vertical jitter, fraction of the side

    def attributes(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ATTRIBUTES}

    def to_dict(self) -> dict:
        return asdict(self)


def caption(spec: ImageSpec) -> str:
    """The ground-truth caption: the class plus the attributes a captioner would state."""
    return f"a photo of a {CLASS_NAMES[spec.label]}, {spec.size} and {spec.colour}, on the {spec.position}, on a {spec.background} background"


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(phase + rot + 2 * math.pi * k / n), cy + radius * math.sin(phase + rot + 2 * math.pi * k / n)) for k in range(n)]

    if shape == "square":
        return ring(4, r, math.pi / 4)
    if shape == "diamond":
        return ring(4, r, 0.0)
    if shape == "triangle":
        return ring(3, r, -math.pi / 2)
    if shape == "pentagon":
        return ring(5, r, -math.pi / 2)
    if shape == "hexagon":
        return ring(6, r, 0.0)
    if shape == "star":
        outer, inner = ring(5, r, -math.pi / 2), ring(5, 0.42 * r, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        a, b = r, 0.36 * r
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
    elif shape == "arrow":
        pts = [(-r, -0.3 * r), (0.1 * r, -0.3 * r), (0.1 * r, -0.8 * r), (r, 0), (0.1 * r, 0.8 * r), (0.1 * r, 0.3 * r), (-r, 0.3 * r)]
    elif shape == "semicircle":
        pts = [(r * math.cos(a), -r * math.sin(a) + 0.4 * r) for a in [math.pi * k / 24 for k in range(25)]]
    elif shape == "trapezoid":
        pts = [(-0.45 * r, -0.7 * r), (0.45 * r, -0.7 * r), (r, 0.7 * r), (-r, 0.7 * r)]
    elif shape == "parallelogram":
        pts = [(-0.4 * r, -0.6 * r), (r, -0.6 * r), (0.4 * r, 0.6 * r), (-r, 0.6 * r)]
    elif shape == "chevron":
        pts = [(-r, -0.8 * r), (-0.3 * r, -0.8 * r), (0.6 * r, 0), (-0.3 * r, 0.8 * r), (-r, 0.8 * r), (-0.1 * r, 0)]
    elif shape == "bolt":
        pts = [(0.2 * r, -r), (0.6 * r, -r), (0.1 * r, -0.1 * r), (0.5 * r, -0.1 * r), (-0.4 * r, r), (-0.05 * r, 0.15 * r), (-0.45 * r, 0.15 * r)]
    elif shape == "tee":
        pts = [(-r, -r), (r, -r), (r, -0.5 * r), (0.25 * r, -0.5 * r), (0.25 * r, r), (-0.25 * r, r), (-0.25 * r, -0.5 * r), (-r, -0.5 * r)]
    elif shape == "ell":
        pts = [(-0.7 * r, -r), (-0.2 * r, -r), (-0.2 * r, 0.5 * r), (0.8 * r, 0.5 * r), (0.8 * r, r), (-0.7 * r, r)]
    elif shape == "hourglass":
        pts = [(-0.8 * r, -r), (0.8 * r, -r), (0.15 * r, 0), (0.8 * r, r), (-0.8 * r, r), (-0.15 * r, 0)]
    elif shape == "heart":
        pts = [(16 * math.sin(a) ** 3 * r / 17, -(13 * math.cos(a) - 5 * math.cos(2 * a) - 2 * math.cos(3 * a) - math.cos(4 * a)) * r / 17) for a in [2 * math.pi * k / 48 for k in range(48)]]
    elif shape == "drop":
        pts = [(0, -r)] + [(0.6 * r * math.cos(a), 0.35 * r + 0.6 * r * math.sin(a)) for a in [-math.pi * 0.15 + math.pi * 1.3 * k / 24 for k in range(25)]]
    else:
        raise ValueError(shape)
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _shape_mask(shape: str, side: int, cx: float, cy: float, r: float, rot_deg: float) -> Image.Image:
    rot = math.radians(rot_deg)
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        off = 0.45 * r
        draw.ellipse([cx - r + off * math.cos(rot), cy - r + off * math.sin(rot) - 0.1 * r, cx + r + off * math.cos(rot), cy + r + off * math.sin(rot) - 0.1 * r], fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, rot), fill=255)
    return mask


def _erode(m: np.ndarray, width: int) -> np.ndarray:
    """Binary erosion by a 4-neighbourhood, ``width`` times."""
    inner = m.copy()
    for _ in range(width):
        inner = inner & np.roll(inner, 1, 0) & np.roll(inner, -1, 0) & np.roll(inner, 1, 1) & np.roll(inner, -1, 1)
    return inner


def _fill_mask(fill: str, side: int, shape_mask: Image.Image, r: float) -> Image.Image:
    """Where the object's colour goes inside the shape."""
    m = np.asarray(shape_mask, dtype=np.uint8) > 127
    yy, xx = np.mgrid[0:side, 0:side]
    period = max(2, int(round(side / 8)))  # 8 stripes / checks across the image
    if fill == "solid":
        out = m
    elif fill == "striped":
        out = m & ((yy // (period // 2 or 1)) % 2 == 0)
    elif fill == "checkered":
        out = m & (((yy // period) + (xx // period)) % 2 == 0)
    elif fill == "hollow":
        out = m & ~_erode(m, max(2, int(round(0.28 * r))))
    elif fill == "vertical":
        out = m & ((xx // (period // 2 or 1)) % 2 == 0)
    elif fill == "diagonal":
        out = m & (((xx + yy) // (period // 2 or 1)) % 2 == 0)
    elif fill == "dotted":
        out = m & ((yy % period) < period // 2) & ((xx % period) < period // 2)
    elif fill == "grid":
        line = max(1, period // 4)
        out = m & (((yy % period) < line) | ((xx % period) < line))
    elif fill == "half":
        ys = np.flatnonzero(m.any(1))
        mid = (ys.min() + ys.max()) / 2 if ys.size else side / 2
        out = m & ((yy < mid) | ~_erode(m, max(2, int(round(0.2 * r)))))
    elif fill == "core":
        out = (m & ~_erode(m, max(2, int(round(0.12 * r))))) | _erode(m, max(3, int(round(0.45 * r))))
    else:
        raise ValueError(fill)
    return Image.fromarray((out * 255).astype(np.uint8))


def render(spec: ImageSpec, side: int = 64, *, concept_index: int | None = None) -> Image.Image:
    """Render one RGB image (supersampled, then downsampled for anti-aliasing). ``concept_index``:
    draw that concept of the 200-concept space instead of the spec's EEG class."""
    big = side * _SUPERSAMPLE
    shape, fill = concept(concept_index) if concept_index is not None else class_concept(spec.label)
    r = 0.5 * SIZES[spec.size] * big
    cx = big * (0.5 + POSITIONS[spec.position])
    cy = big * (0.5 + spec.dy)
    img = Image.new("RGB", (big, big), BACKGROUNDS[spec.background])
    mask = _shape_mask(shape, big, cx, cy, r, spec.rotation)
    paint = _fill_mask(fill, big, mask, r)
    img.paste(COLOURS[spec.colour], (0, 0, big, big), paint)
    if fill in ("striped", "checkered", "vertical", "diagonal", "dotted", "grid"):  # a thin outline keeps the silhouette visible
        outline = _fill_mask("hollow", big, mask, 0.25 * r)
        img.paste(COLOURS[spec.colour], (0, 0, big, big), outline)
    return img.resize((side, side), Image.LANCZOS)


def sample_specs(images_per_class: int, rng: np.random.Generator) -> list[ImageSpec]:
    """Image specs for every class, attributes drawn so each value appears about equally often."""
    specs: list[ImageSpec] = []
    used_ids: set[tuple[int, int]] = set()
    for label in range(len(CLASS_NAMES)):
        # Cyclic assignment from a random start, then shuffled: balanced within and across classes.
        draws = {
            k: rng.permutation((np.arange(images_per_class) + rng.integers(len(v))) % len(v)) for k, v in ATTRIBUTES.items()
        }
        for j in range(images_per_class):
            while True:  # image ids like the release's (n02951358_31190), unique within a class
                num = int(rng.integers(1000, 60000))
                if (label, num) not in used_ids:
                    used_ids.add((label, num))
                    break
            specs.append(
                ImageSpec(
                    name=f"{WNIDS[label]}_{num}",
                    label=label,
                    colour=ATTRIBUTES["colour"][draws["colour"][j]],
                    size=ATTRIBUTES["size"][draws["size"][j]],
                    position=ATTRIBUTES["position"][draws["position"][j]],
                    background=ATTRIBUTES["background"][draws["background"][j]],
                    rotation=float(rng.uniform(-12, 12)),
                    dy=float(rng.uniform(-0.06, 0.06)),
                )
            )
    return specs


ATTRIBUTES_FILE = "attributes.json"  # a synthetic world's image specs, by image name (real releases have none)


def load_attributes(root: str | Path, names: list[str]) -> dict[str, np.ndarray] | None:
    """The value index (``ATTRIBUTES`` order) of each attribute of each named image, from a synthetic
    world's ``attributes.json``; None where the dataset has no such file (a real release)."""
    path = Path(root) / ATTRIBUTES_FILE
    if not path.is_file():
        return None
    specs = json.loads(path.read_text())
    missing = [n for n in names if n not in specs]
    if missing:
        raise ValueError(f"{path}: no attributes for {len(missing)} image(s), e.g. {missing[0]}")
    return {a: np.array([values.index(specs[n][a]) for n in names]) for a, values in ATTRIBUTES.items()}
