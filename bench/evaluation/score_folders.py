"""`bench score GT_DIR GEN_DIR`: score reconstructions made anywhere with the harness's protocol.

Ground truth: one image per name (``<name>.<ext>``, any of .png .jpg .jpeg .JPEG .webp, in any
subfolder). Generated: ``<name>_<k>.png`` (or any of those extensions) for samples ``k = 0, 1, ...``
of the ground truth ``<name>``; a generated file without a ``_<k>`` suffix is sample 0.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.evaluation.scoring import ScoreSettings, ScoringInputs, score
from bench.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
_SAMPLE = re.compile(r"^(?P<name>.+)_(?P<k>\d+)$")


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise UserError(f"{folder}: no images ({', '.join(sorted(EXTENSIONS))})")
    return files


def _read(path: Path, problems: list[str]) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable ({type(exc).__name__})")
        return None


def match_folders(gt_dir: Path, gen_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(names, gt [N, H, W, 3], gen [N, S, h, w, 3])``; raises one error listing every problem."""
    gt_files = {p.stem: p for p in _images(gt_dir)}
    gen_groups: dict[str, dict[int, Path]] = defaultdict(dict)
    for p in _images(gen_dir):
        m = _SAMPLE.match(p.stem)
        name, k = (m["name"], int(m["k"])) if m and m["name"] in gt_files else (p.stem, 0)
        gen_groups[name][k] = p
    problems: list[str] = []
    missing_gt = sorted(set(gen_groups) - set(gt_files))
    missing_gen = sorted(set(gt_files) - set(gen_groups))
    problems += [f"{gen_groups[n][min(gen_groups[n])]}: no ground truth named {n}.*" for n in missing_gt]
    problems += [f"{gt_files[n]}: no generated image {n}_<k>.*" for n in missing_gen]
    names = sorted(set(gt_files) & set(gen_groups))
    counts = {len(gen_groups[n]) for n in names}
    if len(counts) > 1:
        problems.append(f"ground truths have different numbers of samples: {sorted(counts)}")
    for n in names:
        if sorted(gen_groups[n]) != list(range(len(gen_groups[n]))):
            problems.append(f"{n}: sample numbers {sorted(gen_groups[n])} are not 0..{len(gen_groups[n]) - 1}")
    if problems:
        raise UserError(f"{len(problems)} problem(s) matching {gt_dir} to {gen_dir}:\n  " + "\n  ".join(problems[:50]) + ("\n  ..." if len(problems) > 50 else ""))
    gt = [_read(gt_files[n], problems) for n in names]
    gen = [[_read(gen_groups[n][k], problems) for k in range(len(gen_groups[n]))] for n in names]
    if problems:
        raise UserError(f"{len(problems)} unreadable image(s):\n  " + "\n  ".join(problems[:50]))
    gt_shapes = {im.shape for im in gt}
    gen_shapes = {im.shape for row in gen for im in row}
    if len(gen_shapes) > 1:
        bad = [str(gen_groups[n][k]) for n, row in zip(names, gen) for k, im in enumerate(row) if im.shape != gen[0][0].shape]
        raise UserError(f"generated images differ in size ({sorted(gen_shapes)}), e.g. {', '.join(bad[:10])}")
    if len(gt_shapes) > 1:
        # Ground truths of various sizes (real photos) are resized to the first one's size.
        h, w = gt[0].shape[:2]
        gt = [np.asarray(Image.fromarray(im).resize((w, h), Image.BICUBIC)) if im.shape != gt[0].shape else im for im in gt]
    return names, np.stack(gt), np.stack([np.stack(row) for row in gen])


def score_matched(names: list[str], gt: np.ndarray, gen: np.ndarray, backbones, settings: ScoreSettings = ScoreSettings()) -> tuple[dict, dict]:
    """``(metrics, meta)``: metric name -> {value, ci_low, ci_high, settings...}; meta: counts, backbones."""
    metrics, skipped = score(ScoringInputs(settings, backbones, gt=gt, gen=gen))  # folders carry no labels or attributes
    meta = {"n_ground_truth": len(names), "samples_per_ground_truth": int(gen.shape[1]), "generated_resolution": list(gen.shape[2:4]),
            "backbones": dict(backbones.ids), "not_computable": skipped}  # fmt: skip
    for m in metrics.values():
        m.setdefault("n_ground_truth", meta["n_ground_truth"])
        m.setdefault("samples_per_ground_truth", meta["samples_per_ground_truth"])
    return metrics, meta


def score_folders(gt_dir: str | Path, gen_dir: str | Path, backbones, settings: ScoreSettings = ScoreSettings()) -> tuple[dict, dict]:
    return score_matched(*match_folders(Path(gt_dir), Path(gen_dir)), backbones, settings)
