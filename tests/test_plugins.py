"""Plugins: a researcher's method in a folder outside the repository runs through `bench run --include`
on Ray (two trials at once, each actor importing the plugin), lands in the store, the leaderboard and
`bench compare`; references are checked up front."""

from __future__ import annotations

import json
import textwrap

import pytest

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


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("outside") / "my_methods"
    d.mkdir()
    (d / "centroids.py").write_text(METHOD)
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
    board = (store / "leaderboard" / "mine.md").read_text()
    assert "| my_centroids |" in board
    assert main(["compare", "my_centroids", "chance", "--store", str(store), "--metric", "top1"]) == 0
    assert "my_centroids" in capsys.readouterr().out


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
