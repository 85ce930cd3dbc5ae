"""Plugins: a researcher's method and metric in a folder outside the repository run through
`bench run --include` on Ray (two trials at once, each actor importing the plugin) and land in the
store, the leaderboard and `bench compare`; the same through an installed package's entry point;
references are checked up front."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from scipy import stats

from bench.cli.app import main
from bench.errors import UserError

METHOD = textwrap.dedent('''
    """A nearest-centroid classifier on channel means: a user's method, not part of the package."""
    import torch

    from bench.methods.base import Method, Predictions, register_method


    @register_method
    class Centroids(Method):
        name = "my_centroids"
        description = "nearest class centroid of per-channel trial means"
        source = "a test plugin"
        needs_generator = False

        def fit(self, train, val, ctx):
            x = train.eeg.mean(-1)
            n = len(ctx.class_prompts)
            self.c = torch.stack([x[train.label == k].mean(0) if (train.label == k).any() else torch.zeros(x.shape[1]) for k in range(n)])
            return {"val_top1": float((self._logits(val.eeg).argmax(1) == val.label).float().mean())}

        def _logits(self, eeg):
            return -torch.cdist(eeg.mean(-1), self.c)

        def predict(self, eeg):
            return Predictions(logits=self._logits(eeg))
''')

METRIC = textwrap.dedent('''
    """A user's metric: the true class's logit margin over the best other class, per test trial."""
    import torch

    from bench.metrics import register


    @register("my_margin", higher_is_better=True, label="margin", needs=("logits",))
    def my_margin(inputs):
        logits = inputs.logits.float()
        rows, true = torch.arange(len(logits)), torch.as_tensor(inputs.labels).long()
        other = logits.clone()
        other[rows, true] = -float("inf")
        per_trial = (logits[rows, true] - other.max(1).values).numpy()
        return {"value": float(per_trial.mean()), "per_trial": per_trial}
''')


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("outside") / "my_methods"
    d.mkdir()
    (d / "centroids.py").write_text(METHOD)
    (d / "margin.py").write_text(METRIC)
    return d


def test_a_plugin_method_runs_on_ray_and_reaches_leaderboard_and_compare(plugin_dir, smoke_world, tmp_path, capsys):
    grid = tmp_path / "mine.toml"
    grid.write_text('include = ["%s"]\ngenerate = false\n[axes]\nmethod = ["my_centroids", "chance"]\nsubject = [1, 2]\n' % plugin_dir)
    store = tmp_path / "store"
    rc = main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(store), "--max-concurrent", "2"])
    assert rc == 0, capsys.readouterr().err
    recs = [json.loads(p.read_text()) for p in (store / "records").glob("*.json")]
    mine = [r for r in recs if r["method"] == "my_centroids"]
    assert len(mine) == 2 and all(r["status"] == "ok" and "top1" in r["metrics"] for r in mine)
    assert len({r["pid"] for r in recs}) >= 1 and all("my_margin" in r["metrics"] for r in recs)  # computed in the actors
    m = mine[0]["metrics"]["my_margin"]
    v = np.asarray(m["per_trial"])
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))  # the interval its spec names, independently
    assert m["value"] == pytest.approx(v.mean(), abs=1e-5) and m["ci_method"] == "student_t"
    assert (m["ci_low"], m["ci_high"]) == pytest.approx((lo, hi), abs=1e-5)
    board = (store / "leaderboard" / "mine.md").read_text()
    assert "| my_centroids |" in board and "margin ↑" in board
    capsys.readouterr()
    md = tmp_path / "compare.md"
    assert main(["compare", "my_centroids", "chance", "--store", str(store), "--markdown", str(md)]) == 0  # default: every per-trial metric
    table = md.read_text()
    assert "my_centroids" in table and "| margin |" in table and "| top-1 |" in table


def test_include_on_the_command_line_and_module_references(plugin_dir, smoke_world, tmp_path, monkeypatch, capsys):
    from bench.methods.base import METHODS
    from bench.plugins import load_plugins, normalise

    grid = tmp_path / "g.toml"
    grid.write_text('[axes]\nmethod = ["my_centroids"]\nsubject = [1]\n')
    store = tmp_path / "s"
    assert main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(store), "--include", str(plugin_dir / "centroids.py")]) == 0
    assert [json.loads(p.read_text())["method"] for p in (store / "records").glob("*.json")] == ["my_centroids"]
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "undecorated_plugin.py").write_text(METHOD.replace("@register_method\n", "").replace("my_centroids", "my_undecorated"))
    monkeypatch.syspath_prepend(str(pkg))
    load_plugins(["undecorated_plugin:Centroids"])  # a module path with an object: resolved and registered
    assert METHODS["my_undecorated"].__module__ == "undecorated_plugin"
    with pytest.raises(UserError, match="no such file"):
        normalise("./nowhere/x.py")
    with pytest.raises(UserError, match="not found"):
        load_plugins(["no_such_module_xyz"])
    assert main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(tmp_path / "t"), "--include", "./nowhere/"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_run_benchmark_returns_the_grid_as_a_table(plugin_dir, smoke_world, tmp_path):
    """The library entry point: the same run as `bench run`, results as a DataFrame (one row per trial)."""
    import bench

    grid = tmp_path / "lib.toml"
    grid.write_text('generate = false\n[axes]\nmethod = ["my_centroids", "chance"]\nsubject = [1]\n')
    df = bench.run_benchmark(grid, data=smoke_world[0], store=tmp_path / "store", include=[str(plugin_dir)])
    assert sorted(df["method"]) == ["chance", "my_centroids"] and set(df["status"]) == {"ok"}
    stored = {json.loads(p.read_text())["method"]: json.loads(p.read_text())["metrics"]["top1"]["value"] for p in (tmp_path / "store" / "records").glob("*.json")}
    assert dict(zip(df["method"], df["metric.top1"])) == pytest.approx(stored)


ENTRY_POINT_PLUGIN = METHOD.replace("my_centroids", "my_ep_method") + METRIC.replace("my_margin", "my_ep_margin").replace('label="margin"', 'label="ep margin"')


def test_an_installed_package_plugs_in_through_its_entry_point(smoke_world, tmp_path, monkeypatch, capsys):
    """A package that declares ``[project.entry-points."brainvis_bench.plugins"]`` (here: a module and
    its dist-info on the path, as pip would install it) needs no --include: the driver, the Ray actors
    and the leaderboard find its method and metric."""
    import os

    site = tmp_path / "site"
    site.mkdir()
    (site / "ep_bench_plugin.py").write_text(ENTRY_POINT_PLUGIN)
    info = site / "ep_bench_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-bench-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[brainvis_bench.plugins]\nmine = ep_bench_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))  # Ray's workers
    grid = tmp_path / "ep.toml"
    grid.write_text('generate = false\n[axes]\nmethod = ["my_ep_method", "chance"]\nsubject = [1, 2]\n')
    store = tmp_path / "store"
    rc = main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(store), "--max-concurrent", "2"])
    assert rc == 0, capsys.readouterr().err
    recs = [json.loads(p.read_text()) for p in (store / "records").glob("*.json")]
    assert sorted(r["method"] for r in recs) == ["chance", "chance", "my_ep_method", "my_ep_method"]
    assert all(r["status"] == "ok" and "my_ep_margin" in r["metrics"] for r in recs)
    assert "ep margin ↑" in (store / "leaderboard" / "ep.md").read_text()


DATASET_FORMAT = textwrap.dedent('''
    """A user's own dataset format: one .npz file (EEG [N, C, T], labels, subjects, split 0/1/2)."""
    from pathlib import Path

    import numpy as np
    import torch

    from bench.data.dataset import register_dataset
    from bench.data.eegcvpr40 import DataConfig, SplitData, TrialSet
    from bench.errors import UserError


    @register_dataset
    class ToyNpz:
        format = "toy-npz"
        audited = False

        def __init__(self, root, split_mode="all"):
            self.root = Path(root)
            if not (self.root / "toy.npz").is_file():
                raise UserError(f"{self.root}: toy.npz not found")
            self.z = dict(np.load(self.root / "toy.npz"))

        @property
        def dataset_id(self):
            return "toy-npz:" + str(len(self.z["label"]))

        def validate(self, progress):
            progress("checking toy.npz")
            if not np.isfinite(self.z["eeg"]).all():
                raise UserError("toy.npz: NaN or Inf EEG values")

        def subjects(self):
            return sorted({int(s) for s in self.z["subject"]})

        @property
        def classes(self):
            return ["a", "b", "c"]

        def class_prompts(self):
            return [f"a photo of {c}" for c in self.classes]

        def load_split(self, subject, fraction, seed):
            z = self.z
            mine = z["subject"] == subject if subject else np.ones(len(z["label"]), bool)

            def part(k):
                idx = np.flatnonzero(mine & (z["split"] == k))
                idx = idx[: max(1, round(len(idx) * fraction))] if k == 0 else idx
                t = lambda a: torch.from_numpy(np.asarray(a[idx]))
                return TrialSet(t(z["eeg"]).float(), t(z["label"]).long(), torch.from_numpy(idx), t(z["subject"]).long(), idx, [f"img{i}" for i in idx])

            return SplitData(part(0), part(1), part(2), self.classes, DataConfig(root=str(self.root), subject=subject, fraction=fraction, fraction_seed=seed))

        def image_root(self):
            return self.root

        def images(self, names):
            raise UserError("toy-npz has no images")

        def attributes(self, names):
            return None

        def unlabelled_eeg(self):
            raise UserError("toy-npz offers no pretraining pool")

        @property
        def stimulus_id(self):
            return None
''')


def test_a_dataset_of_another_format_runs_through_a_plugin(plugin_dir, tmp_path, capsys):
    """`bench run --data DIR --dataset-format toy-npz --include <plugin>`: the driver checks the data with
    the format's own validate, the actors read it through the Dataset protocol, the number of classes
    comes from the dataset (3, not 40), and the EEG-CVPR40 leakage audit is skipped, saying why."""
    rng = np.random.default_rng(0)
    n, label = 180, np.tile(np.arange(3), 60)
    eeg = rng.normal(size=(n, 8, 50)).astype(np.float32) + label[:, None, None].astype(np.float32)  # class in the channel means
    data = tmp_path / "toy"
    data.mkdir()
    np.savez(data / "toy.npz", eeg=eeg, label=label, subject=np.repeat([1, 2], n // 2), split=np.tile([0, 0, 0, 0, 1, 2], n // 6))
    formats = tmp_path / "my_formats"
    formats.mkdir()
    (formats / "toy_format.py").write_text(DATASET_FORMAT)
    grid = tmp_path / "toy.toml"
    grid.write_text('include = ["%s", "%s"]\ngenerate = false\n[axes]\nmethod = ["my_centroids", "chance"]\nsubject = [1, 2]\n' % (plugin_dir, formats))
    store = tmp_path / "store"
    rc = main(["run", "--grid", str(grid), "--data", str(data), "--dataset-format", "toy-npz", "--store", str(store), "--max-concurrent", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "checking toy.npz" in captured.err and "no leakage audit" in captured.err
    recs = [json.loads(p.read_text()) for p in (store / "records").glob("*.json")]
    assert len(recs) == 4 and all(r["status"] == "ok" and r["config"]["dataset_id"] == "toy-npz:180" for r in recs)
    mine = [r for r in recs if r["method"] == "my_centroids"]
    assert all(r["metrics"]["top1"]["n_classes"] == 3 and r["metrics"]["top1"]["value"] > 0.9 for r in mine)  # the class is in the means
    board = (store / "leaderboard" / "toy.md").read_text()
    assert "*0.333*" in board  # chance of top-1 from the dataset's 3 classes
    assert main(["run", "--grid", str(grid), "--data", str(tmp_path), "--dataset-format", "toy-npz", "--store", str(tmp_path / "s2")]) == 2
    assert "toy.npz not found" in capsys.readouterr().err
