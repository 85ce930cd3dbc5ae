"""The world card: what a synthetic world plants, how strongly, what its own linear probes find, and
the known answer each planted effect implies (``world_card.md`` / ``world_card.json`` in the world
folder; `bench world show`)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.world.effects import EFFECTS

CARD_MD = "world_card.md"
CARD_JSON = "world_card.json"
STORE_CARDS = "worlds"  # a store keeps the card of every world its records ran on: <store>/worlds/<world id>.json

# Which of the world's own probes shows each effect (probe key in world_report.json, description).
EFFECT_PROBES = {
    "evoked_class": ("class_accuracy", "logistic regression on 40 ms binned ERP means -> class"),
    "induced_class": ("induced_accuracy", "logistic regression on 13-27 Hz log band power per channel -> class"),
    "attributes": ("attribute_accuracy", "the ERP probe -> each attribute"),
    "shared": ("cross_subject_accuracy", "ERP ridge probe trained on the other subjects -> this subject's class"),
    "block_drift": ("drift_accuracy", "stimulus-blind probes (trial means of the raw file, 30-95 Hz band power) -> class"),
}


# The unlabelled-structure probe (masked pretraining's known answer; bench.world.probe): the ERP probe on raw
# binned means, and on their top principal components fitted on the unlabelled EEG of the subject / of all subjects.
UNLABELLED_PROBES = {
    "class_accuracy": "raw binned means (no pretext)",
    "unlabelled_own_accuracy": "top 128 components of the subject's own unlabelled EEG",
    "unlabelled_pooled_accuracy": "top 128 components of all subjects' unlabelled EEG",
}
PER_SUBJECT_PROBES = {
    "class_accuracy": "ERP class probe",
    "induced_accuracy": "band-power class probe",
    "cross_subject_accuracy": "cross-subject probe",
    "unlabelled_own_accuracy": "ERP probe on own unlabelled PCs",
    "unlabelled_pooled_accuracy": "ERP probe on pooled unlabelled PCs",
}


def card_data(manifest: dict, report: dict) -> dict:
    """The card as plain data (``world_card.json``)."""
    spec = manifest["spec"]
    probe = report.get("probe", {})
    effects = []
    for name, e in EFFECTS.items():
        key, how = EFFECT_PROBES[name]
        value = probe.get(key)
        effects.append({
            "effect": name, "strength": spec["effects"][name], "default": e.default, "on": spec["effects"][name] > 0,
            "plants": e.description, "found_by": e.found_by, "check": e.check, "expected": e.expected,
            "probe": how, "probe_value": value,
            "probe_chance": probe.get("attribute_chance") if name == "attributes" else probe.get("chance"),
        })  # fmt: skip
    per_subject = probe.get("per_subject", {})
    first = next(iter(per_subject.values()), {})
    return {
        "world_id": manifest["world_id"],
        "label": manifest.get("label"),
        "stimulus_id": manifest.get("stimulus_id"),
        "command": manifest.get("command"),
        "scale": spec["scale"],
        "seed": spec["seed"],
        "subjects": manifest.get("subjects"),
        "n_images": manifest.get("n_images"),
        "trials_per_subject": {"train": first.get("n_train"), "test": first.get("n_test")},
        "effects": effects,
        "unlabelled_structure": {k: probe[k] for k in UNLABELLED_PROBES if k in probe},
        "probes_per_subject": {s: {k: v[k] for k in PER_SUBJECT_PROBES if k in v} for s, v in per_subject.items()},
        "backbones": {k: v for k, v in report.get("backbones", {}).items() if k in ("status", "reason", "trained_for", "classifier_accuracy", "clip_retrieval_top1", "generator_class_fidelity", "generator_class_fidelity_shuffled")},
    }


def _fmt(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {x:.2f}" for k, x in v.items())
    return "–" if v is None else f"{v:.3f}"


def card_markdown(card: dict) -> str:
    unlabelled = card.get("unlabelled_structure") or {}  # cards written before the unlabelled-structure probe have none
    has_unlabelled = len(unlabelled) > 1
    lines = [
        f"# World card: {card['label'] or card['world_id']}",
        "",
        f"`{card['world_id']}` (stimuli `{card['stimulus_id']}`), made by `{card['command']}`. Synthetic EEG in the EEG-CVPR40 "
        f"format: {len(card['subjects'] or [])} subjects x {card['n_images']} images (each subject sees every image once); "
        f"per subject {card['trials_per_subject']['train']} training and {card['trials_per_subject']['test']} test trials (split by image). "
        "Numbers on a synthetic world are not comparable to published numbers.",
        "",
        "## Planted effects and their known answers",
        "",
        "Each effect has a strength (0 = off: its *null world*, identical otherwise, noise included). A correct method recovers a planted "
        "effect and shows nothing on its null world; the `known_answers` grid runs each check on both."
        + (" Pretraining's answer needs no planted effect (see the unlabelled structure below)." if has_unlabelled else ""),
        "",
        "| effect | strength (default) | plants | found by | check | expected | world's own probe | probe value | chance |",
        "|---|---|---|---|---|---|---|---:|---:|",
    ]
    for e in card["effects"]:
        state = f"{e['strength']:g}" + (" (off)" if not e["on"] else "") + f" ({e['default']:g})"
        lines.append(f"| {e['effect']} | {state} | {e['plants']} | {e['found_by']} | {e['check'] or '–'} | {e['expected']} | {e['probe']} | {_fmt(e['probe_value'])} | {_fmt(e['probe_chance'])} |")
    if has_unlabelled:
        lines += [
            "", "## Unlabelled structure: the known answer of pretraining", "",
            "What unsupervised learning on unlabelled EEG (training and validation trials, never a test image's) can give a linear reader: "
            "the ERP class probe on the top principal components of the unlabelled EEG against the probe on the raw binned means "
            "(test split, mean over subjects). A pretext that finds this structure should gain over no pretext; pooled minus own "
            "is what other subjects' unlabelled EEG adds to the subject's own.", "",
            "| reader | accuracy |", "|---|---:|",
        ]  # fmt: skip
        lines += [f"| {how} | {_fmt(unlabelled.get(k))} |" for k, how in UNLABELLED_PROBES.items() if k in unlabelled]
    if card["probes_per_subject"]:
        cols = [k for k in PER_SUBJECT_PROBES if any(k in v for v in card["probes_per_subject"].values())]
        lines += ["", "## Probes per subject (test split)", "", "| subject | " + " | ".join(PER_SUBJECT_PROBES[k] for k in cols) + " |", "|---:|" + "---:|" * len(cols)]
        for s, v in card["probes_per_subject"].items():
            lines.append(f"| {s} | " + " | ".join(_fmt(v.get(k)) for k in cols) + " |")
    bb = card.get("backbones") or {}
    if bb:
        lines += ["", "## Mini backbones on this world", ""]
        if bb.get("status") == "ok":
            lines.append(f"Trained for stimuli `{bb.get('trained_for')}`; on the held-out images: evaluation classifier {bb['classifier_accuracy']:.3f} (200-way), "
                         f"CLIP class-prompt retrieval {bb['clip_retrieval_top1']:.3f}, generator class fidelity {bb['generator_class_fidelity']:.3f} "
                         f"(shuffled captions {bb['generator_class_fidelity_shuffled']:.3f}).")  # fmt: skip
        else:
            lines.append(f"{bb.get('status')}: {bb.get('reason', '')}")
    return "\n".join(lines) + "\n"


def write_card(world: str | Path) -> Path:
    """Write ``world_card.md`` and ``world_card.json`` from the world's manifest and report."""
    world = Path(world)
    manifest = json.loads((world / "world.json").read_text())
    report = json.loads((world / "world_report.json").read_text())
    card = card_data(manifest, report)
    (world / CARD_JSON).write_text(json.dumps(card, indent=1))
    (world / CARD_MD).write_text(card_markdown(card))
    return world / CARD_MD


def keep_card(store_root: str | Path, world: str | Path, world_id: str) -> Path | None:
    """Copy a world's card into the store (so its leaderboards can show it without the world folder)."""
    src = Path(world) / CARD_JSON
    if not src.is_file():
        return None
    dst = Path(store_root) / STORE_CARDS / f"{world_id}.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    text = src.read_text()
    if not dst.is_file() or dst.read_text() != text:
        dst.write_text(text)
    return dst


def stored_cards(store_root: str | Path, world_ids: list[str]) -> dict[str, dict]:
    """The stored cards of those worlds that have one (world id -> card)."""
    out = {}
    for wid in world_ids:
        p = Path(store_root) / STORE_CARDS / f"{wid}.json"
        if p.is_file():
            out[wid] = json.loads(p.read_text())
    return out
