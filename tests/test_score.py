"""`bench score`: folder matching, clear errors, and a full scoring pass with mini-shaped backbones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.score_folders import match_folders, score_folders
from bench.scoring import ScoreSettings
from brainvis.errors import UserError


def _write(folder, name, seed, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)


def _pair(tmp_path, n=6, samples=2):
    gt, gen = tmp_path / "gt", tmp_path / "gen"
    for i in range(n):
        _write(gt, f"n0000_{i}.JPEG", i, size=64)
        for k in range(samples):
            _write(gen, f"n0000_{i}_{k}.png", 100 + 10 * i + k)
    return gt, gen


def test_match_groups_samples(tmp_path):
    gt, gen = _pair(tmp_path)
    names, g, x = match_folders(gt, gen)
    assert names == [f"n0000_{i}" for i in range(6)] and g.shape == (6, 64, 64, 3) and x.shape == (6, 2, 32, 32, 3)


def test_problems_are_listed(tmp_path, capsys):
    gt, gen = _pair(tmp_path)
    (gen / "n0000_3_1.png").unlink()  # uneven samples
    (gt / "n0000_5.JPEG").unlink()  # generated without ground truth
    _write(gt, "n0000_9.JPEG", 9)  # ground truth without generated
    (gen / "n0000_1_0.png").write_bytes(b"not an image")
    with pytest.raises(UserError) as err:
        match_folders(gt, gen)
    msg = str(err.value)
    assert "n0000_9" in msg and "n0000_5" in msg and "different numbers of samples" in msg
    rc = main(["score", str(gt), str(gen)])
    assert rc == 2 and "Traceback" not in capsys.readouterr().err


def test_unreadable_and_size_mismatch(tmp_path):
    gt, gen = _pair(tmp_path)
    (gen / "n0000_1_0.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="unreadable"):
        match_folders(gt, gen)
    _write(gen, "n0000_1_0.png", 5, size=16)
    with pytest.raises(UserError, match="differ in size"):
        match_folders(gt, gen)


def test_full_scoring_pass_gives_every_metric(tmp_path):
    from bench.backbones.mini import untrained_mini_backbones

    gt, gen = _pair(tmp_path, n=8, samples=2)
    metrics, meta = score_folders(gt, gen, untrained_mini_backbones(), ScoreSettings(n_boot=50))
    assert set(metrics) == {"n_way_top_k", "ssim", "clip_similarity", "inception_score", "fid"}
    for m in metrics.values():
        assert {"value", "ci_low", "ci_high"} <= set(m)
    json.dumps(metrics)
    assert metrics["n_way_top_k"]["n_effective"] == 40 and metrics["n_way_top_k"]["clamped"] is True
    assert metrics["ssim"]["resolution"] == [32, 32]
    assert meta["samples_per_ground_truth"] == 2


def test_identical_folders_score_perfectly(tmp_path):
    """Generated == ground truth: SSIM 1, CS 1, FID ~ 0, N-way Top-K 1 (reference = own argmax)."""
    from bench.backbones.mini import untrained_mini_backbones

    gt, gen = tmp_path / "gt", tmp_path / "gen"
    for i in range(12):
        _write(gt, f"img_{i}.png", i)
        _write(gen, f"img_{i}_0.png", i)
    metrics, _ = score_folders(gt, gen, untrained_mini_backbones(), ScoreSettings(n_boot=50))
    assert metrics["ssim"]["value"] == pytest.approx(1.0)
    assert metrics["clip_similarity"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["n_way_top_k"]["value"] == pytest.approx(1.0)
    assert abs(metrics["fid"]["value"]) < 1e-3
