"""Leaderboards regenerated purely from stored trial records: markdown (or LaTeX / CSV) tables,
plots and a reconstruction gallery.

Rows group records by (method, variant, fraction, w); values pool the test trials of every matching
record (a trial run with several seeds is one unit, its mean over seeds; subjects are pooled for the
average table), with the interval of the metric's kind (:mod:`bench.metrics.intervals`: Wilson for
rates, Student t for means) recomputed from the stored per-trial values, so older records get it too.
Set-level metrics (IS, FID, KID) are averaged over records; their stored jackknife interval is shown
when a row rests on one record (older records' percentile intervals are not shown). The best EEG
method per column is bold; reference rows (oracles, chance) are italic and never bold. A comparison
section tests the best against the others (paired across subjects where there are several, over
trials otherwise; Holm-corrected). Output is byte-identical for the same records: no clock, no
randomness beyond fixed seeds, stable ordering.
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.metrics import METRICS, shown_metrics
from bench.metrics.intervals import CI_METHODS, draws_per_trial, interval_of, trial_interval

if TYPE_CHECKING:
    from bench.experiment.grid import Grid

SET_INTERVALS = {"jackknife_log", "jackknife"}  # stored set-level intervals shown (older: percentile bootstrap, not shown)
PUBLISHED_FILE = Path(__file__).resolve().parent / "published.toml"


def _set_level(metric: str) -> bool:
    """One value per set of images (IS, FID, KID): no per-trial values, no paired comparison."""
    return metric in METRICS and METRICS[metric].level == "set"


@lru_cache(maxsize=1)
def published() -> dict:
    """The published numbers (:data:`PUBLISHED_FILE`): ``{"source", "note", "rows": [(method, setting, {metric: value})]}``."""
    data = tomllib.loads(PUBLISHED_FILE.read_text(encoding="utf-8"))
    rows = [(r["method"], r["setting"], {k: v for k, v in r.items() if k not in ("method", "setting")}) for r in data["rows"]]
    return {"source": data["source"], "note": data.get("note", ""), "rows": rows}


def reference_methods() -> frozenset[str]:
    """Names of reference rows (chance, oracles): the registered methods of kind "reference row"."""
    from bench.methods.registry import load_builtin_methods

    return frozenset(n for n, cls in load_builtin_methods().items() if cls.kind == "reference row")


def load_records(store: str | Path) -> list[dict]:
    """All usable records of a store, sorted by key (malformed files are skipped with a warning)."""
    from bench.results.store import read_records

    return read_records(Path(store) / "records")


def _config(r: dict) -> dict:
    return r.get("config") or {}


@dataclass(frozen=True)
class RowKey:
    method: str
    variant: str
    fraction: float
    w: float | None
    dataset: str = ""

    def label(self) -> str:
        return self.method + (f" [{self.variant}]" if self.variant else "")


def resolve_grid(grid: "str | Grid") -> "tuple[str, Grid | None]":
    """(name, Grid) for a shipped grid's name, a grid file's path or a Grid; (name, None) for a name
    no grid file answers to (a store's records may name a grid that is not shipped)."""
    from bench.experiment.grid import Grid, load_grid
    from bench.errors import UserError

    if isinstance(grid, Grid):
        return grid.name, grid
    try:
        g = load_grid(grid, check=False)
    except UserError:
        return str(grid), None
    return g.name, g


def dataset_labels(grid: "str | Grid") -> dict[str, str]:
    """World id -> a readable name ("mini world, block drift") for a grid that runs on several synthetic worlds."""
    from bench.world.spec import spec_of_world
    from bench.errors import UserError

    g = resolve_grid(grid)[1]
    labels = {}
    for w in g.worlds if g else ():
        try:
            spec = spec_of_world(w)
            labels[spec.world_id] = spec.label()
        except (UserError, TypeError, ValueError):
            continue  # a bad world entry: `bench run` reports it; here its records just keep their id
    return labels


def _row_key(rec: dict, uses_w: dict[str, bool]) -> RowKey:
    variant = rec.get("variant") or ""
    if not variant and rec.get("options"):
        variant = ",".join(f"{k}={v}" for k, v in sorted(rec["options"].items()))
    dataset = str(_config(rec).get("dataset_id", ""))
    return RowKey(rec["method"], variant, float(rec["fraction"]), float(rec["w"]) if uses_w.get(rec["method"], False) else None, dataset)


def _uses_w(records: list[dict]) -> dict[str, bool]:
    """A method 'uses w' when its records carry more than one w (grids collapse w otherwise)."""
    ws: dict[str, set] = defaultdict(set)
    for r in records:
        ws[r["method"]].add(r["w"])
    return {m: len(v) > 1 for m, v in ws.items()}


def _subject_units(recs: list[dict], metric: str) -> dict[int, tuple[np.ndarray, int]]:
    """Per subject: the per-trial values of ``metric`` with a trial repeated over seeds as one unit (its
    mean over seeds, when the seeds' trial lists have one length), and the number of seeds averaged."""
    runs: dict[int, list[np.ndarray]] = defaultdict(list)
    for r in sorted(recs, key=lambda r: (r["seed"], r["key"])):
        v = r.get("metrics", {}).get(metric) or {}
        if v.get("per_trial"):
            runs[r["subject"]].append(np.asarray(v["per_trial"], dtype=float))
    out = {}
    for subject, xs in sorted(runs.items()):
        out[subject] = (np.mean(xs, axis=0), len(xs)) if len({len(x) for x in xs}) == 1 else (np.concatenate(xs), 1)
    return out


def _cell(recs: list[dict], metric: str) -> dict | None:
    """Value, interval (lo, hi; None where not shown), its method, and n (trials, or records for set-level)."""
    vals = [r["metrics"][metric] for r in recs if metric in r.get("metrics", {})]
    if not vals:
        return None
    if not _set_level(metric) and all(v.get("per_trial") for v in vals):
        units = _subject_units(recs, metric)
        pooled = np.concatenate([u for u, _ in units.values()])
        seeds = min(k for _, k in units.values())
        iv = trial_interval(metric, pooled, draws_per_unit=seeds * draws_per_trial(vals[0]))
        value = vals[0]["value"] if len(vals) == 1 else float(pooled.mean())
        return {"value": value, "lo": iv["ci_low"], "hi": iv["ci_high"], "method": iv["ci_method"], "n": len(pooled)}
    if len(vals) == 1:
        v = vals[0]
        shown = v.get("ci_method") in SET_INTERVALS and v.get("ci_low") is not None
        return {"value": v["value"], "lo": v["ci_low"] if shown else None, "hi": v["ci_high"] if shown else None,
                "method": v.get("ci_method") if shown else None, "n": 1, "stale": not shown and v.get("ci_low") is not None}
    return {"value": float(np.mean([v["value"] for v in vals])), "lo": None, "hi": None, "method": None, "n": len(vals)}


def _fmt(cell: dict | None, fmt: str, bold: bool, italic: bool) -> str:
    if cell is None:
        return "–"
    s = fmt.format(cell["value"])
    if cell["lo"] is not None and cell["hi"] is not None:
        s += f" [{fmt.format(cell['lo'])}, {fmt.format(cell['hi'])}]"
    if bold:
        s = f"**{s}**"
    elif italic:
        s = f"*{s}*"
    return s


def group_rows(records: list[dict], datasets: list[str] = ()) -> tuple[list[RowKey], dict[RowKey, list[dict]]]:
    """Rows in display order and the records behind each; ``datasets`` in the order to show them (others follow, sorted)."""
    uses_w = _uses_w(records)
    groups: dict[RowKey, list[dict]] = defaultdict(list)
    for r in records:
        groups[_row_key(r, uses_w)].append(r)
    rank = {d: i for i, d in enumerate(datasets)}
    refs = reference_methods()
    order = sorted(groups, key=lambda k: (rank.get(k.dataset, len(rank)), k.dataset, k.method in refs, k.method, k.variant, k.fraction, -1 if k.w is None else k.w))
    return order, groups


def build_table(records: list[dict], metrics: list[str], datasets: list[str] = ()) -> tuple[list[RowKey], dict[RowKey, dict[str, dict | None]]]:
    order, groups = group_rows(records, datasets)
    return order, {k: {m: _cell(groups[k], m) for m in metrics} for k in order}


def _best(order: list[RowKey], cells: dict, metric: str, higher: bool) -> set[RowKey]:
    """Best EEG method per dataset (reference rows excluded)."""
    best: set[RowKey] = set()
    refs = reference_methods()
    for dataset in {k.dataset for k in order}:
        cand = [(c[metric]["value"], k) for k, c in cells.items() if k.dataset == dataset and c[metric] is not None and k.method not in refs]
        if cand:
            target = max(v for v, _ in cand) if higher else min(v for v, _ in cand)
            best |= {k for v, k in cand if v == target}
    return best


def _present_metrics(records: list[dict]) -> list[str]:
    have = {m for r in records for m in r.get("metrics", {})}
    return [m.name for m in shown_metrics() if m.name in have]


def _axes_columns(order: list[RowKey]) -> list[str]:
    cols = ["dataset"] if len({k.dataset for k in order}) > 1 else []
    if len({k.fraction for k in order}) > 1:
        cols.append("fraction")
    if any(k.w is not None for k in order):
        cols.append("w")
    return cols


def markdown_table(records: list[dict], metrics: list[str], chance: dict[str, float], labels: dict[str, str] | None = None) -> str:
    order, cells = build_table(records, metrics, list(labels or {}))
    axes = _axes_columns(order)
    head = ["method"] + axes + [METRICS[m].title for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * (1 + len(axes)) + ["---:"] * len(metrics)) + "|"]
    best = {m: _best(order, cells, m, METRICS[m].higher_is_better) for m in metrics}
    refs = reference_methods()
    for k in order:
        ref = k.method in refs
        row = [f"*{k.label()}*" if ref else k.label()]
        if "dataset" in axes:
            row.append((labels or {}).get(k.dataset, k.dataset))
        if "fraction" in axes:
            row.append(f"{k.fraction:g}")
        if "w" in axes:
            row.append("–" if k.w is None else f"{k.w:g}")
        row += [_fmt(cells[k][m], METRICS[m].fmt, k in best[m], ref) for m in metrics]
        lines.append("| " + " | ".join(row) + " |")
    if chance:
        row = ["*chance (analytic)*"] + [""] * len(axes) + [f"*{METRICS[m].format(chance[m])}*" if m in chance else "–" for m in metrics]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def dataset_comparison(records: list[dict], metrics: list[str], datasets: list[str], labels: dict[str, str] | None = None) -> str | None:
    """Per row (method, variant, fraction, w): the change of each per-trial metric from ``datasets[0]``
    to ``datasets[1]``, with a 95% bootstrap CI, a permutation-test p-value (independent samples: the two
    datasets have different test trials) and its Holm correction over the table. None unless both
    datasets have such rows."""
    from bench.metrics import holm, independent_comparison

    labels = labels or {}
    a, b = datasets
    order, groups = group_rows(records, datasets)
    per_trial = [m for m in metrics if not _set_level(m)]
    by_row: dict[tuple, dict[str, list[dict]]] = defaultdict(dict)
    for k in order:
        by_row[(k.method, k.variant, k.fraction, k.w)][k.dataset] = groups[k]
    rows = []
    for (method, variant, fraction, w), sets in by_row.items():
        if a not in sets or b not in sets:
            continue
        tests = []
        for m in per_trial:
            xa, xb = _trial_units(sets[a], sets[b], m)
            tests.append(None if xa is None else (m, independent_comparison(xb, xa, n_resamples=9999, n_boot=2000, seed=0)))
        rows.append(((method, variant, fraction, w), tests))
    if not rows:
        return None
    adjusted = iter(holm([t[1]["p_value"] for _, tests in rows for t in tests if t is not None]))
    lines = []
    several_fractions, any_w = len({k.fraction for k in order}) > 1, any(k.w is not None for k in order)
    refs = reference_methods()
    for (method, variant, fraction, w), tests in rows:
        cells = []
        for t in tests:
            if t is None:
                cells.append("–")
                continue
            m, c = t
            f = METRICS[m].fmt
            cells.append(f"{c['diff']:+.3f} [{f.format(c['ci_low'])}, {f.format(c['ci_high'])}], p={c['p_value']:.3g} (Holm {next(adjusted):.3g})")
        label = method + (f" [{variant}]" if variant else "")
        label = f"*{label}*" if method in refs else label
        extra = ([f"{fraction:g}"] if several_fractions else []) + ([("–" if w is None else f"{w:g}")] if any_w else [])
        lines.append("| " + " | ".join([label, *extra, *cells]) + " |")
    axes = (["fraction"] if several_fractions else []) + (["w"] if any_w else [])
    head = ["method", *axes, *[f"Δ {METRICS[m].label}" for m in per_trial]]
    intro = (
        f"Change from **{labels.get(a, a)}** to **{labels.get(b, b)}** (the second minus the first), per method: mean over test "
        "trials (subjects both datasets have; each trial's value averaged over seeds), 95% percentile-bootstrap CI (each "
        "dataset's trials resampled on their own), and a two-sided permutation-test p-value for independent samples (the "
        "datasets have different test trials), with its Holm correction over every p-value of this table. On small binary "
        "samples the bootstrap CI can exclude 0 while p > 0.05: judge significance by p."
    )
    return "\n".join([intro, "", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * (1 + len(axes)) + ["---:"] * len(per_trial)) + "|", *lines])


def _trial_units(recs_a: list[dict], recs_b: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """Per-trial values of ``metric`` for the subjects both record sets cover; a trial repeated over
    seeds is one unit (its mean over seeds), so seeds do not pass for independent trials."""
    sa, sb = _subject_units(recs_a, metric), _subject_units(recs_b, metric)
    common = sorted(set(sa) & set(sb))
    if not common:
        return None, None
    return np.concatenate([sa[s][0] for s in common]), np.concatenate([sb[s][0] for s in common])


def method_comparisons(records: list[dict], metrics: list[str], labels: dict[str, str] | None = None) -> str | None:
    """Per per-trial metric, the best EEG row of the main table against every other EEG row of its
    dataset at the same fraction and w: paired across subjects (:func:`~bench.metrics.subject_comparison`:
    exact sign flips up to 13 subjects, Wilcoxon above; d_z) when the pair shares two or more subjects,
    over test trials (:func:`~bench.metrics.paired_comparison`) otherwise; Holm over the table."""
    from bench.metrics import holm, paired_comparison, subject_comparison

    labels = labels or {}
    order, cells = build_table(records, metrics, list(labels))
    _, groups = group_rows(records, list(labels))
    several = len({k.dataset for k in order}) > 1
    refs = reference_methods()
    tests = []
    for m in (m for m in metrics if not _set_level(m)):
        bold = _best(order, cells, m, METRICS[m].higher_is_better)
        for dataset in dict.fromkeys(k.dataset for k in order):
            best = next((k for k in order if k in bold and k.dataset == dataset), None)
            if best is None:
                continue
            for other in order:
                if other == best or other.method in refs or cells[other][m] is None:
                    continue
                if (other.dataset, other.fraction, other.w) != (best.dataset, best.fraction, best.w):
                    continue
                ub, uo = _subject_units(groups[best], m), _subject_units(groups[other], m)
                common = [s for s in sorted(set(ub) & set(uo)) if len(ub[s][0]) == len(uo[s][0])]
                if not common:
                    continue
                if len(common) >= 2:
                    r = subject_comparison([ub[s][0].mean() for s in common], [uo[s][0].mean() for s in common])
                    level = "subjects"
                else:
                    x, y = ub[common[0]][0], uo[common[0]][0]
                    r = paired_comparison(x, y, n_resamples=9999, n_boot=2000, seed=0)
                    sd = float(np.std(x - y, ddof=1)) if x.size > 1 else 0.0
                    r["d_z"] = float(np.mean(x - y) / sd) if sd > 0 else None
                    level = "trials"
                tests.append((m, best, other, level, r))
    if not tests:
        return None
    adjusted = holm([t[4]["p_value"] for t in tests])
    levels = {t[3] for t in tests}
    head = ["metric", *(["dataset"] if several else []), "best", "vs", "Δ (best − other)", "95% CI", "d_z", "p", "p (Holm)", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * (3 + several) + ["---:"] * 6) + "|"]
    for (m, best, other, level, r), p_holm in zip(tests, adjusted):
        ci = "–" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        dz = "–" if r.get("d_z") is None else f"{r['d_z']:+.2f}"
        n = f"{r['n']} {'subjects' if level == 'subjects' else 'trials'}"
        row = [METRICS[m].label, *([labels.get(best.dataset, best.dataset)] if several else []), best.label(), other.label(),
               f"{r['diff']:+.3f}", ci, dz, f"{r['p_value']:.3g}", f"{p_holm:.3g}", n]
        lines.append("| " + " | ".join(row) + " |")
    how = []
    if "subjects" in levels:
        how.append("across subjects (one value per subject: its mean over test trials, seeds averaged): mean difference, Student t "
                   f"95% CI, d_z = mean / sd of the subject differences, and an exact sign-flip permutation p-value (Wilcoxon signed-rank above 13 subjects)")
    if "trials" in levels:
        how.append("over the paired test trials of the one subject (seeds averaged): mean difference, 95% percentile-bootstrap CI, "
                   "d_z over trials, and a sign-flip permutation p-value (9,999 resamples)")
    intro = ("In each column, the best EEG method (bold above) against every other EEG method of its dataset at the same fraction and w, "
             + "; ".join(how) + f". Two-sided; Holm-corrected over the {len(tests)} comparisons of this table. Set-level metrics (IS, FID, KID) are not compared here.")
    return "\n".join([intro, "", *lines])


def _chance(records: list[dict]) -> dict[str, float]:
    """Analytic chance of the classification columns (k / number of classes, as each record's top-k
    states it; records from before that field: EEG-CVPR40's class count) and of N-way top-K."""
    from bench.data.classes import N_CLASSES

    out: dict[str, float] = {}
    n_classes = next((r["metrics"]["top1"]["n_classes"] for r in records if "n_classes" in r.get("metrics", {}).get("top1", {})), N_CLASSES)
    out.update({"top1": 1 / n_classes, "top5": 5 / n_classes})
    for r in records:
        m = r.get("metrics", {}).get("n_way_top_k")
        if m and "chance" in m:
            out["n_way_top_k"] = m["chance"]
            break
    return out


def _protocol(records: list[dict], grid: str, audit: dict | None, labels: dict[str, str] | None = None, about: str = "") -> list[str]:
    first_nway = next((r["metrics"]["n_way_top_k"] for r in records if "n_way_top_k" in r.get("metrics", {})), None)
    ssim = next((r["metrics"]["ssim"] for r in records if "ssim" in r.get("metrics", {})), None)
    isc = next((r["metrics"]["inception_score"] for r in records if "inception_score" in r.get("metrics", {})), None)
    datasets = sorted({_config(r).get("dataset_id", "?") for r in records})
    backbones = sorted({json.dumps(_config(r).get("backbone_ids", {}), sort_keys=True) for r in records})
    commits = sorted({(r.get("git_commit") or "unknown")[:12] for r in records})
    seeds = sorted({r["seed"] for r in records})
    subjects = sorted({r["subject"] for r in records})
    last = max((r.get("finished") or "" for r in records), default="")[:10]
    lines = [f"- grid `{grid}`; {len(records)} trial records; subjects {subjects}; seeds {seeds}"]
    if about:
        lines.append(f"- about the grid: {about}")
    if first_nway:
        lines.append(
            f"- N-way top-K: N={first_nway.get('n')} (effective {first_nway.get('n_effective')}"
            + (", clamped to the evaluation classifier's classes" if first_nway.get("clamped") else "")
            + f"), K={first_nway.get('k')}, {first_nway.get('trials')} draws per image, seed {first_nway.get('seed')}; reference class = the classifier's argmax on the ground-truth image"
        )
    if isc:
        lines.append(f"- Inception Score: torch-fidelity, generated images only, extractor `{isc.get('extractor')}`, splits {isc.get('splits')}")
    if ssim:
        lines.append(f"- SSIM: scikit-image, uint8 RGB, data_range 255, at {ssim.get('resolution')} px; CS: cosine of CLIP image embeddings; FID: torch-fidelity vs the matched ground-truth test images")
    kid = next((r["metrics"]["kid"] for r in records if "kid" in r.get("metrics", {})), None)
    if kid:
        lines.append(f"- KID: {kid.get('estimator')}, {kid.get('kernel')} kernel degree {kid.get('degree')}, coef0 {kid.get('coef0'):g}, "
                     f"gamma 1/dim; subset size {kid.get('subset_size')} trials (all), one subset")
    lines += _interval_lines(records)
    lines.append(f"- dataset: {', '.join(d + (f' ({labels[d]})' if labels and d in labels else '') for d in datasets)}")
    for b in backbones:
        lines.append(f"- backbones: `{b}`" if b != "{}" else "- backbones: none (classification only)")
    lines.append(f"- code: git {', '.join(commits)}; latest record {last}")
    audits = audit if isinstance(audit, list) else [audit] if audit is not None else []
    for a in audits:
        flagged = ", ".join(a.get("flagged_probes", [])) or "none"
        name = a.get("dataset_id", "this dataset") + (f" ({labels[a['dataset_id']]})" if labels and a.get("dataset_id") in labels else "")
        lines.append(f"- leakage audit of {name}: **{a.get('verdict', '?')}** (flagged probes: {flagged}; rule: {a.get('rule', '')})")
    if not audits:
        lines.append("- leakage audit: not run for this dataset (`bench audit --data DIR --json <store>/audit.json`)")
    return lines


def _interval_lines(records: list[dict]) -> list[str]:
    """The protocol's statement of which interval each metric column uses (and what older records lack)."""
    def shown(m: str) -> bool:  # set-level: only where a record carries a jackknife interval
        return not _set_level(m) or any((_cell([r], m) or {}).get("method") for r in records if m in r.get("metrics", {}))

    by_method: dict[str, list[str]] = defaultdict(list)
    for m in _present_metrics(records):
        if shown(m):
            by_method[interval_of(m)].append(METRICS[m].label)
    lines = [f"- 95% intervals, {', '.join(cols)}: {CI_METHODS[method]}" for method, cols in by_method.items()]
    lines.append("- a row pools its records' test trials (a trial run with several seeds is one unit, its mean over seeds; the average "
                 "table pools the subjects' trials, so with equal test sets its value is the mean of the per-subject means); "
                 "set-level metrics (IS, FID, KID) of rows with several records are means over records, without an interval")
    stale = sorted({METRICS[m].label for r in records for m in r.get("metrics", {}) if _set_level(m)
                    if (_cell([r], m) or {}).get("stale")})
    if stale:
        lines.append(f"- {', '.join(stale)}: records scored before the jackknife intervals carry percentile-bootstrap intervals (a resample "
                     "repeats images, which lowers IS and raises FID, so they could exclude the point value); they are not shown: rescore the records")
    fid = next((r["metrics"]["fid"] for r in records if (r.get("metrics", {}).get("fid") or {}).get("n_below_dim")), None)
    if fid:
        lines.append(f"- FID from {min(fid['count_generated'], fid['count_reference'])} images in {fid['dim']} feature dimensions (fewer images than "
                     "dimensions): its small-sample bias can exceed its value, so compare FIDs only at equal n; KID is unbiased")
    return lines


def _grid_text(grid: "str | Grid") -> str:
    """A grid's description and note, as written in its TOML file."""
    g = resolve_grid(grid)[1]
    return " ".join(t for t in (g.description, g.note) if t) if g else ""


def _published_table() -> str:
    pub = published()
    metrics = [m.name for m in shown_metrics() if any(m.name in vals for _, _, vals in pub["rows"])]
    lines = ["| method | setting | " + " | ".join(METRICS[m].label for m in metrics) + " |", "|---|---|" + "|".join(["---:"] * len(metrics)) + "|"]
    for name, setting, vals in pub["rows"]:
        lines.append(f"| {name} | {setting} | " + " | ".join(f"{vals[m]:g}" if m in vals else "–" for m in metrics) + " |")
    return "\n".join(lines) + f"\n\nSource: {pub['source']}. {pub['note']}"


def render_markdown(records: list[dict], grid: str, *, audit: dict | None = None, plots: list[str] = (), gallery: str | None = None, labels: dict[str, str] | None = None, about: str = "",
                    checks: str | None = None, cards: dict[str, str] | None = None) -> str:
    """The leaderboard page. ``checks``: the known-answer section (see :mod:`bench.evaluation.known_answers`);
    ``cards``: world id -> relative link of its world card."""
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    metrics = _present_metrics(ok)
    chance = _chance(ok)
    synthetic = any(str(_config(r).get("dataset_id", "")).startswith("cvpr40-synth") for r in ok)
    out = [f"# Leaderboard: `{grid}`", ""]
    if synthetic:
        out += ["> **Synthetic data.** These numbers come from the synthetic EEG-CVPR40-format world and the mini backbones; they test the pipeline and the protocol and are **not comparable to published numbers**.", ""]
    subjects = sorted({r["subject"] for r in ok})
    if len(subjects) > 1:
        out += ["## Average over subjects", "", markdown_table(ok, metrics, chance, labels), ""]
    for s in subjects:
        out += [f"## Subject {s}", "", markdown_table([r for r in ok if r["subject"] == s], metrics, chance, labels), ""]
    datasets = list(dict.fromkeys(k.dataset for k in group_rows(ok, list(labels or {}))[0]))  # display order
    if checks:
        out += [checks]
    comparisons = method_comparisons(ok, metrics, labels)
    if comparisons:
        out += ["## Comparisons", "", comparisons, ""]
    if len(datasets) == 2:
        comparison = dataset_comparison(ok, metrics, datasets, labels)
        if comparison:
            out += ["## Between the two datasets", "", comparison, ""]
    if plots or gallery:
        out += ["## Figures", ""]
        out += [f"![{p}]({p})" for p in plots]
        if gallery:
            out += ["", f"Reconstructions (ground truth | stage 1 | final) for fixed test trials: ![gallery]({gallery})"]
        out += [""]
    out += ["## As published (not measured here; not comparable to the tables above)", "", _published_table(), ""]
    out += ["## Protocol", ""] + _protocol(ok, grid, audit, labels, about) + [""]
    if cards:
        out += ["World cards (planted effects, their strengths, the world's own probe figures and the expected outcome of each check): "
                + "; ".join(f"[{(labels or {}).get(w, w)}]({link})" for w, link in cards.items()), ""]
    if failed:
        out += [f"Failed trials (not in the tables): {', '.join(sorted(r['key'] for r in failed))}", ""]
    order, groups = group_rows(ok, list(labels or {}))
    out += ["## Records", "", "Every number above is computed from these trial records (`records/<key>.json`):", ""]
    for k in order:
        axes = f"fraction {k.fraction:g}" + ("" if k.w is None else f", w {k.w:g}") + (f", {(labels or {}).get(k.dataset, k.dataset)}" if len({o.dataset for o in order}) > 1 else "")
        out.append(f"- {k.label()} ({axes}): {', '.join(sorted(r['key'] for r in groups[k]))}")
    return "\n".join(out) + "\n"


def render_latex(records: list[dict], labels: dict[str, str] | None = None) -> str:
    ok = [r for r in records if r.get("status") == "ok"]
    metrics = _present_metrics(ok)
    order, cells = build_table(ok, metrics, list(labels or {}))
    axes = _axes_columns(order)
    best = {m: _best(order, cells, m, METRICS[m].higher_is_better) for m in metrics}
    arrows = {True: "$\\uparrow$", False: "$\\downarrow$"}
    head = ["Method"] + [a.capitalize() for a in axes] + [f"{METRICS[m].label} {arrows[METRICS[m].higher_is_better]}" for m in metrics]
    lines = ["\\begin{tabular}{" + "l" * (1 + len(axes)) + "r" * len(metrics) + "}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule"]
    for k in order:
        row = [k.label().replace("_", "\\_")]
        if "dataset" in axes:
            row.append((labels or {}).get(k.dataset, k.dataset).replace("_", "\\_"))
        if "fraction" in axes:
            row.append(f"{k.fraction:g}")
        if "w" in axes:
            row.append("--" if k.w is None else f"{k.w:g}")
        for m in metrics:
            c = cells[k][m]
            if c is None:
                row.append("--")
                continue
            s = METRICS[m].format(c["value"])
            if c["lo"] is not None:
                s += f" {{\\scriptsize[{METRICS[m].format(c['lo'])}, {METRICS[m].format(c['hi'])}]}}"
            row.append(f"\\textbf{{{s}}}" if k in best[m] else s)
        lines.append(" & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_csv(records: list[dict]) -> str:
    """One row per record: each metric's value and the interval the leaderboard shows for it (and its method)."""
    ok = [r for r in records if r.get("status") == "ok"]
    metrics = _present_metrics(ok)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "method", "variant", "subject", "fraction", "w", "seed"] + [f"{m}{s}" for m in metrics for s in ("", "_ci_low", "_ci_high", "_ci_method")])
    for r in sorted(ok, key=lambda r: (r["method"], r.get("variant") or "", r["subject"], r["fraction"], r["w"], r["seed"], r["key"])):
        vals = []
        for m in metrics:
            c = _cell([r], m)
            vals += [c["value"], c["lo"], c["hi"], c["method"]] if c else ["", "", "", ""]
        w.writerow([r["key"], r["method"], r.get("variant") or "", r["subject"], r["fraction"], r["w"], r["seed"]] + vals)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def _plottable(records: list[dict], axis: str) -> bool:
    by: dict[str, set] = defaultdict(set)
    refs = reference_methods()
    for r in records:
        if r["method"] not in refs:
            by[(r["method"], r.get("variant") or "")].add(r[axis])
    return any(len(v) >= 2 for v in by.values())


def plot_axis(records: list[dict], axis: str, metrics: list[str], path: Path) -> bool:
    """Metric vs ``axis`` ("fraction" or "w") per method, mean with 95% CI band. False if < 2 points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = reference_methods()
    ok = [r for r in records if r.get("status") == "ok" and r["method"] not in refs]
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by_method[r["method"] + (f" [{r['variant']}]" if r.get("variant") else "")].append(r)
    series = {m: rs for m, rs in by_method.items() if len({r[axis] for r in rs}) >= 2}
    if not series:
        return False
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name in sorted(series):
            xs = sorted({r[axis] for r in series[name]})
            cells = [_cell([r for r in series[name] if r[axis] == x], metric) for x in xs]
            pts = [(x, c) for x, c in zip(xs, cells) if c is not None]
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1]["value"] for p in pts]
            ax.plot(x, y, marker="o", label=name)
            if all(p[1]["lo"] is not None for p in pts):
                ax.fill_between(x, [p[1]["lo"] for p in pts], [p[1]["hi"] for p in pts], alpha=0.2)
        if axis == "fraction":
            ax.set_xscale("log")
        ax.set_xlabel("training-data fraction" if axis == "fraction" else "interpolation weight w (caption)")
        ax.set_title(METRICS[metric].title)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return True


def plot_gallery(records: list[dict], data_root: Path | None, path: Path, n_trials: int = 6) -> bool:
    """Ground truth | stage 1 | final for the first ``n_trials`` test images (sorted by name), one
    block of rows per method (its full-data, w=0.5 record of the lowest subject and seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from bench.data.eegcvpr40 import image_path

    chosen: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: (r["subject"], -r["fraction"], abs(r["w"] - 0.5), r["seed"], r["key"])):
        if r.get("status") == "ok" and r.get("images_dir") and Path(r["images_dir"]).is_dir():
            chosen.setdefault(r["method"] + (f" [{r['variant']}]" if r.get("variant") else ""), r)
    if not chosen or data_root is None:
        return False
    any_rec = next(iter(chosen.values()))
    names = sorted({p.stem.rsplit("_", 1)[0] for p in Path(any_rec["images_dir"]).glob("*.png")})[:n_trials]
    methods = sorted(chosen)
    fig, axes = plt.subplots(len(methods), 3 * len(names), figsize=(1.1 * 3 * len(names), 1.25 * len(methods)), squeeze=False)
    for i, m in enumerate(methods):
        folder = Path(chosen[m]["images_dir"])
        for j, name in enumerate(names):
            panels = [image_path(Path(data_root) / "images", name), folder / "stage1" / f"{name}_0.png", folder / f"{name}_0.png"]
            for k, p in enumerate(panels):
                ax = axes[i][3 * j + k]
                ax.axis("off")
                if p.is_file():
                    ax.imshow(np.asarray(Image.open(p).convert("RGB")))
                if i == 0:
                    ax.set_title(("GT", "stage 1", "final")[k], fontsize=6)
        axes[i][0].text(-0.1, 0.5, m, transform=axes[i][0].transAxes, ha="right", va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return True


def records_of_grid(records: list[dict], grid: "str | Grid") -> list[dict]:
    """The records a grid covers (``grid``: a shipped grid's name, a grid file, or a Grid with its
    command-line overrides applied, as `bench run` passes it).

    A trial shared by several grids is stored once (same key) and tagged with the grid that ran it
    first, so membership is decided by the grid's axes: method, fraction, w and options (its variant
    name is this grid's for those options); whether it
    generates images; the dataset (a grid's named worlds, or the datasets its own runs used); and subjects and seeds:
    the grid's own plus those of records a run of this grid wrote (``--subjects``/``--seeds``), so a
    trial another grid ran for another subject does not change this grid's averages. Stores whose
    records carry no grid tag accept any subject, seed and dataset. A name no grid file answers to
    selects records by tag."""
    from bench.experiment.grid import expand_trials

    name, g = resolve_grid(grid)
    if g is None:
        return [r for r in records if r.get("grid", name) == name]
    variant_of: dict[tuple, str | None] = {}
    for t in expand_trials(g):
        variant_of.setdefault((t.spec.method, float(t.spec.fraction), float(t.spec.w), tuple(sorted(dict(t.spec.options).items()))), t.variant)
    wanted = set(variant_of)
    tagged = any(r.get("grid") for r in records)
    ran_here = [r for r in records if r.get("grid") in {name, g.source}]
    # The grid's datasets: its named worlds, and those its own runs used (a run with --data); a grid
    # without worlds that never ran here takes any dataset.
    worlds = set(dataset_labels(g)) | {_config(r).get("dataset_id") for r in ran_here}
    subjects = set(g.axes()["subject"]) | {r["subject"] for r in ran_here}
    seeds = set(g.axes()["seed"]) | {r["seed"] for r in ran_here}

    def ident(r: dict) -> tuple:
        return (r["method"], float(r["fraction"]), float(r["w"]), tuple(sorted((r.get("options") or {}).items())))

    def generates(r: dict) -> bool:
        return _config(r).get("backbones", "mini") != "none"

    generate_of = {}  # world id -> whether the grid generates on it (a world's own `generate` setting)
    if g.worlds:
        from bench.world.spec import spec_of_world

        for w in g.worlds:
            try:
                generate_of[spec_of_world(w).world_id] = g.world_generates(w)
            except Exception:  # noqa: BLE001 - a bad world entry: `bench run` reports it
                continue

    def in_scope(r: dict) -> bool:
        if not tagged:
            return True
        dataset = _config(r).get("dataset_id")  # None: a trial that failed before its config was recorded
        return (not worlds or dataset is None or dataset in worlds) and r["subject"] in subjects and r["seed"] in seeds

    chosen = [r for r in records if ident(r) in wanted and generates(r) == generate_of.get(_config(r).get("dataset_id"), g.generate) and in_scope(r)]
    # A trial another grid ran (same options, so same key) is shown under this grid's variant name.
    return [r if (r.get("variant") or None) == variant_of[ident(r)] else {**r, "variant": variant_of[ident(r)]} for r in chosen]


def write_leaderboard(store: str | Path, grid: "str | Grid", out_dir: str | Path = "leaderboards", fmt: str = "md", *, data_root: str | Path | None = None, figures: bool = True) -> list[Path]:
    """Write ``<out>/<grid name>.md`` (or .tex / .csv) and its figures from the store's records.
    ``grid``: a name, a grid file or a Grid (see :func:`records_of_grid`)."""
    from bench.plugins import grid_plugins

    store, out_dir = Path(store), Path(out_dir)
    name, g = resolve_grid(grid)
    grid_plugins(g)  # installed plugins and the grid's include: their metrics' columns and methods' kinds
    records = records_of_grid(load_records(store), g or name)
    if not records:
        from bench.errors import UserError

        raise UserError(f"{store}: no trial records for grid {name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if fmt == "latex":
        written.append(out_dir / f"{name}.tex")
        written[-1].write_text(render_latex(records, dataset_labels(g or name)))
        return written
    if fmt == "csv":
        written.append(out_dir / f"{name}.csv")
        written[-1].write_text(render_csv(records))
        return written
    datasets = {str(_config(r).get("dataset_id", "")) for r in records}
    audits: dict[str, dict] = {}  # one per dataset of these records (a store may hold audit.json and audit-<id>.json of the same one)
    for p in sorted(store.glob("audit*.json")):
        a = json.loads(p.read_text())
        if a.get("dataset_id") in datasets or ("dataset_id" not in a and len(datasets) == 1):
            audits.setdefault(a.get("dataset_id", ""), a)
    audit = list(audits.values()) or None
    ok = [r for r in records if r.get("status") == "ok"]
    metrics = [m for m in ("top1", "n_way_top_k", "clip_similarity") if m in _present_metrics(ok)]
    plots = []
    for axis in ("fraction", "w"):
        if _plottable(ok, axis):
            plots.append(f"{name}_{axis}.png")
            if figures:
                plot_axis(ok, axis, metrics, out_dir / plots[-1])
    gallery = f"{name}_gallery.png" if any(r.get("images_dir") for r in ok) else None
    if gallery and figures:
        plot_gallery(ok, Path(data_root) if data_root else None, out_dir / gallery)
    labels = dataset_labels(g or name)
    cards = {}
    from bench.world.card import card_markdown, stored_cards

    for wid, card in stored_cards(store, sorted(datasets)).items():
        link = f"worlds/{wid}.md"
        (out_dir / "worlds").mkdir(exist_ok=True)
        (out_dir / link).write_text(card_markdown(card))
        written.append(out_dir / link)
        cards[wid] = link
        labels.setdefault(wid, card.get("label") or wid)
    checks = None
    if g is not None and g.checks:
        from bench.evaluation.known_answers import check_results, markdown as checks_markdown

        checks = checks_markdown(check_results(ok, g), labels)
    md = out_dir / f"{name}.md"
    md.write_text(render_markdown(records, name, audit=audit, plots=plots, gallery=gallery, labels=labels, about=_grid_text(g or name), checks=checks, cards=cards))
    written.insert(0, md)  # the page first, then its world cards
    return written
