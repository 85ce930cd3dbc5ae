"""The 40 EEG-CVPR40 classes in label order: WordNet id and clean prompt name.

BrainVis' prompt list has typos ("lectric guitar", "eflex camera"); these are the clean names.
"""

from __future__ import annotations

CLASSES: tuple[tuple[str, str], ...] = (
    ("n02389026", "sorrel horse"),
    ("n03888257", "parachute"),
    ("n03584829", "smoothing iron"),
    ("n02607072", "anemone fish"),
    ("n03297495", "espresso maker"),
    ("n03063599", "coffee mug"),
    ("n03792782", "mountain bike"),
    ("n04086273", "revolver"),
    ("n02510455", "panda"),
    ("n11939491", "daisy"),
    ("n02951358", "canoe"),
    ("n02281787", "lycaenid butterfly"),
    ("n02106662", "german shepherd dog"),
    ("n04120489", "running shoe"),
    ("n03590841", "jack-o'-lantern"),
    ("n02992529", "cellular telephone"),
    ("n03445777", "golf ball"),
    ("n03180011", "desktop computer"),
    ("n02906734", "broom"),
    ("n07873807", "pizza"),
    ("n03773504", "missile"),
    ("n02492035", "capuchin monkey"),
    ("n03982430", "pool table"),
    ("n03709823", "mailbag"),
    ("n03100240", "convertible"),
    ("n03376595", "folding chair"),
    ("n03877472", "pajama"),
    ("n03775071", "mitten"),
    ("n03272010", "electric guitar"),
    ("n04069434", "reflex camera"),
    ("n03452741", "grand piano"),
    ("n03792972", "mountain tent"),
    ("n07753592", "banana"),
    ("n13054560", "bolete"),
    ("n03197337", "digital watch"),
    ("n02504458", "African elephant"),
    ("n02690373", "airliner"),
    ("n03272562", "electric locomotive"),
    ("n04044716", "radio telescope"),
    ("n02124075", "Egyptian cat"),
)

WNIDS: tuple[str, ...] = tuple(w for w, _ in CLASSES)
CLASS_NAMES: tuple[str, ...] = tuple(n for _, n in CLASSES)
NAME_BY_WNID: dict[str, str] = dict(CLASSES)
N_CLASSES = len(CLASSES)


def class_prompt(label: int) -> str:
    """The text prompt for a class index, as used for CLIP targets and stage-2 generation."""
    return f"a photo of a {CLASS_NAMES[label]}"
