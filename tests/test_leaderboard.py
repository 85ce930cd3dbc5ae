"""Leaderboards from records: byte-identical regeneration, CIs, bold best, LaTeX/CSV, plots, compare."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cli.app import main
from bench.results.compare import compare_methods
from bench.results.leaderboard import render_latex, write_leaderboard


def _metric(per_trial, **extra):
    v = np.asarray(per_trial, dtype=float)
    return {"value": float(v.mean()), "ci_low": float(v.mean() - 0.05), "ci_high": float(v.mean() + 0.05), "per_trial": [float(x) for x in v], **extra}


def _records(tmp_path):
    folder = tmp_path / "store" / "records"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    k = 0
    for method, strength in (("brainvis", 0.5), ("lstm", 0.3), ("chance", 0.025)):
        for subject in (1, 4):
            for fraction in ((0.1, 1.0) if method != "chance" else (1.0,)):
                p = strength * fraction ** 0.3
                rec = {
                    "key": f"k{k:03d}", "status": "ok", "method": method, "variant": "", "options": {}, "subject": subject,
                    "fraction": fraction, "w": 0.5, "seed": 0, "profile": "mini", "grid": "data_scaling",
                    "config": {"dataset_id": "cvpr40-synth-mini-abc", "backbone_ids": {"classifier": "mini:classifier@x"}},
                    "metrics": {
                        "top1": _metric(rng.random(40) < p),
                        "n_way_top_k": _metric(rng.random(40) < p, n=50, n_effective=40, k=1, trials=50, seed=0, clamped=True, chance=0.025),
                        "ssim": _metric(rng.random(40) * 0.2 + 0.3, resolution=[32, 32]),
                        "inception_score": {"value": 3 + p, "ci_low": 2.5, "ci_high": 3.5, "extractor": "brainvis-mini-fidelity", "splits": 1},
                        "fid": {"value": 100 - 50 * p, "ci_low": None, "ci_high": None},
                    },
                    "git_commit": "abcdef1234567890", "finished": "2026-11-29T05:00:00+00:00", "images_dir": None,
                }  # fmt: skip
                (folder / f"{rec['key']}.json").write_text(json.dumps(rec))
                k += 1
    (folder / "k999.json").write_text(json.dumps({"key": "k999", "status": "failed", "method": "lstm", "subject": 1, "fraction": 0.5, "w": 0.5, "seed": 0, "error": {"type": "X", "message": "boom"}}))
    return tmp_path / "store"


def test_regeneration_is_byte_identical_and_complete(tmp_path):
    store = _records(tmp_path)
    a = write_leaderboard(store, "data_scaling", tmp_path / "a")
    b = write_leaderboard(store, "data_scaling", tmp_path / "b")
    ta, tb = a[0].read_text(), b[0].read_text()
    assert ta == tb
    assert "Synthetic data" in ta and "not comparable to published numbers" in ta
    assert "## Average over subjects" in ta and "## Subject 1" in ta and "## Subject 4" in ta
    assert "top-1 ↑" in ta and "FID ↓" in ta and "*chance (analytic)*" in ta
    assert "## As published" in ta and "0.4927" in ta
    assert "N=50 (effective 40, clamped" in ta and "Failed trials (not in the tables): k999" in ta
    assert "k000" in ta  # traceable to records
    assert (tmp_path / "a" / "data_scaling_fraction.png").stat().st_size > 1000
    # the best EEG method is bold in the top-1 column; the chance reference row never is
    brainvis_line = next(l for l in ta.splitlines() if l.startswith("| brainvis | 1 |"))
    assert brainvis_line.count("**") >= 2
    assert "**" not in next(l for l in ta.splitlines() if l.startswith("| *chance*"))


def test_latex_and_csv(tmp_path):
    store = _records(tmp_path)
    tex = write_leaderboard(store, "data_scaling", tmp_path / "t", "latex")[0].read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf" in tex and tex.count("\\\\") >= 5
    csv = write_leaderboard(store, "data_scaling", tmp_path / "c", "csv")[0].read_text().splitlines()
    assert csv[0].startswith("key,method,variant,subject,fraction,w,seed,top1,top1_ci_low")
    assert len(csv) == 1 + 10


def test_cli_leaderboard_and_compare(tmp_path, capsys):
    store = _records(tmp_path)
    assert main(["leaderboard", "--store", str(store), "--grid", "data_scaling", "--out", str(tmp_path / "o")]) == 0
    assert main(["compare", "brainvis", "lstm", "--store", str(store), "--markdown", str(tmp_path / "cmp.md")]) == 0
    assert "A - B" in (tmp_path / "cmp.md").read_text()
    assert main(["compare", "brainvis", "nope", "--store", str(store)]) == 2
    assert main(["leaderboard", "--store", str(tmp_path / "empty"), "--grid", "x"]) == 2


def test_compare_pairs_the_same_trials(tmp_path):
    store = _records(tmp_path)
    res = compare_methods(store, "brainvis", "lstm", subject=4)
    assert res["pairs"] == [["cvpr40-synth-mini-abc", 4, 0.1, 0], ["cvpr40-synth-mini-abc", 4, 1.0, 0]]
    top1 = res["metrics"]["top1"]
    assert top1["n"] == 80 and top1["diff"] == pytest.approx(top1["mean_a"] - top1["mean_b"])
    assert top1["ci_low"] <= top1["diff"] <= top1["ci_high"]
    only = compare_methods(store, "brainvis", "lstm", subject=4, fraction=0.1)
    assert only["pairs"] == [["cvpr40-synth-mini-abc", 4, 0.1, 0]] and only["metrics"]["top1"]["n"] == 40


def test_compare_never_pairs_trials_of_two_datasets(tmp_path):
    """Same subject, fraction and seed on another world means other test trials: no pair across datasets."""
    store = _records(tmp_path)
    stored = [json.loads(p.read_text()) for p in sorted((store / "records").glob("k0*.json"))]
    full = {r["method"]: r for r in stored if r.get("fraction") == 1.0 and r.get("subject") == 1}
    for key, method, dataset in (("k700", "brainvis", "cvpr40-synth-mini-drift"), ("k701", "chance", "cvpr40-synth-mini-drift"), ("k702", "lstm", "cvpr40-synth-mini-abc")):
        rec = full[method] | {"key": key, "subject": 2, "config": full[method]["config"] | {"dataset_id": dataset}}
        (store / "records" / f"{key}.json").write_text(json.dumps(rec))
    with pytest.raises(Exception, match="share no"):  # subject 2: brainvis on the drift world, lstm on the other
        compare_methods(store, "brainvis", "lstm", subject=2)
    assert compare_methods(store, "brainvis", "chance", subject=2)["pairs"] == [["cvpr40-synth-mini-drift", 2, 1.0, 0]]
    with pytest.raises(Exception, match="no records of method 'brainvis'"):
        compare_methods(store, "brainvis", "chance", subject=2, dataset="cvpr40-synth-mini-abc")


def test_compare_names_a_grid_variant_as_the_leaderboards_do(tmp_path):
    store = _records(tmp_path)
    stored = [json.loads(p.read_text()) for p in sorted((store / "records").glob("k0*.json"))]
    base = [r for r in stored if r["method"] == "brainvis" and r["subject"] == 4]
    for i, r in enumerate(base):  # an ablation variant of the same trials, every trial answered wrong
        top1 = _metric(np.zeros(40))
        (store / "records" / f"k8{i:02d}.json").write_text(json.dumps(r | {"key": f"k8{i:02d}", "variant": "no_freq", "metrics": {"top1": top1}}))
    res = compare_methods(store, "brainvis", "brainvis [no_freq]", subject=4, metrics=["top1"])
    assert res["pairs"] == [["cvpr40-synth-mini-abc", 4, 0.1, 0], ["cvpr40-synth-mini-abc", 4, 1.0, 0]]
    expected = np.mean(np.concatenate([r["metrics"]["top1"]["per_trial"] for r in base]))
    assert res["metrics"]["top1"]["mean_b"] == 0.0 and res["metrics"]["top1"]["diff"] == pytest.approx(expected)
    assert compare_methods(store, "brainvis[no_freq]", "lstm", subject=4, metrics=["top1"])["metrics"]["top1"]["mean_a"] == 0.0
    with pytest.raises(Exception, match="with variant 'no_time'.*brainvis\\[no_freq\\]"):
        compare_methods(store, "brainvis[no_time]", "lstm", subject=4)
    with pytest.raises(Exception, match="METHOD\\[VARIANT\\]"):
        compare_methods(store, "brainvis[no_freq", "lstm")


def test_compare_uses_one_w_per_side_never_a_mix(tmp_path):
    """A side's records at several w: the w closest to 0.5 (pairs without it are dropped, not filled in
    from another w), or the one named with @W."""
    store = _records(tmp_path)
    stored = [json.loads(p.read_text()) for p in sorted((store / "records").glob("k0*.json"))]
    base = [r for r in stored if r["method"] == "brainvis" and r["subject"] == 4]
    for i, r in enumerate(base):  # w = 0 at both fractions, every trial wrong; w = 0.5 only at fraction 1
        (store / "records" / f"k8{i:02d}.json").write_text(json.dumps(r | {"key": f"k8{i:02d}", "variant": "full", "w": 0.0, "metrics": {"top1": _metric(np.zeros(40))}}))
        if r["fraction"] == 1.0:
            (store / "records" / f"k9{i:02d}.json").write_text(json.dumps(r | {"key": f"k9{i:02d}", "variant": "full"}))
    res = compare_methods(store, "brainvis[full]", "lstm", subject=4, metrics=["top1"])
    assert res["w_a"] == 0.5 and res["pairs"] == [["cvpr40-synth-mini-abc", 4, 1.0, 0]]
    one = next(r for r in base if r["fraction"] == 1.0)
    assert res["metrics"]["top1"]["mean_a"] == pytest.approx(np.mean(one["metrics"]["top1"]["per_trial"]))
    zero = compare_methods(store, "brainvis[full]@0", "brainvis[full] @ 0.5", subject=4, metrics=["top1"])
    assert (zero["w_a"], zero["w_b"]) == (0.0, 0.5) and zero["metrics"]["top1"]["mean_a"] == 0.0 and len(zero["pairs"]) == 1
    with pytest.raises(Exception, match="no records at w = 0.3"):
        compare_methods(store, "brainvis[full]@0.3", "lstm", subject=4)
    with pytest.raises(Exception, match="METHOD"):
        compare_methods(store, "brainvis[full]@x", "lstm", subject=4)


def test_committed_leaderboards_regenerate_byte_identically(tmp_path):
    """`bench leaderboard --store <folder>/records` reproduces every committed markdown file (and world
    card) of leaderboards/ (the default world) and leaderboards/v1/ (the previous world's grids)."""
    from pathlib import Path

    from bench.metrics.intervals import interval_of
    from bench.results.leaderboard import _present_metrics, build_table, load_records, records_of_grid

    root = Path(__file__).resolve().parent.parent / "leaderboards"
    for folder in (root, root / "v1"):
        store = folder / "records"
        grids = sorted({r["grid"] for r in load_records(store)})
        assert "data_scaling" in grids, folder
        out_dir = tmp_path / folder.name
        for grid in grids:
            written = write_leaderboard(store, grid, out_dir, figures=False)
            for path in written:
                assert path.read_text() == (folder / path.relative_to(out_dir)).read_text(), (folder, grid, path.name)
            recs = [r for r in records_of_grid(load_records(store), grid) if r.get("status") == "ok"]
            for key, cells in build_table(recs, _present_metrics(recs))[1].items():  # every shown interval contains its value
                for m, c in cells.items():
                    if c is None or c["lo"] is None:
                        continue
                    assert c["lo"] - 1e-12 <= c["value"] <= c["hi"] + 1e-12, (folder, grid, key, m, c)
                    if interval_of(m) == "wilson":  # and no rate interval has zero width
                        assert c["hi"] > c["lo"], (folder, grid, key, m, c)
        text = (folder / "data_scaling.md").read_text()
        for method in ("brainvis", "dreamdiffusion", "lstm", "channelnet", "eegnet", "shallowconvnet"):
            assert f"| {method} | 1 |" in text, (folder, method)


def test_leakage_leaderboard_names_the_worlds_and_compares_them(tmp_path):
    """Two worlds (without / with block drift): readable dataset names, the grid's world order, and a
    per-method change with CI and p-value that equals a direct independent-samples comparison."""
    from bench.results.leaderboard import dataset_labels
    from bench.metrics import holm, independent_comparison

    labels = dataset_labels("leakage")
    (clean, clean_name), (drift, drift_name) = labels.items()
    assert (clean_name, drift_name) == ("mini world", "mini world, block drift")
    folder = tmp_path / "store" / "records"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    per_trial = {}
    for i, (method, world, p) in enumerate([("eegnet", drift, 0.6), ("eegnet", clean, 0.3), ("chance", clean, 0.025), ("chance", drift, 0.025)]):
        top1 = (rng.random(80) < p).astype(float)
        per_trial[method, world] = top1
        rec = {"key": f"k{i}", "status": "ok", "method": method, "variant": "", "options": {}, "subject": 1, "fraction": 1.0, "w": 0.5,
               "seed": 0, "profile": "mini", "grid": "leakage", "config": {"dataset_id": world, "backbones": "none", "backbone_ids": {}},
               "metrics": {"top1": _metric(top1)}, "git_commit": "abc", "finished": "2026-11-29T05:00:00+00:00"}  # fmt: skip
        (folder / f"k{i}.json").write_text(json.dumps(rec))
    shared = {"key": "kgen", "status": "ok", "method": "eegnet", "variant": "", "options": {}, "subject": 1, "fraction": 1.0, "w": 0.5,
              "seed": 0, "profile": "mini", "grid": "subjects", "config": {"dataset_id": clean, "backbones": "mini"},
              "metrics": {"top1": _metric(np.ones(80))}, "finished": "2026-11-29T05:00:00+00:00"}  # fmt: skip
    (folder / "kgen.json").write_text(json.dumps(shared))  # same axes, but it generates: the subjects grid's, not leakage's
    from bench.results.leaderboard import load_records, records_of_grid

    stored = load_records(tmp_path / "store")
    assert sorted(r["key"] for r in records_of_grid(stored, "leakage")) == ["k0", "k1", "k2", "k3"]
    assert [r["key"] for r in records_of_grid(stored, "subjects") if r["method"] == "eegnet"] == ["kgen"]
    text = write_leaderboard(tmp_path / "store", "leakage", tmp_path / "out", figures=False)[0].read_text()
    table = [l for l in text.split("## Subject 1")[1].split("## Between")[0].splitlines() if l.startswith("| eegnet")]
    assert [l.split(" | ")[1] for l in table] == ["mini world", "mini world, block drift"]  # the grid's order, by name
    assert "## Average over subjects" not in text  # one subject: one table
    assert "backbones: none (classification only)" in text and f"{drift} (mini world, block drift)" in text
    expected = independent_comparison(per_trial["eegnet", drift], per_trial["eegnet", clean])
    row = next(l for l in text.split("## Between the two datasets")[1].splitlines() if l.startswith("| eegnet"))
    other = independent_comparison(per_trial["chance", drift], per_trial["chance", clean])  # the table's other p-value
    holm_p = holm([expected["p_value"], other["p_value"]])[0]
    assert row == f"| eegnet | {expected['diff']:+.3f} [{expected['ci_low']:.3f}, {expected['ci_high']:.3f}], p={expected['p_value']:.3g} (Holm {holm_p:.3g}) |"
    assert expected["diff"] > 0.15 and expected["p_value"] < 0.01
    assert "Change from **mini world** to **mini world, block drift**" in text


def test_a_grid_keeps_its_own_subjects(tmp_path):
    """A trial another grid ran for another subject (same method, fraction, w) stays out of this grid's
    tables, so an average over subjects compares like with like; subjects a run of this grid added stay in."""
    from bench.results.leaderboard import load_records, records_of_grid

    store = _records(tmp_path)  # data_scaling runs on subjects 1 and 4 (a --subjects override: the grid says 4)
    other = json.loads((store / "records" / "k001.json").read_text()) | {"key": "k500", "subject": 6, "grid": "subjects"}
    (store / "records" / "k500.json").write_text(json.dumps(other))
    stored = load_records(store)
    assert {r["subject"] for r in records_of_grid(stored, "data_scaling")} == {1, 4}
    assert "k500" in {r["key"] for r in records_of_grid(stored, "subjects")}
    assert "## Subject 6" not in write_leaderboard(store, "data_scaling", tmp_path / "out", figures=False)[0].read_text()


def test_dataset_comparison_units_average_seeds_and_keep_common_subjects():
    """Seeds repeat the same test trials: one unit per trial (its seed mean), and only subjects both datasets have."""
    from bench.results.leaderboard import _trial_units

    def rec(subject, seed, values):
        return {"key": f"s{subject}-{seed}", "subject": subject, "seed": seed, "metrics": {"top1": {"per_trial": values}}}

    a = [rec(1, 0, [1, 0, 0, 1]), rec(1, 1, [1, 1, 0, 0]), rec(2, 0, [1, 1, 1, 1])]  # subject 2 only in a
    b = [rec(1, 0, [0, 0, 0, 1])]
    xa, xb = _trial_units(a, b, "top1")
    assert xa.tolist() == [1.0, 0.5, 0.0, 0.5] and xb.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert _trial_units(a, [rec(3, 0, [1, 0])], "top1") == (None, None)


def test_grid_membership_for_user_files_untagged_stores_and_worlds_grids_run_on_data(tmp_path):
    from bench.experiment.grid import load_grid
    from bench.results.leaderboard import records_of_grid

    def rec(key, subject, grid=None, dataset="cvpr40-real", backbones="mini", **extra):
        return {"key": key, "status": "ok", "method": "eegnet", "variant": "", "options": {}, "subject": subject, "fraction": 1.0,
                "w": 0.5, "seed": 0, "grid": grid, "config": {"dataset_id": dataset, "backbones": backbones}, **extra}  # fmt: skip

    mine = tmp_path / "mine.toml"
    mine.write_text('description = "mine"\n[axes]\nmethod = ["eegnet"]\nsubject = [4]\nfraction = [1.0]\nw = [0.5]\nseed = [0]\n')
    tagged = [rec("a", 4, "mine"), rec("b", 1, "mine"), rec("c", 2, "subjects")]  # a run of mine.toml with --subjects 1,4
    for grid in (str(mine), "mine", load_grid(mine, check=False)):
        assert sorted(r["key"] for r in records_of_grid(tagged, grid)) == ["a", "b"], grid
    untagged = [rec("a", 4), rec("b", 1), {**rec("c", 2), "config": None}]  # an older store: no grid tags (one config null)
    assert sorted(r["key"] for r in records_of_grid(untagged, str(mine))) == ["a", "b", "c"]  # no tags: any subject; no crash
    # the leakage grid names two synthetic worlds; run with --data, its records carry the folder's dataset id
    on_data = [rec("d", 1, "leakage", backbones="none"), rec("e", 1, "subjects")]
    assert [r["key"] for r in records_of_grid(on_data, "leakage")] == ["d"]
