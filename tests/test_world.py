"""The synthetic world: determinism, identity, images/captions, known-answer probes, safe writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.data.eegcvpr40 import image_path, load_release
from bench.errors import UserError
from bench.cli.app import main
from bench.world import build as build_mod
from bench.world.build import build_world
from bench.world.images import ATTRIBUTES, class_concept
from bench.world.spec import make_spec


def test_world_id_derives_from_spec():
    a, b = make_spec("smoke", seed=0), make_spec("smoke", seed=0)
    assert a.world_id == b.world_id and a.world_id.startswith("cvpr40-synth-smoke-")
    ids = {make_spec("smoke", seed=1).world_id, make_spec("smoke", block_drift=True).world_id, make_spec("mini").world_id, a.world_id}
    assert len(ids) == 4
    with pytest.raises(UserError, match="unknown world scale"):
        make_spec("huge")
    with pytest.raises(UserError, match="seed"):
        make_spec("smoke", seed=-1)


def test_isolated_build_gives_the_same_world_and_relays_errors(smoke_world, smoke_effects, tmp_path):
    """`bench run` builds its world in a child process (its memory is freed before trials start)."""
    from bench.world.build import build_world_isolated

    root, report = smoke_world
    said: list[str] = []
    out = tmp_path / "iso"
    got = build_world_isolated(make_spec("smoke", seed=0, effects=smoke_effects), out, progress=said.append)
    assert got["probe"] == report["probe"] and got["world_id"] == report["world_id"]
    assert json.loads((out / "world.json").read_text())["eeg_digest_sha256"] == json.loads((root / "world.json").read_text())["eeg_digest_sha256"]
    assert any("rendered" in m for m in said)
    assert build_world_isolated(make_spec("smoke", seed=0, effects=smoke_effects), out) == got  # reused in-process
    with pytest.raises(UserError, match="does not hold world"):
        build_world_isolated(make_spec("smoke", seed=1, effects=smoke_effects), out)


def test_same_command_same_world_serial_or_parallel(smoke_world, smoke_effects, tmp_path):
    root, _ = smoke_world
    again = tmp_path / "again"
    build_world(make_spec("smoke", seed=0, effects=smoke_effects), again, workers=1)  # serial build, same seed
    m1 = json.loads((root / "world.json").read_text())
    m2 = json.loads((again / "world.json").read_text())
    assert m1["world_id"] == m2["world_id"]
    assert m1["eeg_digest_sha256"] == m2["eeg_digest_sha256"]
    assert (root / "captions.json").read_text() == (again / "captions.json").read_text()
    assert json.loads((root / "world_report.json").read_text())["probe"] == json.loads((again / "world_report.json").read_text())["probe"]


def test_images_captions_and_concepts(smoke_world):
    root, _ = smoke_world
    release = load_release(root / "eeg_5_95_std.pth")
    captions = json.loads((root / "captions.json").read_text())
    attrs = json.loads((root / "attributes.json").read_text())
    assert set(captions) == set(release.images) == set(attrs)
    for name in release.images[:: len(release.images) // 20]:
        img = Image.open(image_path(root / "images", name))
        assert img.format == "JPEG" and img.size == (64, 64) and img.mode == "RGB"
        a = attrs[name]
        for key in ATTRIBUTES:
            assert a[key] in captions[name]  # the caption states every attribute
    # 40 distinct concepts; within a class, attributes vary.
    assert len({class_concept(c) for c in range(40)}) == 40
    for key in ATTRIBUTES:
        per_class = {}
        for a in attrs.values():
            per_class.setdefault(a["label"], set()).add(a[key])
        assert np.mean([len(v) > 1 for v in per_class.values()]) > 0.9


def test_smoke_probe_report(smoke_world):
    root, report = smoke_world
    saved = json.loads((root / "world_report.json").read_text())
    assert saved["probe"] == report["probe"]
    probe = report["probe"]
    assert probe["chance"] == pytest.approx(1 / 40)
    assert set(probe) >= {"class_accuracy", "induced_accuracy", "cross_subject_accuracy", "attribute_accuracy", "drift_accuracy", "chance", "per_subject",
                          "unlabelled_own_accuracy", "unlabelled_pooled_accuracy"}  # fmt: skip
    assert set(probe["per_subject"]) == {"1", "2", "3"}
    assert probe["class_accuracy"] > 3 * probe["chance"]  # even with 4 training trials per class


def test_block_drift_is_readable_only_with_block_design(smoke_world, smoke_world_drift):
    _, plain = smoke_world
    _, drift = smoke_world_drift
    chance = plain["probe"]["chance"]
    # Stimulus-blind probes (trial means of the raw file; 30-95 Hz band power of the 5-95 file).
    assert drift["probe"]["drift_probes"]["trial_means_raw"] > 0.5
    assert drift["probe"]["drift_probes"]["band_power_30_95"] > 0.5  # survives the 5 Hz high-pass
    assert plain["probe"]["drift_accuracy"] < 4 * chance
    for subject in plain["probe"]["per_subject"].values():
        assert subject["drift_accuracy"] < 0.15


@pytest.mark.slow
def test_mini_world_known_answers(mini_world):
    out, report = mini_world
    probe = report["probe"]
    chance = probe["chance"]
    per = probe["per_subject"]
    assert set(per) == {str(s) for s in range(1, 7)}
    assert all(v["n_test"] >= 160 and v["n_train"] >= 800 for v in per.values())
    assert probe["induced_accuracy"] > 5 * chance and probe["cross_subject_accuracy"] > 3 * chance
    assert probe["class_accuracy"] > 5 * chance
    assert all(v["class_accuracy"] > 3 * chance for v in per.values())
    above = [k for k, v in probe["attribute_accuracy"].items() if v > probe["attribute_chance"][k] + 0.1]
    assert above, probe["attribute_accuracy"]
    accs = [v["class_accuracy"] for v in per.values()]
    assert max(accs) - min(accs) > 0.05  # subjects differ (0.125 to 0.22 at attributes 3)
    assert probe["drift_accuracy"] < 3 * chance
    assert report["timings_s"]["total"] > 0


def test_refuses_to_overwrite_and_never_leaves_partial_output(tmp_path, monkeypatch):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="--force"):
        build_world(make_spec("smoke"), occupied)
    assert (occupied / "precious.txt").read_text() == "keep me"

    def boom(*a, **k):
        raise RuntimeError("simulated crash during probing")

    monkeypatch.setattr(build_mod, "probe_world", boom)
    target = tmp_path / "target"
    with pytest.raises(RuntimeError):
        build_world(make_spec("smoke"), target, workers=1)
    assert not target.exists()
    assert not any(p.name.startswith(".target") for p in tmp_path.iterdir())


def test_cli_world_build_then_data_check(smoke_world, smoke_effects, tmp_path, capsys):
    # Reusing an existing world is instant and leaves it untouched.
    root, _ = smoke_world
    before = (root / "world.json").stat().st_mtime_ns
    effects = [f"--effect={k}={v}" for k, v in smoke_effects.items()]
    assert main(["world", "build", "--scale", "smoke", *effects, "--out", str(root)]) == 0
    assert (root / "world.json").stat().st_mtime_ns == before
    capsys.readouterr()
    assert main(["data", "check", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["world"]["world_id"] == make_spec("smoke", effects=smoke_effects).world_id
    assert summary["eeg_files"] == {"eeg_5_95_std.pth": 720, "eeg_signals_raw_with_mean_std.pth": 720}
    assert summary["subjects"]["1"]["all"]["test"] == 40 and summary["captions"] == 240
    assert main(["world", "build", "--scale", "nope", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------
# Planted effects: named, with strengths, off switches and known answers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_nulls(tmp_path_factory, smoke_effects):
    """The smoke world's null worlds of the evoked, induced and shared effects."""
    out = {}
    for effect in ("evoked_class", "induced_class", "shared"):
        folder = tmp_path_factory.mktemp("nulls") / effect
        out[effect] = (folder, build_world(make_spec("smoke", effects={**smoke_effects, effect: 0}), folder, check_backbones=False))
    return out


def test_effects_have_strengths_off_switches_and_distinct_ids():
    from bench.world.effects import EFFECTS
    from bench.world.spec import null_spec, parse_effects

    base = make_spec("mini")
    assert dict(base.effects) == {k: e.default for k, e in EFFECTS.items()}
    nulls = {k: null_spec(base, k) for k in EFFECTS if EFFECTS[k].default > 0}
    assert len({s.world_id for s in nulls.values()} | {base.world_id}) == len(nulls) + 1
    assert {s.stimulus_id for s in nulls.values()} == {base.stimulus_id}  # same images and splits: one set of backbones
    assert make_spec("mini", effects={"block_drift": True}).world_id == make_spec("mini", block_drift=True).world_id
    assert nulls["induced_class"].label() == "mini world, induced_class off"
    for bad, match in (({"nope": 0}, "unknown effect"), ({"shared": 2}, "share in"), ({"evoked_class": -1}, ">= 0"), ({"attributes": "x"}, ">= 0")):
        with pytest.raises(UserError, match=match):
            parse_effects(bad)


def test_null_worlds_share_stimuli_and_noise(smoke_world, smoke_nulls):
    """A null world differs from its world only in the switched-off term: same images, captions,
    splits, and the same background noise (so the EEG difference is exactly that term)."""
    import torch

    root, _ = smoke_world
    null_root, _ = smoke_nulls["induced_class"]
    for name in ("captions.json", "attributes.json", "block_splits_by_image_all.pth"):
        assert (root / name).read_bytes() == (null_root / name).read_bytes(), name
    a = load_release(root / "eeg_signals_raw_with_mean_std.pth", check_finite=False)
    b = load_release(null_root / "eeg_signals_raw_with_mean_std.pth", check_finite=False)
    diff = torch.stack([a.eeg[i][:, 100:400] - b.eeg[i][:, 100:400] for i in range(20)])
    assert float(diff.abs().max()) > 0  # the induced bursts differ ...
    spec = torch.fft.rfft(diff, dim=-1).abs().pow(2).mean((0, 1))
    f = torch.fft.rfftfreq(300, 1e-3)
    beta = spec[(f >= 12) & (f <= 28)].sum() / spec.sum()
    assert beta > 0.9  # ... and only them: the difference lives in the 13-27 Hz burst bands


def test_each_probe_sees_its_effect_and_not_its_null(smoke_world, smoke_nulls):
    _, planted = smoke_world
    chance = planted["probe"]["chance"]
    p = planted["probe"]
    assert p["class_accuracy"] > 3 * chance and p["induced_accuracy"] > 5 * chance and p["cross_subject_accuracy"] > 1.5 * chance
    ev, ind, sh = (smoke_nulls[k][1]["probe"] for k in ("evoked_class", "induced_class", "shared"))
    assert ev["class_accuracy"] < 2 * chance and ev["induced_accuracy"] > 5 * chance  # only the ERP code is gone
    assert ind["induced_accuracy"] < 2.5 * chance and ind["class_accuracy"] > 3 * chance
    assert sh["cross_subject_accuracy"] < 2 * chance and sh["class_accuracy"] > 2 * chance


def test_world_card_lists_effects_probes_and_known_answers(smoke_world, capsys):
    from bench.world.effects import EFFECTS

    root, report = smoke_world
    card = json.loads((root / "world_card.json").read_text())
    assert [e["effect"] for e in card["effects"]] == list(EFFECTS)
    by = {e["effect"]: e for e in card["effects"]}
    assert by["induced_class"]["probe_value"] == report["probe"]["induced_accuracy"]
    assert by["block_drift"]["on"] is False and by["evoked_class"]["strength"] == 1.0
    md = (root / "world_card.md").read_text()
    assert "Planted effects and their known answers" in md and "removing the frequency branch lowers top-1" in md
    assert card["unlabelled_structure"] == {k: report["probe"][k] for k in ("class_accuracy", "unlabelled_own_accuracy", "unlabelled_pooled_accuracy")}
    assert "Unlabelled structure: the known answer of pretraining" in md and "ERP probe on own unlabelled PCs" in md
    assert main(["world", "show", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["world_id"] == report["world_id"]
    assert main(["world", "effects"]) == 0
    assert main(["world", "show", str(root.parent / "nope")]) == 2


def test_unlabelled_structure_probe_reads_a_low_rank_class_code():
    """A class code in 4 of 1,000 directions, which carry most of the variance: the probe on the top
    principal components of unlabelled draws beats the raw reader with few labels, and matches the
    same reader on a projection computed independently (numpy SVD of the centred unlabelled set);
    unlabelled draws of another subspace give nothing."""
    from bench.world.probe import probe_accuracy, unlabelled_bases, unlabelled_structure_accuracy

    rng = np.random.default_rng(0)
    n_feat, rank, n_classes = 1000, 4, 4
    basis = np.linalg.qr(rng.normal(size=(n_feat, rank)))[0]
    centres = rng.normal(size=(n_classes, rank)) * 2.0

    def draw(n: int, b: np.ndarray = basis) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, n_classes, n)
        return (centres[y] + 0.3 * rng.normal(size=(n, rank))) @ b.T * 4.0 + 3.0 * rng.normal(size=(n, n_feat)), y

    (x_tr, y_tr), (x_te, y_te), (own, _) = draw(24), draw(400), draw(2000)
    other, _ = draw(2000, np.linalg.qr(rng.normal(size=(n_feat, rank)))[0])
    acc = unlabelled_structure_accuracy(unlabelled_bases({"own": own, "other": other}, k=rank), x_tr, y_tr, x_te, y_te)
    raw = probe_accuracy(x_tr, y_tr, x_te, y_te)
    mu = own.mean(0)
    v = np.linalg.svd(own - mu, full_matrices=False)[2][:rank].T
    assert acc["own"] == pytest.approx(probe_accuracy((x_tr - mu) @ v, y_tr, (x_te - mu) @ v, y_te), abs=0.005)
    assert acc["own"] > raw + 0.15 and acc["own"] > 0.5  # measured: 0.60 against 0.35 (chance 0.25)
    assert acc["other"] < 0.35


def test_a_disk_too_small_for_the_world_is_one_clear_message(tmp_path, monkeypatch):
    """A full disk used to surface as torch's "unexpected pos" from the EEG file's writer; the build now
    checks the free space first and refuses with what it needs, before writing anything."""
    import shutil
    from collections import namedtuple

    from bench.world import build as B

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 10**8, 10**8))  # 0.1 GB free
    spec = make_spec("smoke")
    assert B.disk_needed(spec) > 10**8
    with pytest.raises(UserError, match=r"needs about .* GB free .* 0\.1 GB are free"):
        B.build_world(spec, tmp_path / "w")
    assert list(tmp_path.iterdir()) == []  # nothing written
