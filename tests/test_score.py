"""`bench score`: folder matching, clear errors, and a full scoring pass with mini-shaped backbones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.cli.app import main
from bench.evaluation.score_folders import match_folders, score_folders
from bench.evaluation.scoring import ScoreSettings
from bench.errors import UserError


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
    assert set(metrics) == {"n_way_top_k", "ssim", "clip_similarity", "inception_score", "fid", "kid"}
    for m in metrics.values():
        assert {"value", "ci_low", "ci_high"} <= set(m)
    json.dumps(metrics)
    assert metrics["n_way_top_k"]["n_effective"] == 50 and metrics["n_way_top_k"]["clamped"] is False  # 200-concept judge: no clamping
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


def test_attribute_fidelity_and_label_n_way_match_a_direct_computation():
    """Scoring adds attribute fidelity (the reader's argmax per attribute against the truth, averaged
    over attributes and samples) and the label-based N-way (true class mapped to the 200 concepts)."""
    from bench.backbones.mini import untrained_mini_backbones
    from bench.metrics import n_way_top_k
    from bench.evaluation.scoring import ScoringInputs, score
    from bench.world.images import ATTRIBUTES, concept_of_label
    from bench.data.classes import WNIDS

    bb = untrained_mini_backbones()
    rng = np.random.default_rng(0)
    n, S = 7, 2
    gt = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    gen = rng.integers(0, 256, (n, S, 32, 32, 3), dtype=np.uint8)
    true = {a: rng.integers(0, len(v), n) for a, v in ATTRIBUTES.items()}
    labels = rng.integers(0, 40, n)
    s = ScoreSettings(fidelity=False)
    m, _ = score(ScoringInputs(s, bb, labels=labels, wnids=list(WNIDS), gt=gt, gen=gen, attributes=true))
    probs = bb.classifier.attribute_probs(gen.reshape(n * S, 32, 32, 3))
    hits = np.mean([(probs[a].argmax(1).numpy().reshape(n, S) == true[a][:, None]).mean(1) for a in ATTRIBUTES], axis=0)
    af = m["attribute_fidelity"]
    assert af["value"] == pytest.approx(hits.mean()) and af["per_trial"] == pytest.approx(hits, abs=1e-6)
    assert af["chance"] == pytest.approx(np.mean([1 / len(v) for v in ATTRIBUTES.values()]))
    assert af["ci_method"] == "wilson" and af["ci_low"] < af["value"] < af["ci_high"] and af["outcomes_per_trial"] == 4 * S
    ref = np.repeat([concept_of_label(int(y)) for y in labels], S)
    direct = n_way_top_k(bb.classifier.probs(gen.reshape(n * S, 32, 32, 3)).numpy(), ref, n=50, k=1, trials=50, seed=0)
    assert m["n_way_top_k_label"]["value"] == pytest.approx(direct["value"]) and m["n_way_top_k_label"]["n_effective"] == 50
    assert "attribute_fidelity" not in score(ScoringInputs(s, bb, gt=gt, gen=gen))[0]  # a real release: no attributes, no metric
