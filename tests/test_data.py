"""The EEG-CVPR40 data layer: layout, preprocessing, subject/split rules, nested fractions, bad input."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_dataset import write_tiny_dataset

from bench.data.classes import WNIDS
from bench.data.eegcvpr40 import (
    DataConfig,
    load_release,
    load_split_data,
    load_splits,
    nested_fraction,
    select_split,
)
from bench.errors import DataError
from bench.cli.app import main


# --------------------------------------------------------------------------------------------------
# The world's files are in the release's exact layout (plain torch.load, no project code)
# --------------------------------------------------------------------------------------------------


def test_world_files_match_release_layout(smoke_world):
    root, _ = smoke_world
    for fname in ("eeg_5_95_std.pth", "eeg_signals_raw_with_mean_std.pth"):
        obj = torch.load(root / fname, weights_only=True)
        assert set(obj) == {"dataset", "labels", "images"}
        assert obj["labels"] == list(WNIDS)
        assert all(isinstance(n, str) and n.split("_")[0] in WNIDS for n in obj["images"])
        for t in obj["dataset"][:50] + obj["dataset"][-50:]:
            assert set(t) == {"eeg", "label", "image", "subject"}
            assert t["eeg"].dtype == torch.float32 and t["eeg"].ndim == 2 and t["eeg"].shape[0] == 128
            assert type(t["label"]) is int and type(t["image"]) is int and type(t["subject"]) is int
            assert 0 <= t["label"] < 40 and 0 <= t["image"] < len(obj["images"]) and 1 <= t["subject"] <= 6
            assert obj["images"][t["image"]].split("_")[0] == obj["labels"][t["label"]]
        lengths = [t["eeg"].shape[1] for t in obj["dataset"]]
        assert 420 <= min(lengths) and max(lengths) <= 640
    for fname in ("block_splits_by_image_all.pth", "block_splits_by_image_single.pth"):
        obj = torch.load(root / fname, weights_only=True)
        assert set(obj) == {"splits"} and isinstance(obj["splits"], list)
        for s in obj["splits"]:
            assert set(s) == {"train", "val", "test"} and all(isinstance(i, int) for i in s["train"])


def test_preprocessing_filters_lengths_and_crops(smoke_world):
    root, _ = smoke_world
    release = load_release(root / "eeg_5_95_std.pth")
    lengths = release.lengths
    assert ((lengths < 450) | (lengths > 600)).any(), "smoke worlds include odd-length trials to exercise the filter"
    data = load_split_data(DataConfig(root=str(root), subject=2), release=release)
    for part in (data.train, data.val, data.test):
        assert part.eeg.shape[1:] == (128, 440) and part.eeg.dtype == torch.float32
        assert ((lengths[part.index] >= 460) & (lengths[part.index] <= 600)).all()
        assert (part.subject == 2).all()
        i = int(part.index[0])
        assert torch.equal(part.eeg[0], release.eeg[i][:, 20:460])
    # Only length filtering removes trials: every in-range trial of subject 2 is in some split.
    mine = np.flatnonzero((release.subject == 2) & (lengths >= 460) & (lengths <= 600))
    used = np.concatenate([data.train.index, data.val.index, data.test.index])
    assert sorted(used.tolist()) == mine.tolist()


def test_split_rules_subject_selection_and_by_image(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", n_classes=4, per_class=6, subjects=2)
    release = load_release(root / "eeg_5_95_std.pth")
    n = 24
    splits_all = load_splits(root / "block_splits_by_image_all.pth")
    splits_single = load_splits(root / "block_splits_by_image_single.pth")
    # subject 0 = all trials; 'all' indices point into the full list.
    everything = select_split(release, splits_all, subject=0, mode="all")
    assert sum(v.size for v in everything.values()) == 2 * n
    # 'all' mode for subject 2: the full split restricted to subject 2's trials.
    s2 = select_split(release, splits_all, subject=2, mode="all")
    assert all((release.subject[v] == 2).all() for v in s2.values())
    assert s2["test"].tolist() == [n + i for i in range(0, n, 6)]
    # 'single' mode: indices point into subject 2's own trial list (the release's rule).
    s2_single = select_split(release, splits_single, subject=2, mode="single")
    assert s2_single["test"].tolist() == [n + i for i in splits_single[0].test]
    for parts in (everything, s2, s2_single):
        imgs = {k: set(release.image[v].tolist()) for k, v in parts.items()}
        assert not imgs["train"] & imgs["test"] and not imgs["train"] & imgs["val"] and not imgs["val"] & imgs["test"]


def test_nested_fractions_are_nested_stratified_deterministic(smoke_world):
    root, _ = smoke_world
    release = load_release(root / "eeg_5_95_std.pth")
    # Subject 0 (all subjects): units are images, each with several trials.
    full = load_split_data(DataConfig(root=str(root), subject=0), release=release).train
    prev: set[int] | None = None
    for f in (1.0, 0.5, 0.25, 0.1, 0.05):
        idx = nested_fraction(full.index, release.image, release.label, f, seed=3)
        assert np.array_equal(idx, nested_fraction(full.index, release.image, release.label, f, seed=3))
        chosen = set(idx.tolist())
        if prev is not None:
            assert chosen <= prev  # nested: the smaller subset is inside the larger one
        prev = chosen
        imgs = np.unique(release.image[idx])
        n_train_imgs = np.unique(release.image[full.index]).size
        assert imgs.size == max(1, round(f * n_train_imgs))
        # all trials of a chosen image come along (split by image)
        assert np.isin(full.index[np.isin(release.image[full.index], imgs)], idx).all()
        # stratified: per-class image counts within one of the proportional share
        counts = np.bincount(release.label[np.unique(idx)][np.unique(release.image[idx], return_index=True)[1]], minlength=40)
        share = f * np.bincount(release.label[full.index][np.unique(release.image[full.index], return_index=True)[1]], minlength=40)
        assert np.all(np.abs(counts - share) <= 1.0 + 1e-9)
    other = nested_fraction(full.index, release.image, release.label, 0.25, seed=4)
    assert not np.array_equal(other, nested_fraction(full.index, release.image, release.label, 0.25, seed=3))


def test_unlabelled_pools_hold_train_and_val_eeg_only(smoke_world):
    """The pretraining pool: every subject's training and validation EEG, or one subject's (the same at
    every fraction), never a test image's trial."""
    from bench.data.dataset import open_dataset

    root, _ = smoke_world
    ds = open_dataset(root)
    desc, n_train, n_val, load = ds.unlabelled_eeg()
    train, val = load()
    assert desc["subjects"] == sorted(ds.subjects()) and (len(train), len(val)) == (n_train, n_val) and train.dtype == torch.float16
    splits = {s: ds.load_split(s, 1.0, 0) for s in ds.subjects()}
    assert n_train == sum(len(d.train) for d in splits.values()) and n_val == sum(len(d.val) for d in splits.values())
    s = max(ds.subjects())
    desc_s, n_s, v_s, load_s = ds.unlabelled_eeg(subject=s)
    train_s, val_s = load_s()
    assert desc_s["subjects"] == [s] and (n_s, v_s) == (len(splits[s].train), len(splits[s].val))
    torch.testing.assert_close(train_s.float(), splits[s].train.eeg.half().float())  # the subject's whole training split, in split order
    torch.testing.assert_close(val_s.float(), splits[s].val.eeg.half().float())
    # no test trial of any subject is in either pool
    test = torch.cat([d.test.eeg.half().flatten(1) for d in splits.values()])
    for pool in (train, val, train_s, val_s):
        assert not (torch.cdist(pool.flatten(1).float(), test.float()) < 1e-3).any()


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), float("inf"), True])
def test_fraction_outside_unit_interval_is_rejected(bad):
    with pytest.raises(DataError, match="fraction"):
        nested_fraction(np.arange(4), np.arange(4), np.zeros(4, dtype=int), bad)


def test_memory_mapped_load_is_shared_and_readable_from_another_process(smoke_world):
    root, _ = smoke_world
    code = (
        "import sys, torch; from bench.data.eegcvpr40 import load_release;"
        f"r = load_release(r'{root / 'eeg_5_95_std.pth'}');"
        "print(len(r), float(r.eeg[5].sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    release = load_release(root / "eeg_5_95_std.pth")
    assert int(out[0]) == len(release)
    assert float(out[1]) == pytest.approx(float(release.eeg[5].sum()), rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Bad input: one clear error and exit code 2 from `bench data check`, never a traceback
# --------------------------------------------------------------------------------------------------


class _RunsCode:
    """A pickle payload that would run code when unpickled without weights_only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rewrite(path, mutate):
    obj = torch.load(path, weights_only=True)
    mutate(obj)
    torch.save(obj, path)


def _check_fails(capsys, root, *expected: str) -> str:
    rc = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.strip().startswith("error:")
    for e in expected:
        assert e in err, err
    return err


def test_valid_tiny_dataset_passes(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    assert main(["data", "check", str(root)]) == 0
    assert "ok" in capsys.readouterr().out


def test_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    marker = tmp_path / "pwned"
    with open(root / "eeg_5_95_std.pth", "wb") as fh:
        pickle.dump({"dataset": [_RunsCode(str(marker))], "labels": [], "images": []}, fh)
    _check_fails(capsys, root, "refused to load")
    # also in the torch zip format
    torch.save({"dataset": [_RunsCode(str(marker))], "labels": [], "images": []}, root / "eeg_5_95_std.pth")
    _check_fails(capsys, root, "refused to load")
    assert not marker.exists()


def test_truncated_file(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    p = root / "eeg_5_95_std.pth"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _check_fails(capsys, root, "truncated or corrupt")


def test_wrong_keys(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    _rewrite(root / "eeg_5_95_std.pth", lambda o: o.pop("labels"))
    _check_fails(capsys, root, "missing key", "labels")


def test_wrong_tensor_shape(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    _rewrite(root / "eeg_5_95_std.pth", lambda o: o["dataset"][3].update(eeg=torch.zeros(64, 500)))
    _check_fails(capsys, root, "trial 3", "[128, L]", "[64, 500]")


def test_nan_and_inf_eeg(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")

    def poison(o):
        o["dataset"][5]["eeg"][7, 100] = float("nan")
        o["dataset"][9]["eeg"][0, 0] = float("inf")

    _rewrite(root / "eeg_5_95_std.pth", poison)
    _check_fails(capsys, root, "NaN or Inf", "5", "9")


def test_trial_sets_check_finiteness_when_the_release_did_not(tmp_path):
    """Runs load releases with check_finite=False (no pass over every page of the memory map);
    the trial sets they build still refuse NaN/Inf in the trials they use."""
    root = write_tiny_dataset(tmp_path / "d")
    _rewrite(root / "eeg_5_95_std.pth", lambda o: o["dataset"][26]["eeg"].__setitem__((3, 40), float("nan")))  # subject 2
    release = load_release(root / "eeg_5_95_std.pth", check_finite=False)
    data = load_split_data(DataConfig(root=str(root), subject=1), release=release)  # subject 1: clean
    assert torch.isfinite(data.train.eeg).all()
    with pytest.raises(DataError, match="NaN or Inf.*26"):
        load_split_data(DataConfig(root=str(root), subject=2), release=release)


def test_split_indices_out_of_range(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    _rewrite(root / "block_splits_by_image_all.pth", lambda o: o["splits"][0]["test"].append(10_000))
    _check_fails(capsys, root, "out of range", "10000")


def test_split_not_by_image(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    # Subject 2's trial of image 2 in test while subject 1's trial of image 2 is in train.
    _rewrite(root / "block_splits_by_image_all.pth", lambda o: (o["splits"][0]["train"].remove(24 + 2), o["splits"][0]["test"].append(24 + 2)))
    _check_fails(capsys, root, "not by image")


def test_missing_image_files(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "d")
    victim = next((root / "images").rglob("*.JPEG"))
    victim.unlink()
    _check_fails(capsys, root, "missing", victim.stem)


def test_unknown_subject_and_bad_fraction(tmp_path):
    root = write_tiny_dataset(tmp_path / "d")
    with pytest.raises(DataError, match=r"unknown subject 7; this dataset has subjects \[1, 2\]"):
        load_split_data(DataConfig(root=str(root), subject=7))
    with pytest.raises(DataError, match="fraction"):
        load_split_data(DataConfig(root=str(root), subject=1, fraction=0.0))


def test_missing_folder_and_file(tmp_path, capsys):
    _check_fails(capsys, tmp_path / "nope", "not found")
    (tmp_path / "empty").mkdir()
    _check_fails(capsys, tmp_path / "empty", "eeg_5_95_std.pth")


def test_length_filter_drops_short_and_long_trials(tmp_path):
    # trial 0 too short, trial 1 too long, trial 2 in range but shorter than the 20..460 window.
    root = write_tiny_dataset(tmp_path / "d", lengths={0: 440, 1: 610, 2: 455})
    release = load_release(root / "eeg_5_95_std.pth")
    data = load_split_data(DataConfig(root=str(root), subject=1), release=release)
    used = set(np.concatenate([data.train.index, data.val.index, data.test.index]).tolist())
    assert {0, 1, 2}.isdisjoint(used) and len(used) == 21
