"""Known-answer checks: grid syntax (per-variant w, per-world variants, checks), the planted/null
world pairing, and the verdicts on records with a known effect."""

from __future__ import annotations

import numpy as np
import pytest

from bench.experiment.grid import expand_trials, load_grid, parse_grid
from bench.evaluation.known_answers import check_results, markdown, paired_values, world_pair
from bench.world.spec import make_spec, spec_of_world
from bench.errors import UserError


def test_shipped_known_answers_grid_pairs_every_check_with_its_null_world():
    g = load_grid("known_answers")
    assert len(g.checks) == 5
    planted = spec_of_world(g.worlds[0]).world_id
    assert planted == make_spec("mini").world_id
    for c in g.checks:
        p, n = world_pair(g, c["effect"])
        assert p == planted and n is not None
        assert n == make_spec("mini", effects={c["effect"]: 0}, raw_file=False).world_id
    # the planted world runs every variant (full twice: w = 0 and 0.5); each null world only its
    # check's, the classification-only ones at w = 0.5 alone (w changes images, not classification);
    # every trial at two seeds
    counts = [len(expand_trials(g, world=w)) for w in g.worlds]
    assert counts == [12, 4, 4, 6, 4]
    assert {t.spec.seed for t in expand_trials(g, world=g.worlds[0])} == {0, 1}
    for world in g.worlds[1:4]:
        assert not g.world_generates(world) and {t.spec.w for t in expand_trials(g, world=world)} == {0.5}


def test_grid_syntax_for_variant_w_world_variants_and_checks():
    base = {"axes": {"method": ["brainvis"]}, "variants": [{"name": "full", "w": [0.0, 0.5]}, {"name": "no_freq", "options": {"use_freq": False}}]}
    g = parse_grid({**base, "worlds": [{"scale": "smoke"}, {"scale": "smoke", "effects": {"induced_class": 0}, "variants": ["no_freq"]}]})
    ws = sorted((t.variant, t.spec.w) for t in expand_trials(g, world=g.worlds[0]))
    assert ws == [("full", 0.0), ("full", 0.5), ("no_freq", 0.5)]
    assert [t.variant for t in expand_trials(g, world=g.worlds[1])] == ["no_freq"]
    one_w = parse_grid({**base, "worlds": [{"scale": "smoke", "w": [0.5]}]})  # a world's w axis wins over the variants'
    assert sorted((t.variant, t.spec.w) for t in expand_trials(one_w, world=one_w.worlds[0])) == [("full", 0.5), ("no_freq", 0.5)]
    # a world's fraction axis wins over the grid's; the same world may be listed twice (other variants, another fraction)
    twice = parse_grid({**base, "axes": {"method": ["brainvis"], "fraction": [1.0]},
                        "worlds": [{"scale": "smoke", "variants": ["full"]}, {"scale": "smoke", "variants": ["no_freq"], "fraction": [0.25, 0.1]}]})  # fmt: skip
    assert {(t.variant, t.spec.fraction) for t in expand_trials(twice, world=twice.worlds[0])} == {("full", 1.0)}
    assert [(t.variant, t.spec.fraction) for t in expand_trials(twice, world=twice.worlds[1])] == [("no_freq", 0.25), ("no_freq", 0.1)]
    bad = [
        ({**base, "worlds": [{"w": []}]}, "w must be a non-empty list"),
        ({**base, "worlds": [{"w": [1.5]}]}, "w must be a non-empty list"),
        ({**base, "worlds": [{"fraction": [0]}]}, "fraction must be a non-empty list"),
        ({**base, "worlds": [{"fraction": 0.5}]}, "fraction must be a non-empty list"),
        ({**base, "worlds": [{"effects": {"nope": 0}}]}, "unknown effect"),
        ({**base, "worlds": [{"variants": ["missing"]}]}, "variants must list"),
        ({**base, "variants": [{"name": "v", "w": [2.0]}]}, "w must be values"),
        ({**base, "checks": [{"effect": "shared", "a": {"variant": "zzz"}, "b": {}, "metric": "top1"}]}, "unknown variant"),
        ({**base, "checks": [{"effect": "nope", "a": {}, "b": {}, "metric": "top1"}]}, "effect must be one of"),
    ]
    for data, match in bad:
        with pytest.raises(UserError, match=match):
            parse_grid(data)


OPTIONS = {"full": {}, "no_freq": {"use_freq": False}}


def _records(world: str, variant: str, w: float, per_trial: np.ndarray, metric: str = "top1") -> dict:
    # "full" records carry no variant name: a trial another grid ran (same options) pairs all the same
    return {"key": f"{world}-{variant}-{w}", "status": "ok", "method": "brainvis", "variant": None if variant == "full" else variant, "w": w, "subject": 4,
            "fraction": 1.0, "seed": 0, "options": OPTIONS.get(variant, {}), "config": {"dataset_id": world},
            "metrics": {metric: {"value": float(per_trial.mean()), "per_trial": per_trial.tolist()}}}  # fmt: skip


def test_a_test_trial_is_one_unit_over_seeds():
    """Seeds of one (subject, fraction) are averaged per test trial, not counted as more trials;
    subjects (or fractions) are concatenated; a side missing a seed leaves that seed out of both."""
    g = parse_grid({"axes": {"method": ["brainvis"]}, "variants": [{"name": "full"}, {"name": "no_freq", "options": {"use_freq": False}}]})
    rng = np.random.default_rng(1)
    a = {(s, seed): rng.random(5).round(3) for s in (1, 4) for seed in (0, 1, 2)}
    b = {(s, seed): rng.random(5).round(3) for s in (1, 4) for seed in (0, 1)}  # b lacks seed 2

    def rec(variant: str, subject: int, seed: int, x: np.ndarray) -> dict:
        r = _records("w", variant, 0.5, x)
        return r | {"key": f"{variant}-{subject}-{seed}", "subject": subject, "seed": seed}

    recs = [rec("full", s, seed, x) for (s, seed), x in a.items()] + [rec("no_freq", s, seed, x) for (s, seed), x in b.items()]
    xa, xb, runs = paired_values(recs, "w", ("brainvis", "full", 0.5), ("brainvis", "no_freq", 0.5), "top1", g)
    assert runs == 4 and len(xa) == len(xb) == 10
    expect_a = np.concatenate([(a[(s, 0)] + a[(s, 1)]) / 2 for s in (1, 4)])
    expect_b = np.concatenate([(b[(s, 0)] + b[(s, 1)]) / 2 for s in (1, 4)])
    assert np.allclose(xa, expect_a) and np.allclose(xb, expect_b)


def test_verdicts_follow_the_rule():
    g = parse_grid({
        "axes": {"method": ["brainvis"]},
        "variants": [{"name": "full"}, {"name": "no_freq", "options": {"use_freq": False}}],
        "worlds": [{"scale": "smoke"}, {"scale": "smoke", "effects": {"induced_class": 0}}],
        "checks": [{"name": "frequency branch", "effect": "induced_class", "a": {"variant": "full"}, "b": {"variant": "no_freq"}, "metric": "top1"}],
    })  # fmt: skip
    planted, null = world_pair(g, "induced_class")
    rng = np.random.default_rng(0)
    n = 200
    full = (rng.random(n) < 0.5).astype(float)
    worse = np.where(rng.random(n) < 0.35, 0.0, full)  # loses a third of the hits
    same = full.copy()
    cases = {
        "recovered": (worse, same),
        "not recovered: no effect where planted": (same, same),
        "not recovered: an effect on the null world too": (worse, worse),
        "not recovered: the opposite effect where planted": (np.maximum(full, (rng.random(n) < 0.5).astype(float)), same),  # b better than a
    }
    for verdict, (planted_b, null_b) in cases.items():
        recs = [_records(planted, "full", 0.5, full), _records(planted, "no_freq", 0.5, planted_b), _records(null, "full", 0.5, full), _records(null, "no_freq", 0.5, null_b)]
        (res,) = check_results(recs, g)
        assert res["verdict"] == verdict, (verdict, res)
        assert res["planted"]["n"] == n and res["planted"]["diff"] == pytest.approx(full.mean() - planted_b.mean())
    assert "**recovered**" not in markdown(check_results(recs, g))
    (res,) = check_results(recs[:2], g)
    assert res["verdict"].startswith("incomplete")

    # null = "no_gain": harm on the null world is allowed, a gain in the expected direction is not
    g2 = parse_grid({
        "axes": {"method": ["brainvis"]},
        "variants": [{"name": "full"}, {"name": "no_freq", "options": {"use_freq": False}}],
        "worlds": [{"scale": "smoke"}, {"scale": "smoke", "effects": {"induced_class": 0}}],
        "checks": [{"name": "frequency branch", "effect": "induced_class", "a": {"variant": "full"}, "b": {"variant": "no_freq"}, "metric": "top1", "null": "no_gain"}],
    })  # fmt: skip
    better = np.maximum(full, (rng.random(n) < 0.5).astype(float))  # no_freq beats full: harm from the "full" side
    for null_b, verdict in ((better, "recovered"), (worse, "not recovered: a gain on the null world too"), (same, "recovered")):
        recs = [_records(planted, "full", 0.5, full), _records(planted, "no_freq", 0.5, worse), _records(null, "full", 0.5, full), _records(null, "no_freq", 0.5, null_b)]
        (res,) = check_results(recs, g2)
        assert res["verdict"] == verdict and res["null_expect"] == "no_gain", (verdict, res)
    assert "(expected: no gain)" in markdown([res])

    # null = "gain": the effect does not need the switched-off one, so the null world shows the same gain
    g3 = parse_grid({"axes": {"method": ["brainvis"]},
                     "variants": [{"name": "full"}, {"name": "no_freq", "options": {"use_freq": False}}],
                     "worlds": [{"scale": "smoke"}, {"scale": "smoke", "effects": {"induced_class": 0}}],
                     "checks": [{"effect": "induced_class", "a": {"variant": "full"}, "b": {"variant": "no_freq"}, "metric": "top1", "null": "gain"}]})  # fmt: skip
    for planted_b, null_b, verdict in ((worse, worse, "recovered"), (worse, same, "not recovered: no gain on the null world"),
                                       (worse, better, "not recovered: no gain on the null world"), (same, worse, "not recovered: no effect where planted")):  # fmt: skip
        recs = [_records(planted, "full", 0.5, full), _records(planted, "no_freq", 0.5, planted_b), _records(null, "full", 0.5, full), _records(null, "no_freq", 0.5, null_b)]
        (res,) = check_results(recs, g3)
        assert res["verdict"] == verdict and res["null_expect"] == "gain", (verdict, res)
    assert "(expected: the same gain)" in markdown([res])
    with pytest.raises(UserError, match="null must be one of"):
        parse_grid({"axes": {"method": ["brainvis"]}, "checks": [{"effect": "shared", "a": {}, "b": {}, "metric": "top1", "null": "maybe"}]})


def test_leaderboard_shows_the_checks_and_links_the_stored_world_cards(tmp_path):
    """A grid with [[checks]] gets a "Planted effect recovered?" section; each world's card kept in the
    store (bench.world.card.keep_card) is written beside the page and linked from it."""
    import json

    from bench.results.leaderboard import write_leaderboard
    from bench.world.card import CARD_JSON, keep_card

    grid = tmp_path / "ka.toml"
    grid.write_text(
        'worlds = [{ scale = "smoke" }, { scale = "smoke", effects = { induced_class = 0 } }]\n'
        '[axes]\nmethod = ["brainvis"]\nsubject = [4]\n'
        '[[variants]]\nname = "full"\n[[variants]]\nname = "no_freq"\noptions = { use_freq = false }\n'
        '[[checks]]\nname = "frequency branch"\neffect = "induced_class"\na = { variant = "full" }\nb = { variant = "no_freq" }\nmetric = "top1"\n'
    )
    g = load_grid(str(grid))
    planted, null = world_pair(g, "induced_class")
    rng = np.random.default_rng(1)
    full = (rng.random(200) < 0.5).astype(float)
    worse = np.where(rng.random(200) < 0.4, 0.0, full)
    store = tmp_path / "store"
    (store / "records").mkdir(parents=True)
    for r in (_records(planted, "full", 0.5, full), _records(planted, "no_freq", 0.5, worse), _records(null, "full", 0.5, full), _records(null, "no_freq", 0.5, full)):
        r.update(grid="ka", profile="mini", options={"use_freq": False} if r["variant"] == "no_freq" else {})
        (store / "records" / f"{r['key']}.json").write_text(json.dumps(r))
    world = tmp_path / "world"
    world.mkdir()
    (world / CARD_JSON).write_text(json.dumps({"world_id": planted, "label": "smoke world", "stimulus_id": "s", "command": "c", "scale": "smoke", "seed": 0,
                                               "subjects": [4], "n_images": 1, "trials_per_subject": {"train": 1, "test": 1}, "effects": [],
                                               "probes_per_subject": {}, "backbones": {}}))  # fmt: skip
    keep_card(store, world, planted)
    written = write_leaderboard(store, g, tmp_path / "out", figures=False)
    page = written[0].read_text()
    assert "## Planted effect recovered?" in page and "| frequency branch | induced_class |" in page and "**recovered**" in page
    assert f"(worlds/{planted}.md)" in page and (tmp_path / "out" / "worlds" / f"{planted}.md").read_text().startswith("# World card: smoke world")
