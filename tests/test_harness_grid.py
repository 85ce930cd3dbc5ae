"""Grids as data: shipped grids parse and expand; values, keys and methods are checked with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli.harness import parse_multi
from bench.experiment.grid import (
    NO_W,
    check_all,
    method_problems,
    check_subjects,
    expand,
    expand_trials,
    load_grid,
    parse_grid,
    shipped_grids,
)
from bench.errors import UserError
from bench.methods.registry import get_method

SHIPPED = {"smoke", "data_scaling", "interpolation", "subjects", "ablation", "leakage"}
PAPER_METHODS = {
    "brainvis", "dreamdiffusion", "lstm", "channelnet", "eegnet", "shallowconvnet", "chance",
    "oracle_caption", "oracle_label", "brainvis_stage2_true", "brainvis_stage2_random",
}  # fmt: skip


def keep_w(method: str) -> bool:  # shipped grids may name methods not registered yet
    return method != "noop"


def write(tmp_path, text: str, name: str = "g.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_grids_parse_and_expand():
    assert SHIPPED <= set(shipped_grids())
    for name in SHIPPED:
        g = load_grid(name)
        trials = expand(g, uses_w=keep_w)
        assert trials, name
        assert expand(g, uses_w=keep_w) == trials  # deterministic
        assert len({(t.method, t.subject, t.fraction, t.w, t.seed, t.options) for t in trials}) == len(trials)
        assert set(g.methods) <= PAPER_METHODS | {"noop"}, name
        assert g.description and g.profile in ("mini", "paper")


def test_probe_grids_in_benchmarks_parse_and_name_their_measurements():
    """The probe grids under benchmarks/grids back figures quoted in README and the profiles: each parses
    with the method's real options, expands, and carries a note with its measurements and its command."""
    probes = sorted((Path(__file__).parents[1] / "benchmarks" / "grids").glob("*.toml"))
    assert len(probes) >= 5
    known = set(get_method("brainvis").defaults())
    for path in probes:
        g = load_grid(path)
        assert expand(g, uses_w=keep_w), path.name
        assert "Measured" in g.note and f"--grid benchmarks/grids/{path.name}" in g.note, path.name
        for v in g.variants:
            assert set(v.options) <= known, (path.name, v.name)


def test_shipped_grid_axes():
    smoke = load_grid("smoke")
    assert {"brainvis", "chance", "lstm"} <= set(smoke.methods)
    assert smoke.subjects == (1,) and smoke.fractions == (1.0,) and smoke.seeds == (0,)
    ds = load_grid("data_scaling")
    assert ds.fractions == (0.1, 0.25, 0.5, 1.0) and ds.subjects == (4,)
    assert set(ds.methods) == PAPER_METHODS  # every method
    trials = expand(ds, uses_w=keep_w)
    # methods that train on EEG run at every fraction; reference rows (no EEG training) once
    from bench.experiment.grid import registry_uses_fraction

    trained = [m for m in ds.methods if registry_uses_fraction(m)]
    assert len(trained) == 6 and len(trials) == 6 * 4 + (len(ds.methods) - 6)
    assert {t.fraction for t in trials if t.method == "oracle_label"} == {1.0}
    interp = load_grid("interpolation")
    assert interp.ws == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert [t.w for t in expand(interp, uses_w=lambda m: True)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    subj = load_grid("subjects")
    assert set(subj.methods) == PAPER_METHODS and subj.fractions == (1.0,)
    assert len(expand(subj, uses_w=keep_w)) == len(PAPER_METHODS) * len(subj.subjects)
    abl = expand_trials(load_grid("ablation"), uses_w=keep_w)
    by_name = {t.variant: dict(t.spec.options) for t in abl}
    assert by_name == {
        "full": {}, "no_time": {"use_time": False}, "no_freq": {"use_freq": False}, "no_pretrain": {"pretrain": False},
        "no_finetune": {"finetune": False}, "stage1_only": {"stage2": False}, "stage2_only": {"stage1": False},
    }  # fmt: skip
    leak = load_grid("leakage")
    assert leak.methods and leak.note


def test_w_axis_collapses_for_methods_without_w(tmp_path):
    g = load_grid(write(tmp_path, '[axes]\nmethod = ["noop", "fancy"]\nsubject = [1, 2]\nw = [0.0, 0.5, 1.0]\nseed = [0, 1]\n'))
    trials = expand(g, uses_w=lambda m: m == "fancy")
    noop = [t for t in trials if t.method == "noop"]
    assert len(noop) == 4 and {t.w for t in noop} == {NO_W}
    assert len([t for t in trials if t.method == "fancy"]) == 12
    # the registry's noop has uses_w = False: same result with the default lookup
    g2 = load_grid(write(tmp_path, '[axes]\nmethod = ["noop"]\nw = [0.0, 1.0]\n', "g2.toml"))
    assert [t.w for t in expand(g2)] == [NO_W]


def test_expansion_order_is_method_variant_subject_fraction_w_seed(tmp_path):
    g = load_grid(write(tmp_path, '[axes]\nmethod = ["b", "a"]\nsubject = [2, 1]\nfraction = [0.5, 1.0]\nseed = [1, 0]\n'))
    got = [(t.method, t.subject, t.fraction, t.seed) for t in expand(g, uses_w=lambda m: False)]
    want = [(m, s, f, seed) for m in ("b", "a") for s in (2, 1) for f in (0.5, 1.0) for seed in (1, 0)]
    assert got == want


def test_variants_apply_to_listed_methods(tmp_path):
    text = """
[axes]
method = ["x", "y"]
[[variants]]
name = "fast"
options = { epochs = 1, tag = "f" }
methods = ["x"]
[[variants]]
name = "slow"
options = { epochs = 9 }
methods = ["x"]
"""
    trials = expand_trials(load_grid(write(tmp_path, text)), uses_w=lambda m: False)
    assert [(t.spec.method, t.variant, dict(t.spec.options)) for t in trials] == [
        ("x", "fast", {"epochs": 1, "tag": "f"}), ("x", "slow", {"epochs": 9}), ("y", None, {}),
    ]  # fmt: skip
    with pytest.raises(UserError, match="not on the grid's method axis"):
        load_grid(write(tmp_path, '[axes]\nmethod = ["x"]\n[[variants]]\nname = "v"\nmethods = ["z"]\n', "bad.toml"))


@pytest.mark.parametrize(
    "axes, named",
    [
        ("fraction = [0]", "fraction 0"),
        ("fraction = [1.5]", "fraction 1.5"),
        ("fraction = [-0.1]", "fraction -0.1"),
        ("w = [-0.25]", "w -0.25"),
        ("w = [2.0]", "w 2.0"),
        ("seed = [-1]", "seed -1"),
        ("seed = [0.5]", "seed 0.5"),
        ('seed = ["a"]', "seed 'a'"),
        ("subject = [-2]", "subject -2"),
        ("subject = [1.5]", "subject 1.5"),
        ('profile = "huge"', "profile 'huge'"),
    ],
)
def test_bad_values_are_named(tmp_path, axes, named):
    with pytest.raises(UserError) as exc:
        load_grid(write(tmp_path, f'[axes]\nmethod = ["noop"]\n{axes}\n'))
    assert named in str(exc.value)


def test_every_bad_value_in_one_error(tmp_path):
    p = write(tmp_path, '[axes]\nmethod = ["noop", "nosuch"]\nfraction = [0, 0.5, 2]\nw = [3]\nseed = [-1, 0]\nsubject = [-1]\n')
    with pytest.raises(UserError) as exc:
        check_all(load_grid(p, check=False))
    msg = str(exc.value)
    for part in ("fraction 0, 2", "w 3", "seed -1", "subject -1", "unknown method(s) 'nosuch'", "known methods:", "noop"):
        assert part in msg, part
    assert "0.5" not in msg.split("fraction")[1].split(";")[0]  # good values are not listed


@pytest.mark.parametrize(
    "text, named",
    [
        ('descripton = "typo"\n[axes]\nmethod = ["noop"]\n', "descripton"),
        ('[axes]\nmethod = ["noop"]\nsubjects = [1]\n', "subjects"),
        ('[axes]\nmethod = ["noop"]\n[[variants]]\nname = "v"\noption = {}\n', "option"),
        ("[axes]\nsubject = [1]\n", "method"),
        ('[axes]\nmethod = ["noop"\n', "not valid TOML"),
    ],
)
def test_unknown_keys_and_structure(tmp_path, text, named):
    with pytest.raises(UserError, match="grid") as exc:
        load_grid(write(tmp_path, text))
    assert named in str(exc.value)


def test_unknown_methods_list_known_ones():
    g = parse_grid({"axes": {"method": ["noop", "nosuch", "other"]}}, name="t")
    msg = "; ".join(method_problems(g))
    assert "'nosuch', 'other'" in msg and "noop" in msg and "chance" in msg


def test_subjects_checked_against_dataset():
    g = parse_grid({"axes": {"method": ["noop"], "subject": [0, 1, 7, 9]}}, name="t")
    check_subjects(parse_grid({"axes": {"method": ["noop"], "subject": [0, 1]}}), [1, 2, 3])
    with pytest.raises(UserError) as exc:
        check_subjects(g, [1, 2, 3])
    assert "7, 9" in str(exc.value) and "1, 2, 3" in str(exc.value)


def test_grid_by_name_or_path(tmp_path):
    with pytest.raises(UserError, match="unknown grid 'nosuch'.*smoke"):
        load_grid("nosuch")
    with pytest.raises(UserError, match="not found"):
        load_grid(tmp_path / "missing.toml")
    g = load_grid(write(tmp_path, '[axes]\nmethod = ["noop"]\n', "mine.toml"))
    assert g.name == "mine" and g.profile == "mini"


def test_overrides(tmp_path):
    g = load_grid("data_scaling").with_overrides(subjects=[1, 2, 3], seeds=[0, 1], methods=["noop"], profile="paper")
    assert g.subjects == (1, 2, 3) and g.seeds == (0, 1) and g.methods == ("noop",) and g.profile == "paper"
    assert len(expand(g)) == 3 * 2 * 4  # subjects x seeds x fractions


def test_parse_multi():
    assert parse_multi(["1,4", "6"], int, "subjects") == [1, 4, 6]
    assert parse_multi(None, int, "subjects") is None
    with pytest.raises(UserError, match="--seeds.*'x'"):
        parse_multi(["0,x"], int, "seeds")


def test_cli_grid_list_and_show(capsys):
    from bench.cli.app import main

    assert main(["grid", "list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert main(["grid", "show", "ablation"]) == 0
    out = capsys.readouterr().out
    assert "no_time" in out and "use_time" in out
    assert main(["grid", "show", "nosuch"]) == 2


def test_cache_dir_flag_sets_the_cache_for_the_command(tmp_path, monkeypatch):
    from bench.cli.app import main
    from bench.paths import CACHE_ENV, cache_dir

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "from-env"))  # restored after the test
    assert cache_dir() == tmp_path / "from-env"
    assert main(["--cache-dir", str(tmp_path / "from-flag"), "grid", "list"]) == 0
    assert cache_dir() == tmp_path / "from-flag"


def test_method_options_from_the_grid_reach_the_trials_and_are_checked(tmp_path):
    """[options.<method>] sets a method's hyperparameters for one grid (variants' options win); unknown
    keys and methods off the axis are refused up front."""
    g = parse_grid({"axes": {"method": ["eegnet", "chance"]}, "options": {"eegnet": {"epochs": 7, "lr": 0.01}},
                    "variants": [{"name": "fast", "options": {"epochs": 3}, "methods": ["eegnet"]}, {"name": "base", "methods": ["eegnet"]}]}, name="t")
    specs = {(s.method, s.options) for s in expand(g, uses_w=lambda m: False)}
    assert specs == {("eegnet", (("epochs", 3), ("lr", 0.01))), ("eegnet", (("epochs", 7), ("lr", 0.01))), ("chance", ())}
    assert method_problems(g) == []
    bad = parse_grid({"axes": {"method": ["eegnet"]}, "options": {"eegnet": {"epoch": 7}}}, name="t")
    assert method_problems(bad) == ["eegnet: unknown option(s) epoch (see `bench methods show eegnet`)"]
    with pytest.raises(UserError, match=r"\[options.lstm\]: 'lstm' is not on the method axis"):
        parse_grid({"axes": {"method": ["eegnet"]}, "options": {"lstm": {"epochs": 1}}}, name="t")
