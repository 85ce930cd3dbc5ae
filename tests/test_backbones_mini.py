"""The shipped mini backbones: present, small, matched to the mini world, and as good as recorded.

The quality thresholds are the targets the mini backbones were built to: classifier >= 0.90,
CLIP image -> class-prompt retrieval >= 0.80 (40-way), classifier 200-way over the renderer's concepts, generator class fidelity >= 0.50 (chance 0.025)
and clearly above its shuffled-condition control. The shipped weights record their figures in the
manifest's ``quality`` (the README quotes them).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from bench.backbones import mini as M
from bench.world.spec import make_spec

MANIFEST = M.WEIGHTS_DIR / M.MANIFEST


def _manifest() -> dict:
    if not MANIFEST.is_file():
        pytest.fail(f"shipped mini weights missing: {MANIFEST}")
    return json.loads(MANIFEST.read_text())


def test_weights_are_shipped_small_and_match_their_digests():
    m = _manifest()
    total = 0
    for name, digest in m["digests"].items():
        path = M.WEIGHTS_DIR / f"{name}.safetensors"
        data = path.read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == digest, name
    assert total <= 20 * 2**20, f"{total / 2**20:.1f} MB"
    assert m["command"].startswith("bench backbones train")


def test_weights_match_the_default_mini_world():
    """Keyed by the stimuli (images, captions, splits): the default world and its null worlds share them."""
    assert _manifest()["stimulus_id"] == make_spec("mini").stimulus_id
    M.check_stimuli(make_spec("mini").stimulus_id)
    M.check_stimuli(make_spec("mini", effects={"induced_class": 0}).stimulus_id)  # a null world: same images
    with pytest.raises(Exception, match="retrain"):
        M.check_stimuli(make_spec("mini", seed=1).stimulus_id)


def test_recorded_quality_meets_targets():
    q = _manifest()["quality"]
    assert q["classifier_accuracy"] >= 0.90
    assert q["generator_class_fidelity"] >= QUALITY_FLOORS["generator_class_fidelity"]
    assert q["generator_class_fidelity"] > q["generator_class_fidelity_shuffled"] + 0.3
    assert q["clip_retrieval_top1"] >= QUALITY_FLOORS["clip_retrieval_top1"]


def test_mini_profile_generates_with_the_selected_guidance():
    """The guidance scale is chosen by `bench backbones train` on fresh renders (never the world's
    held-out images) and recorded in the manifest; the mini profile's stage 2 uses that scale."""
    import tomllib

    m = _manifest()
    sel = m["guidance_selection"]
    assert m["generator_guidance"] == sel["guidance"] and float(sel["guidance"]) in {float(g) for g in sel["sweep"]}
    assert sel["sweep"][str(float(sel["guidance"]))] == max(sel["sweep"].values())
    assert m["quality"]["settings"]["guidance"] == m["generator_guidance"]
    profile = tomllib.loads((M.WEIGHTS_DIR.parent / "profiles" / "mini.toml").read_text())
    assert profile["generation"]["stage2_guidance"] == m["generator_guidance"]


@pytest.mark.slow
def test_remeasured_quality_on_a_freshly_built_mini_world(mini_world):
    """The world build re-measures the shipped weights on its held-out images (no retraining)."""
    _, report = mini_world
    bb = report["backbones"]
    assert bb["status"] == "ok", bb
    assert bb["classifier_accuracy"] >= 0.90
    assert bb["clip_retrieval_top1"] >= QUALITY_FLOORS["clip_retrieval_top1"]
    assert bb["generator_class_fidelity"] >= QUALITY_FLOORS["generator_class_fidelity"]  # 80-image subset
    assert bb["generator_class_fidelity"] > bb["generator_class_fidelity_shuffled"] + 0.3
    assert bb["digests"] == _manifest()["digests"]  # measured on the shipped weights


QUALITY_FLOORS = {"clip_retrieval_top1": 0.80, "generator_class_fidelity": 0.50}


@pytest.mark.slow
def test_reference_rows_order_oracle_above_chance(mini_world):
    """On the mini world the oracle rows beat chance on every metric where that must hold."""
    import tomllib

    from bench.methods.base import TrialSpec
    from bench.experiment.trial import RunEnv, run_trial

    root, _ = mini_world
    profile = tomllib.loads((M.WEIGHTS_DIR.parent / "profiles" / "mini.toml").read_text())
    env = RunEnv(data_root=str(root), dataset_id=make_spec("mini").world_id, profile=profile, backbones="mini")
    res = {m: run_trial(TrialSpec(m, subject=1), env)["metrics"] for m in ("oracle_label", "oracle_caption", "chance")}
    for metric in ("top1", "n_way_top_k", "clip_similarity"):
        for oracle in ("oracle_label", "oracle_caption"):
            assert res[oracle][metric]["value"] > res["chance"][metric]["value"], (metric, oracle, res)
    assert res["oracle_label"]["n_way_top_k"]["value"] > 2 * res["chance"]["n_way_top_k"]["value"]


def test_backbones_train_is_reproducible(smoke_world, tmp_path):
    """`bench backbones train` end to end at a few steps per model (the QUICK config): it writes the
    shipped file set with a manifest recording world, command, config, digests, the selected guidance
    and quality; a retrain with the same seed (here serially rather than two stages at a time)
    gives the same weights, hence the same quality figures."""
    from bench.backbones.train_mini import QUICK, train_backbones

    root, _ = smoke_world
    world = json.loads((root / "world.json").read_text())
    world_id, stimulus_id = world["world_id"], world["stimulus_id"]
    a = train_backbones(root, tmp_path / "a", QUICK, workers=2)
    b = train_backbones(root, tmp_path / "b", QUICK, workers=1)
    assert a["world_id"] == world_id and a["stimulus_id"] == stimulus_id and a["command"].startswith("bench backbones train")
    assert set(a["digests"]) == {"clip", "vae", "unet", "classifier", "fidelity", "captioner"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([*(f"{n}.safetensors" for n in a["digests"]), "manifest.json"])
    assert a["digests"] == b["digests"]
    assert a["generator_guidance"] in QUICK.guidance_grid and a["guidance_selection"] == b["guidance_selection"]
    qa, qb = ({k: v for k, v in m["quality"].items() if k != "seconds"} for m in (a, b))
    assert qa == qb and 0.0 <= qa["generator_class_fidelity"] <= 1.0
    M.check_stimuli(stimulus_id, tmp_path / "a")
    bb = M.load_mini_backbones(tmp_path / "a", stimulus_id=stimulus_id)
    assert bb.text_encoder.encode_tokens(["a photo of a circle"]).shape == (1, 77, 64)
