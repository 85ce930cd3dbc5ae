"""Block-design leakage audit: known answers on smoke worlds with and without block drift."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bench.evaluation import audit as A
from bench.world.probe import probe_accuracy
from bench.errors import UserError

TOP_KEYS = {
    "schema", "root", "subjects", "n_classes", "chance", "files", "settings", "verdict", "rule", "flagged_probes",
    "evidence", "probes", "band_audit", "loso", "design", "per_subject", "notes", "timings_s",
}
PROBE_KEYS = {"description", "file", "stimulus_blind", "available", "accuracy", "x_chance", "per_subject", "null", "flagged"}
NULL_KEYS = {"block_relabel", "trial_shuffle", "within_block"}


@pytest.fixture(scope="module")
def drift_report(smoke_world_drift):
    return A.audit_dataset(smoke_world_drift[0])


@pytest.fixture(scope="module")
def clean_report(smoke_world):
    return A.audit_dataset(smoke_world[0])


def _key_tree(obj):
    """Nested key structure (dict keys only; per-subject maps keep their subject keys)."""
    if isinstance(obj, dict):
        return {k: _key_tree(v) for k, v in obj.items()}
    return None


# ---------------------------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------------------------


def test_drift_world_flags_leakage(drift_report):
    r = drift_report
    chance = r["chance"]
    assert r["verdict"] == A.VERDICT_LEAK
    assert set(r["flagged_probes"]) >= {"trial_means_raw", "onset_level_raw", "band_power_30_95"}
    for name in r["flagged_probes"]:
        p = r["probes"][name]
        assert p["accuracy"] > 10 * chance  # far above chance, not just over the line
        assert p["null"]["block_relabel"]["p"] < r["settings"]["p_threshold"]
        assert p["null"]["trial_shuffle"]["p"] < r["settings"]["p_threshold"]
        assert p["null"]["block_relabel"]["q99"] < 4 * chance
        # Block design with a session log: blocks are single-class, so block identity explains it all.
        assert p["null"]["within_block"]["degenerate"] is True
        assert p["null"]["within_block"]["p"] == 1.0
    assert r["design"]["blocks"] == "session.json"
    assert r["design"]["block_identity_accuracy"] == 1.0
    assert r["band_audit"]["flagged"] and r["band_audit"]["gap"] > 0.3
    assert any(e.startswith("trial_means_raw") for e in r["evidence"])


def test_clean_world_is_not_flagged(clean_report):
    r = clean_report
    chance = r["chance"]
    assert r["verdict"] == A.VERDICT_OK
    assert r["flagged_probes"] == []
    for p in r["probes"].values():
        assert p["available"] and not p["flagged"]
        assert p["accuracy"] <= 3 * chance
        assert p["null"]["block_relabel"]["p"] > 0.01
        assert p["null"]["within_block"]["degenerate"] is False
    # The world does carry a stimulus response, and slow content adds nothing to it.
    assert r["band_audit"]["without_slow"]["accuracy"] > 3 * chance
    assert not r["band_audit"]["flagged"] and r["band_audit"]["gap"] < 0.05
    assert r["design"]["block_identity_accuracy"] < 3 * chance  # randomized order: blocks say nothing
    assert r["loso"]["available"] and 0.0 <= r["loso"]["accuracy"] <= 1.0
    assert r["evidence"] and r["evidence"][0].startswith("highest stimulus-blind probe")


def test_json_keys_stable_and_serialisable(drift_report, clean_report):
    for r in (drift_report, clean_report):
        assert set(r) == TOP_KEYS
        assert r["schema"] == A.SCHEMA
        assert set(r["probes"]) == {p.name for p in A.PROBES}
        for p in r["probes"].values():
            assert set(p) == PROBE_KEYS
            assert set(p["null"]) == NULL_KEYS
        assert json.loads(json.dumps(r)) == r  # plain JSON types only
        for s, row in r["per_subject"].items():
            assert set(row) == {"n_train", "n_test", "probes", "erp_5_95", "erp_raw", "erp_loso"}
            assert set(row["probes"]) == set(r["probes"])
    assert _key_tree(drift_report) == _key_tree(clean_report)


def test_no_slow_file_keeps_keys(smoke_world, tmp_path):
    """A dataset with only the 5-95 Hz file: slow-content probes and band audit are unavailable."""
    src = Path(smoke_world[0])
    for name in ("eeg_5_95_std.pth", "block_splits_by_image_all.pth", "block_splits_by_image_single.pth"):
        os.symlink(src / name, tmp_path / name)
    r = A.audit_dataset(tmp_path, subjects=[1], loso=False, n_permutations=199)
    assert set(r) == TOP_KEYS and r["files"]["slow"] is None
    assert not r["probes"]["trial_means_raw"]["available"] and r["probes"]["trial_means_raw"]["accuracy"] is None
    assert set(r["probes"]["trial_means_raw"]) == PROBE_KEYS
    assert r["probes"]["band_power_30_95"]["available"]
    assert not r["band_audit"]["available"] and r["band_audit"]["gap"] is None
    assert not r["loso"]["available"]
    assert r["design"]["blocks"] == "assumed: block = class" and r["design"]["block_identity_accuracy"] == 1.0
    assert r["verdict"] == A.VERDICT_OK
    assert any("permutations cannot reach" in n for n in r["notes"])  # 199 < 1 / (0.01 / 2)
    json.dumps(r)


# ---------------------------------------------------------------------------------------------
# The statistics, against independent computations
# ---------------------------------------------------------------------------------------------


def _toy(n=120, d=8, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.standard_normal((n, d)) + 0.8 * rng.standard_normal((k, d))[y]
    return x[:90], y[:90], x[90:], y[90:]


def test_fit_predict_matches_probe_accuracy():
    xtr, ytr, xte, yte = _toy()
    for c in (0.05, 1.0):
        assert np.mean(A.fit_predict(xtr, ytr, xte, c=c) == yte) == pytest.approx(probe_accuracy(xtr, ytr, xte, yte, c=c))


def test_block_relabel_null_is_exact():
    """Refitting on relabelled training labels gives the relabelled predictions (label equivariance)."""
    xtr, ytr, xte, _ = _toy()
    pred = A.fit_predict(xtr, ytr, xte, c=1.0)
    rng = np.random.default_rng(1)
    for _ in range(3):
        pi = rng.permutation(5)
        assert np.array_equal(A.fit_predict(xtr, pi[ytr], xte, c=1.0), pi[pred])


def test_ridge_accuracies_match_direct_fit():
    xtr, ytr, xte, yte = _toy(k=4)
    h = A.ridge_hat(xtr, xte)
    mu, sd = xtr.mean(0), xtr.std(0)
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    rng = np.random.default_rng(2)
    index = np.stack([np.arange(ytr.size)] + [rng.permutation(ytr.size) for _ in range(4)])
    got = A.ridge_accuracies(h, ytr, yte, index)
    for q, acc in zip(index, got):
        y = ytr[q]
        onehot = np.eye(4)[y]
        prior = onehot.mean(0)
        w = np.linalg.solve(a.T @ a + ytr.size * np.eye(a.shape[1]), a.T @ (onehot - prior))
        direct = np.mean((b @ w + prior).argmax(1) == yte)
        assert acc == pytest.approx(direct)
    # The wide branch (more features than trials) agrees with the narrow one.
    h_wide = A.ridge_hat(np.hstack([xtr] * 15), np.hstack([xte] * 15))
    xtr15 = np.hstack([xtr] * 15)
    a15 = (xtr15 - xtr15.mean(0)) / xtr15.std(0)
    b15 = (np.hstack([xte] * 15) - xtr15.mean(0)) / xtr15.std(0)
    assert np.allclose(h_wide, b15 @ np.linalg.solve(a15.T @ a15 + ytr.size * np.eye(a15.shape[1]), a15.T))


def test_group_permutations_stay_within_groups():
    groups = np.array([2, 0, 1, 0, 2, 1, 1, 0, 2, 2])
    perms = A._group_permutations(groups, 50, np.random.default_rng(0))
    for q in perms:
        assert sorted(q) == list(range(groups.size))
        assert np.array_equal(groups[q], groups)
    assert len({tuple(q) for q in perms}) > 10


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def test_cli_exit_codes(smoke_world_drift, tmp_path, capsys):
    from bench.cli.app import main

    root = Path(smoke_world_drift[0])
    before = sorted(p.name for p in root.iterdir())
    out = tmp_path / "sub" / "audit.json"
    assert main(["audit", "--data", str(root), "--subjects", "1", "--no-loso", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert A.VERDICT_LEAK in printed
    report = json.loads(out.read_text())
    assert set(report) == TOP_KEYS and report["subjects"] == [1] and report["verdict"] == A.VERDICT_LEAK
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written into the dataset folder

    assert main(["audit", "--data", str(root), "--subjects", "2", "--no-loso", "--fail-on-leak", "--permutations", "499"]) == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (
        ["audit", "--data", str(tmp_path / "missing")],
        ["audit", "--data", str(empty)],
        ["audit", "--data", str(root), "--subjects", "x"],
        ["audit", "--data", str(root), "--subjects", "9"],
        ["audit", "--data", str(root), "--json", str(tmp_path)],
        ["audit", "--data", str(root), "--permutations", "0"],
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_register_on_fresh_app(tmp_path):
    from bench.cli import audit as cli_audit

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    cli_audit.register(app)
    result = CliRunner().invoke(app, ["audit", "--help"])
    assert result.exit_code == 0 and "--json" in result.output and "--subjects" in result.output
    result = CliRunner().invoke(app, ["audit", "--data", str(tmp_path)])
    assert isinstance(result.exception, UserError)
