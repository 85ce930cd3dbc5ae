"""`bench compare A B`: paired differences between two methods on the same test trials and, when
the pairs span several subjects, across subjects (one value per subject; exact sign flips, d_z)."""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from bench.metrics import METRICS, shown_metrics
from bench.results.leaderboard import load_records, records_of_grid
from bench.metrics import holm, paired_comparison, subject_comparison
from bench.errors import UserError


def _match_key(r: dict) -> tuple:
    return (str((r.get("config") or {}).get("dataset_id", "")), r["subject"], float(r["fraction"]), r["seed"])


_NAMED = re.compile(r"^\s*([^\[\]\s@]+)\s*(?:\[\s*([^\[\]]*?)\s*\])?\s*(?:@\s*([^\s]+))?\s*$")


def parse_method(name: str) -> tuple[str, str | None, float | None]:
    """``"brainvis"`` -> ``("brainvis", None, None)``; ``"brainvis [no_freq]"`` or ``"brainvis[no_freq]"``
    (the leaderboards' label of a grid variant) -> ``("brainvis", "no_freq", None)``; a trailing ``@W``
    picks the interpolation weight: ``"brainvis[full]@0"`` -> ``("brainvis", "full", 0.0)``."""
    m = _NAMED.match(name)
    w = None
    if m is not None and m.group(3) is not None:
        try:
            w = float(m.group(3))
        except ValueError:
            m = None
    if m is None:
        raise UserError(f"{name!r}: expected METHOD, METHOD[VARIANT] or either with @W, e.g. brainvis, 'brainvis[no_freq]' or 'brainvis[full]@0'")
    return m.group(1), (m.group(2) or None), w


def _preference(r: dict) -> tuple:
    """Among one side's records for one match key (all at one w): a generating run first (a
    classification-only run may skip stages, e.g. BrainVis' alignment), then the key."""
    return ((r.get("config") or {}).get("backbones") == "none", r["key"])


def compare_methods(
    store, method_a: str, method_b: str, *, subject: int | None = None, metrics: list[str] | None = None, grid: str | None = None, dataset: str | None = None,
    fraction: float | None = None,
) -> dict:
    """Per metric: mean difference A - B over paired test trials, 95% CI, permutation p-value; with
    two or more subjects also the subject-level test (:func:`~bench.metrics.subject_comparison`).

    Trials pair up when both methods ran on the same dataset, subject, data fraction and seed (hence
    the same test trials, in the same order); a trial run with several seeds is one unit (its mean over
    seeds). A method is named as the leaderboards name it: ``brainvis``, or ``brainvis[no_freq]`` for a
    grid variant, with ``@W`` for one interpolation weight (``brainvis[full]@0``); without it each side
    uses its records at the one w closest to 0.5 (``w_a``, ``w_b``), never a mix of weights. ``grid``: only the
    records that grid's leaderboard uses; ``dataset``: only that dataset id (otherwise pairs from every
    dataset are pooled, and ``datasets`` lists them); ``fraction``: only that training fraction (otherwise
    pairs from every fraction are pooled). p-values are Holm-corrected over the metrics
    compared (``p_value_holm``, per level).
    """
    from bench.plugins import load_entry_points

    load_entry_points()  # installed plugins' metric specs (direction, label)
    recs = load_records(store)
    recs = [r for r in (records_of_grid(recs, grid) if grid else recs) if r.get("status") == "ok"]
    if subject is not None:
        recs = [r for r in recs if r["subject"] == subject]
    if dataset is not None:
        recs = [r for r in recs if _match_key(r)[0] == dataset]
    if fraction is not None:
        recs = [r for r in recs if math.isclose(float(r["fraction"]), fraction)]
    by: dict = {}
    chosen_w: dict[str, float] = {}
    for m in (method_a, method_b):
        method, variant, w = parse_method(m)
        mine = [r for r in recs if r["method"] == method and (r.get("variant") or None) == variant]
        if not mine:
            known = sorted({r["method"] + (f"[{r['variant']}]" if r.get("variant") else "") for r in recs})
            what = f"method {method!r} " + (f"with variant {variant!r}" if variant else "(without a variant)")
            raise UserError(f"no records of {what} in {store}" + (f" for subject {subject}" if subject is not None else "") + f"; methods there: {', '.join(known)}")
        ws = sorted({float(r["w"]) for r in mine})
        if w is None:  # one w for every pair of a side: the one closest to 0.5
            w = min(ws, key=lambda x: (abs(x - 0.5), x))
        elif not any(math.isclose(w, x) for x in ws):
            raise UserError(f"{m!r}: no records at w = {w:g}; its records have w = {', '.join(f'{x:g}' for x in ws)}")
        chosen_w[m] = w
        mine = sorted((r for r in mine if math.isclose(float(r["w"]), w)), key=_preference)
        table: dict = {}
        for r in mine:
            table.setdefault(_match_key(r), r)
        by[m] = table
    pairs = sorted(set(by[method_a]) & set(by[method_b]))
    if not pairs:
        raise UserError(f"{method_a} and {method_b} share no (dataset, subject, fraction, seed): nothing to pair")
    names = metrics or [m.name for m in shown_metrics() if m.level == "trial"]
    out = {}
    for metric in names:
        runs: dict[tuple, list[tuple[list, list]]] = defaultdict(list)  # (dataset, subject, fraction) -> per-seed trial lists
        for key in pairs:
            ma, mb = by[method_a][key]["metrics"].get(metric), by[method_b][key]["metrics"].get(metric)
            if ma and mb and ma.get("per_trial") and mb.get("per_trial") and len(ma["per_trial"]) == len(mb["per_trial"]):
                runs[key[:3]].append((ma["per_trial"], mb["per_trial"]))
        if not runs:
            continue
        a, b, subjects = [], [], defaultdict(lambda: ([], []))
        for (ds, subj, _), seeds in sorted(runs.items()):
            if len({len(x) for x, _ in seeds}) == 1:  # one unit per trial: its mean over seeds
                ua, ub = np.mean([x for x, _ in seeds], axis=0), np.mean([y for _, y in seeds], axis=0)
            else:
                ua, ub = np.concatenate([x for x, _ in seeds]), np.concatenate([y for _, y in seeds])
            a.append(ua), b.append(ub)
            subjects[(ds, subj)][0].append(ua), subjects[(ds, subj)][1].append(ub)
        a, b = np.concatenate(a), np.concatenate(b)
        res = paired_comparison(a, b, seed=0)
        entry = {"mean_a": float(np.mean(a)), "mean_b": float(np.mean(b)), **{k: res[k] for k in ("diff", "ci_low", "ci_high", "p_value", "p_value_wilcoxon", "n")},
                 "higher_is_better": METRICS[metric].higher_is_better if metric in METRICS else True}
        if len(subjects) >= 2:
            sa = [float(np.concatenate(v[0]).mean()) for v in subjects.values()]
            sb = [float(np.concatenate(v[1]).mean()) for v in subjects.values()]
            sub = subject_comparison(sa, sb)
            entry["subjects"] = {"mean_a": float(np.mean(sa)), "mean_b": float(np.mean(sb)),
                                 **{k: sub[k] for k in ("diff", "ci_low", "ci_high", "d_z", "p_value", "test", "n")},
                                 "per_subject": [[ds, subj, x, y] for (ds, subj), x, y in zip(subjects, sa, sb)]}
        out[metric] = entry
    if not out:
        raise UserError(f"no per-trial values shared by {method_a} and {method_b} for {', '.join(names)}")
    for key, p in zip(out, holm([r["p_value"] for r in out.values()])):
        out[key]["p_value_holm"] = p
    with_subjects = [k for k in out if "subjects" in out[k]]
    for key, p in zip(with_subjects, holm([out[k]["subjects"]["p_value"] for k in with_subjects])):
        out[key]["subjects"]["p_value_holm"] = p
    return {"a": method_a, "b": method_b, "w_a": chosen_w[method_a], "w_b": chosen_w[method_b], "pairs": [list(p) for p in pairs], "datasets": sorted({p[0] for p in pairs}), "metrics": out}


def _title(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric


def compare_markdown(result: dict) -> str:
    m0 = result["metrics"]
    lines = [f"Paired comparison {result['a']} (w = {result['w_a']:g}) - {result['b']} (w = {result['w_b']:g}) over {len(result['pairs'])} matched (dataset, subject, fraction, seed) runs; datasets: {', '.join(result['datasets'])}", "",
             "Over test trials (a trial run with several seeds is one unit); p-values Holm-corrected over the metrics:", "",
             "| metric | mean A | mean B | A - B | 95% CI | p (permutation) | p (Holm) | p (Wilcoxon) | n trials |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for m, r in m0.items():
        lines.append(f"| {_title(m)} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} | [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['p_value']:.4g} | {r['p_value_holm']:.4g} | {r['p_value_wilcoxon']:.4g} | {r['n']} |")
    subj = {m: r["subjects"] for m, r in m0.items() if "subjects" in r}
    if subj:
        test = next(iter(subj.values()))["test"]
        lines += ["", f"Across subjects (one value per subject: its mean over its trials; {test}; d_z = mean / sd of the subject differences; "
                  "Student t 95% CI; p-values Holm-corrected over the metrics):", "",
                  "| metric | mean A | mean B | A - B | 95% CI | d_z | p | p (Holm) | n subjects |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for m, r in subj.items():
            ci = "–" if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
            dz = "–" if r["d_z"] is None else f"{r['d_z']:+.2f}"
            lines.append(f"| {_title(m)} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} | {ci} | {dz} | {r['p_value']:.4g} | {r['p_value_holm']:.4g} | {r['n']} |")
    return "\n".join(lines) + "\n"
