"""`bench compare A B`: paired differences between two methods on the same test trials."""

from __future__ import annotations

import numpy as np

from bench.leaderboard import COLUMNS, SET_LEVEL, load_records, records_of_grid
from bench.metrics import paired_comparison
from brainvis.errors import UserError


def _match_key(r: dict) -> tuple:
    return (str((r.get("config") or {}).get("dataset_id", "")), r["subject"], float(r["fraction"]), r["seed"])


def _preference(r: dict) -> tuple:
    """Among one method's records for one match key: w closest to 0.5, then a generating run
    (a classification-only run may skip stages, e.g. BrainVis' alignment), then the key."""
    return (abs(r["w"] - 0.5), (r.get("config") or {}).get("backbones") == "none", r["key"])


def compare_methods(
    store, method_a: str, method_b: str, *, subject: int | None = None, metrics: list[str] | None = None, grid: str | None = None, dataset: str | None = None
) -> dict:
    """Per metric: mean difference A - B over paired test trials, 95% CI, permutation p-value.

    Trials pair up when both methods ran on the same dataset, subject, data fraction and seed (hence
    the same test trials, in the same order). For methods with several w, the record closest to
    w = 0.5 is used. ``grid``: only the records that grid's leaderboard uses; ``dataset``: only that
    dataset id (otherwise pairs from every dataset are pooled, and ``datasets`` lists them).
    """
    recs = load_records(store)
    recs = [r for r in (records_of_grid(recs, grid) if grid else recs) if r.get("status") == "ok"]
    if subject is not None:
        recs = [r for r in recs if r["subject"] == subject]
    if dataset is not None:
        recs = [r for r in recs if _match_key(r)[0] == dataset]
    by = {}
    for m in (method_a, method_b):
        mine = sorted((r for r in recs if r["method"] == m and not r.get("variant")), key=_preference)
        if not mine:
            known = sorted({r["method"] for r in recs})
            raise UserError(f"no records of method {m!r} in {store}" + (f" for subject {subject}" if subject is not None else "") + f"; methods there: {', '.join(known)}")
        table: dict = {}
        for r in mine:
            table.setdefault(_match_key(r), r)
        by[m] = table
    pairs = sorted(set(by[method_a]) & set(by[method_b]))
    if not pairs:
        raise UserError(f"{method_a} and {method_b} share no (dataset, subject, fraction, seed): nothing to pair")
    names = metrics or [m for m in COLUMNS if m not in SET_LEVEL]
    out = {}
    for metric in names:
        a, b = [], []
        for key in pairs:
            ma, mb = by[method_a][key]["metrics"].get(metric), by[method_b][key]["metrics"].get(metric)
            if ma and mb and ma.get("per_trial") and mb.get("per_trial") and len(ma["per_trial"]) == len(mb["per_trial"]):
                a += ma["per_trial"]
                b += mb["per_trial"]
        if not a:
            continue
        res = paired_comparison(np.asarray(a), np.asarray(b), seed=0)
        out[metric] = {"mean_a": float(np.mean(a)), "mean_b": float(np.mean(b)), **{k: res[k] for k in ("diff", "ci_low", "ci_high", "p_value", "p_value_wilcoxon", "n")}, "higher_is_better": COLUMNS[metric][1]}
    if not out:
        raise UserError(f"no per-trial values shared by {method_a} and {method_b} for {', '.join(names)}")
    return {"a": method_a, "b": method_b, "pairs": [list(p) for p in pairs], "datasets": sorted({p[0] for p in pairs}), "metrics": out}


def compare_markdown(result: dict) -> str:
    lines = [f"Paired comparison {result['a']} - {result['b']} over {len(result['pairs'])} matched (dataset, subject, fraction, seed) runs; datasets: {', '.join(result['datasets'])}", "",
             "| metric | mean A | mean B | A - B | 95% CI | p (permutation) | p (Wilcoxon) | n |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for m, r in result["metrics"].items():
        lines.append(f"| {COLUMNS[m][0]} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} | [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['p_value']:.4g} | {r['p_value_wilcoxon']:.4g} | {r['n']} |")
    return "\n".join(lines) + "\n"
