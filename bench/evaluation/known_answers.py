"""Known-answer checks: is each planted effect recovered where it is planted, and absent on its null world?

A grid's ``[[checks]]`` (see :mod:`bench.experiment.grid`) each name an effect of :mod:`bench.world.effects`,
two sides ``a`` and ``b`` (method, variant, w) and a per-trial metric. The *planted world* is the
grid's first world with the effect on; the *null world* is the grid world whose spec is the planted
one with that effect at 0. On each, the paired difference ``a - b`` over the same test trials
(same subject and fraction; a trial's values averaged over the seeds both sides ran) gets a 95% bootstrap
CI and a paired permutation p-value: both cover the sampling of test trials, with the training noise of
the seeds run averaged inside each trial (one seed: that seed's models taken as fixed).

Verdict (:data:`RULE`): *recovered* when the planted world's difference has the expected sign
with p < 0.01 and the null world shows what the check's ``null`` says: ``"none"`` (the default) no
difference (p > 0.05); ``"no_gain"`` no difference in the expected direction (the expected sign
fails or p > 0.05), for checks whose null world may rightly show harm (pooling subjects who share
nothing cannot help, and may cost); ``"gain"`` the same gain (expected sign, p < 0.05), for checks
whose effect the world's own probes show does not need the switched-off effect (a pretext on
unlabelled EEG gains from each subject's own EEG whether or not the subjects share anything): the
null world then replicates the answer instead of cancelling it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

ALPHA_PLANTED = 0.01
ALPHA_NULL = 0.05
RULE = (
    f"recovered = the difference has the expected sign with p < {ALPHA_PLANTED} on the planted world "
    f"and, on its null world, p > {ALPHA_NULL} (null \"none\") or no gain: no difference in the expected direction "
    f"with p < {ALPHA_NULL} (null \"no_gain\", where harm is possible) or the same gain: the expected sign with p < {ALPHA_NULL} "
    f"(null \"gain\", where the world's own probes show the effect without the switched-off one); paired permutation tests over the same test trials"
)
NULL_FAILS = {  # the verdict when the planted world is right and the null world is not, per null kind
    "none": "not recovered: an effect on the null world too",
    "no_gain": "not recovered: a gain on the null world too",
    "gain": "not recovered: no gain on the null world",
}
NULL_EXPECTED = {"none": "", "no_gain": " (expected: no gain)", "gain": " (expected: the same gain)"}  # the null cell's note


def null_holds(null: dict, sign: float, kind: str) -> bool:
    """Does the null world show what a check of null ``kind`` expects?"""
    gain = sign * null["diff"] > 0 and null["p"] < ALPHA_NULL
    if kind == "no_gain":
        return not gain
    if kind == "gain":
        return gain
    return null["p"] > ALPHA_NULL


def world_pair(grid, effect: str) -> tuple[str | None, str | None]:
    """(planted world id, null world id) of ``effect`` among the grid's worlds."""
    from bench.world.spec import spec_of_world

    specs = [spec_of_world(w) for w in grid.worlds]
    planted = next((s for s in specs if s.strength(effect) > 0), None)
    if planted is None:
        return None, None
    target = replace(planted, effects=tuple(sorted({**dict(planted.effects), effect: 0.0}.items())), raw_file=True)
    null = next((s for s in specs if replace(s, raw_file=True) == target), None)  # the raw file does not change the EEG
    return planted.world_id, null.world_id if null is not None else None


def _side(grid, side: dict) -> tuple[str, str | None, float | None]:
    from bench.experiment.grid import NO_W, registry_uses_w

    method = side.get("method", grid.methods[0])
    w = side.get("w")
    if w is None:
        w = NO_W
    return method, side.get("variant"), float(w) if registry_uses_w(method) else NO_W


def _options(grid, method: str, variant: str | None) -> dict:
    """The options a trial of ``method`` in ``variant`` runs with (what its records carry)."""
    v = next((v for v in grid.variants if v.name == variant), None)
    return grid.method_options(method) | (v.options if v is not None else {})


def _records(records: list[dict], dataset: str, method: str, options: dict, w: float) -> dict[tuple, dict]:
    """Records matched by what determines the trial (method, options, w), not by the variant's name:
    a trial another grid ran with the same options is the same trial."""
    out = {}
    for r in records:
        if r.get("status") != "ok" or (r.get("config") or {}).get("dataset_id") != dataset:
            continue
        if r["method"] == method and (r.get("options") or {}) == options and abs(float(r["w"]) - w) < 1e-9:
            out.setdefault((r["subject"], float(r["fraction"]), r["seed"]), r)
    return out


def paired_values(records: list[dict], dataset: str, a: tuple, b: tuple, metric: str, grid=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-trial values of ``metric`` for sides ``a`` and ``b`` (method, variant, w) on the same test
    trials of ``dataset``, and the number of runs paired. A test trial is one unit: where both sides ran
    several seeds of a (subject, fraction), its value is the mean over those seeds (so the tests resample
    test trials, with the seeds' training noise averaged inside each, never one trial counted per seed);
    the (subject, fraction) groups are concatenated. ``grid`` gives the variants' options (without it: no options)."""

    def side_records(side: tuple) -> dict[tuple, dict]:
        method, variant, w = side
        return _records(records, dataset, method, _options(grid, method, variant) if grid is not None else {}, w)

    ra, rb = side_records(a), side_records(b)
    groups: dict[tuple, list[tuple[list, list]]] = {}
    for key in sorted(set(ra) & set(rb)):
        ma, mb = ra[key]["metrics"].get(metric), rb[key]["metrics"].get(metric)
        if ma and mb and ma.get("per_trial") and mb.get("per_trial") and len(ma["per_trial"]) == len(mb["per_trial"]):
            groups.setdefault(key[:2], []).append((ma["per_trial"], mb["per_trial"]))
    xa, xb, runs = [], [], 0
    for pairs in groups.values():
        if len({len(pa) for pa, _ in pairs}) != 1:
            raise ValueError(f"{metric}: the seeds of one (subject, fraction) scored different numbers of test trials")
        xa.append(np.mean([pa for pa, _ in pairs], axis=0))
        xb.append(np.mean([pb for _, pb in pairs], axis=0))
        runs += len(pairs)
    if not xa:
        return np.array([]), np.array([]), 0
    return np.concatenate(xa).astype(float), np.concatenate(xb).astype(float), runs


def check_results(records: list[dict], grid) -> list[dict]:
    """One result per check: the paired difference on the planted and on the null world, and the verdict."""
    from bench.metrics import paired_comparison

    out = []
    for c in grid.checks:
        a, b = _side(grid, c["a"]), _side(grid, c["b"])
        planted, null = world_pair(grid, c["effect"])
        sign = 1.0 if c.get("expect", "positive") == "positive" else -1.0
        kind = c.get("null", "none")
        res = {"name": c.get("name") or c["effect"], "effect": c["effect"], "metric": c["metric"], "expect": c.get("expect", "positive"),
               "null_expect": kind, "a": a, "b": b, "planted_world": planted, "null_world": null}  # fmt: skip
        for where, dataset in (("planted", planted), ("null", null)):
            xa, xb, runs = paired_values(records, dataset, a, b, c["metric"], grid) if dataset else (np.array([]), np.array([]), 0)
            if len(xa) < 2:
                res[where] = None
                continue
            r = paired_comparison(xa, xb, seed=0)
            res[where] = {"diff": float(r["diff"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "p": float(r["p_value"]),
                          "n": int(r["n"]), "runs": runs, "mean_a": float(xa.mean()), "mean_b": float(xb.mean())}  # fmt: skip
        p, n = res["planted"], res["null"]
        if p is None or n is None:
            res["verdict"] = "incomplete (records missing)"
        elif sign * p["diff"] > 0 and p["p"] < ALPHA_PLANTED and null_holds(n, sign, kind):
            res["verdict"] = "recovered"
        elif sign * p["diff"] < 0 and p["p"] < ALPHA_PLANTED:
            res["verdict"] = "not recovered: the opposite effect where planted"
        elif not (sign * p["diff"] > 0 and p["p"] < ALPHA_PLANTED):
            res["verdict"] = "not recovered: no effect where planted"
        else:
            res["verdict"] = NULL_FAILS[kind]
        out.append(res)
    return out


def _label(side: tuple) -> str:
    method, variant, w = side
    return method + (f" [{variant}]" if variant else "") + (f" w={w:g}" if w is not None else "")


def markdown(results: list[dict], labels: dict[str, str] | None = None) -> str:
    """The leaderboard section "planted effect recovered?"."""
    labels = labels or {}
    lines = [
        "## Planted effect recovered?",
        "",
        f"Paired difference a - b over the same test trials (a trial's values averaged over the seeds both sides ran; "
        f"the interval and p cover the sampling of test trials, the trained models taken as fixed), 95% bootstrap CI, "
        f"paired permutation p. {RULE}.",
        "",
        "| check | effect | a - b | metric | planted world: a - b [95% CI], p | null world: a - b [95% CI], p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(r: dict | None) -> str:
        if r is None:
            return "–"
        runs = f", {r['runs']} runs averaged" if r.get("runs", 1) > 1 else ""
        return f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], p = {r['p']:.3g} (n = {r['n']}{runs})"

    for r in results:
        comp = f"{_label(r['a'])} - {_label(r['b'])}"
        expected = NULL_EXPECTED[r.get("null_expect", "none")]
        lines.append(f"| {r['name']} | {r['effect']} | {comp} | {r['metric']} | {cell(r['planted'])} | {cell(r['null'])}{expected} | **{r['verdict']}** |")
    worlds = {w for r in results for w in (r["planted_world"], r["null_world"]) if w}
    if worlds:
        lines += ["", "Worlds: " + "; ".join(f"`{w}` ({labels.get(w, w)})" for w in sorted(worlds)) + "."]
    return "\n".join(lines) + "\n"
