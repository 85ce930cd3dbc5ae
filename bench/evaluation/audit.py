"""Block-design leakage audit of an EEG-CVPR40-format dataset (``bench audit``).

In a block design every class is shown as one block, so anything that identifies the block
(slow drift, electrode offsets, the subject's state) identifies the class. A classifier can then
score far above chance without reading the stimulus-locked response at all (Li et al., TPAMI
2021). This audit measures that directly, per subject, on the harness's own splits
(``load_split_data(DataConfig(root, subject=s))``: train on the training split, score the test
split, split by image):

1. **Stimulus-blind probes** -> class (multinomial logistic regression, the model of
   :func:`bench.world.probe.probe_accuracy`):

   - ``trial_means_raw``: per-channel mean over the harness window (20-460 ms) of the file that
     keeps slow content (``eeg_signals_raw_with_mean_std.pth``).
   - ``onset_level_raw``: <1 Hz content, measured where the stimulus-locked response is absent:
     the per-channel mean over 0-40 ms after onset of the same file (before the earliest visual
     cortical response, ~50 ms). Within a 0.44 s window, content below 1 Hz is indistinguishable
     from an offset plus a linear trend; the trend is *not* stimulus-blind (the ERP's slope over
     the window carries the class: on a synthetic world without drift a probe on per-channel
     slopes scored ~10x chance, above the ERP probe itself), so the trend is not used and the
     slow level is read off the pre-response segment instead.
   - ``band_power_30_95`` and ``band_power_55_95``: per-channel log band power of the 5-95 Hz
     file, where evoked responses have little energy (near-blind: real visual cortex has some
     stimulus-induced gamma; muscle and state dominate these bands).

   The slow-content probes need the raw file; without it they are reported as unavailable.

2. **Band audit**: the standard fast ERP classifier (logistic regression on 40 ms binned means,
   :func:`bench.world.probe.binned_means`) trained and tested on the file with slow content
   (raw) and on the 5-95 Hz file. A large positive gap (raw minus 5-95) means the slow content
   carries class information beyond the stimulus response.

3. **Nulls** for each stimulus-blind probe, for the statistic "test accuracy averaged over
   subjects" (labels are permuted independently per subject; test labels are never touched):

   - ``block_relabel`` (block-aware, used by the verdict): the training labels are relabelled as
     whole blocks. The release has no session log, and under its block design each class *is*
     one block, so a block-level relabelling is a random permutation of the class ids applied to
     the training labels. It keeps every block's trials together under one label (so the
     dependence of trials within a block is respected: the exchangeable unit is the block, not
     the trial) and asks whether the observed accuracy exceeds what an arbitrary block-to-label
     assignment gives. Applying the permutation to train *and* test would be pointless: accuracy
     is invariant under a consistent relabelling. Because multinomial logistic regression with
     a symmetric L2 penalty is equivariant under label permutations, the relabelled model's
     predictions are the permuted predictions of the fitted model, so this null is computed
     exactly from the fitted probe, without refitting (``acc_pi = mean(pi[pred] == y_test)``).
   - ``trial_shuffle`` (naive): training labels shuffled across trials. It treats trials as
     exchangeable, which they are not when trials of a block share state, so it is reported
     but not used by the verdict.
   - ``within_block`` (block identity only): training labels shuffled only among trials of the
     same block. This keeps exactly the label information that block identity carries, so its
     p-value asks whether the probe reads anything *beyond* block identity. Blocks come from a
     ``session.json`` where one exists (synthetic worlds); otherwise a block design is assumed
     (block = class), where this null is degenerate: shuffling within single-class blocks
     changes nothing, the null equals the observed accuracy, p = 1 -- block identity alone
     explains any accuracy, which is the point of the block-design critique.

   The two shuffle nulls refit a closed-form ridge classifier (standardised features, one-hot
   targets, penalty = number of training trials), whose hat matrix is computed once per subject
   so a thousand permutations cost milliseconds; each reports the ridge probe's observed
   accuracy beside its null.

4. **Leave-one-subject-out**: the ERP probe trained on the training splits of all *other*
   subjects and scored on the held-out subject's test split (splits are by image across
   subjects, so no test image is seen in training). Block state is subject-specific; a genuine
   stimulus response transfers at least partly.

**Verdict** (``VERDICT_RULE``): a stimulus-blind probe is *flagged* when its mean test accuracy
exceeds ``3 x chance`` **and** its block-relabel permutation p-value is below ``0.01 / m``
(Bonferroni over the ``m`` stimulus-blind probes run). ``LEAKAGE SUSPECTED`` if any probe is
flagged, else ``NO LEAKAGE DETECTED``. The band audit and LOSO are supporting evidence and do
not change the verdict.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from bench.data.eegcvpr40 import EEG_FILE, RAW_FILE, DataConfig, Release, load_release, load_split_data
from bench.errors import UserError
from bench.world.probe import band_log_power, binned_means, trial_means

SCHEMA = "brainvis-bench/audit/v1"
FILTERED_FILE = EEG_FILE
SLOW_FILE = RAW_FILE
SESSION_FILE = "session.json"
ONSET_WINDOW = (0, 40)  # samples (ms at 1 kHz) after onset: before the earliest visual cortical response
CHANCE_MULTIPLE = 3.0
ALPHA = 0.01
GAP_FLAG = 0.10  # band audit: raw-file ERP accuracy this much above the 5-95 Hz file's is flagged
N_PERMUTATIONS = 999
DRIFT_C = 1.0  # logistic-regression C of the stimulus-blind probes (as in the world's probes)
ERP_C = 0.05  # and of the ERP probe (probe_accuracy's default)

VERDICT_LEAK = "LEAKAGE SUSPECTED"
VERDICT_OK = "NO LEAKAGE DETECTED"
VERDICT_RULE = (
    "LEAKAGE SUSPECTED if any stimulus-blind probe has mean test accuracy > 3 x chance AND a "
    "block-relabel permutation p-value < 0.01 / m (Bonferroni over the m stimulus-blind probes run); "
    "otherwise NO LEAKAGE DETECTED. Band audit and leave-one-subject-out are supporting evidence."
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class ProbeDef:
    name: str
    source: str  # "slow" (raw file) or "filtered" (5-95 Hz file)
    description: str


PROBES: tuple[ProbeDef, ...] = (
    ProbeDef("trial_means_raw", "slow", "per-channel mean over 20-460 ms of the file with slow content"),
    ProbeDef("onset_level_raw", "slow", "<1 Hz level: per-channel mean over 0-40 ms (pre-response) of the file with slow content"),
    ProbeDef("band_power_30_95", "filtered", "per-channel log power 30-95 Hz of the 5-95 Hz file"),
    ProbeDef("band_power_55_95", "filtered", "per-channel log power 55-95 Hz of the 5-95 Hz file"),
)


# --------------------------------------------------------------------------------------------------
# Classifiers
# --------------------------------------------------------------------------------------------------


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, c: float) -> np.ndarray:
    """Test predictions of the model of :func:`bench.world.probe.probe_accuracy` (same pipeline)."""
    if np.unique(y_train).size < 2:
        return np.full(len(x_test), y_train[0])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300))
    model.fit(x_train, y_train)
    return model.predict(x_test)


def ridge_hat(x_train: np.ndarray, x_test: np.ndarray, lam: float | None = None) -> np.ndarray:
    """``H`` with ridge scores ``= H @ onehot(y_train) + class priors`` on standardised features.

    Features are standardised on the training set, so the training columns are centred and the
    intercept of each class's ridge fit is its training frequency.
    """
    mu = x_train.mean(0)
    sd = x_train.std(0)
    sd[sd < 1e-12] = 1.0
    a = (x_train - mu) / sd
    b = (x_test - mu) / sd
    n, d = a.shape
    lam = float(n) if lam is None else lam
    if d <= n:
        return b @ np.linalg.solve(a.T @ a + lam * np.eye(d), a.T)
    return (b @ a.T) @ np.linalg.inv(a @ a.T + lam * np.eye(n))


def ridge_accuracies(h: np.ndarray, y_train: np.ndarray, y_test: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Test accuracy of the ridge fit to labels ``y_train[index[p]]`` for each row ``p`` of ``index``.

    Permuting the training labels by ``q`` equals permuting the hat matrix's columns by ``q``'s
    inverse, so each draw is one column gather and one class-wise sum.
    """
    classes, counts = np.unique(y_train, return_counts=True)
    by_class = np.argsort(y_train, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    prior = counts / counts.sum()
    out = np.empty(len(index))
    step = max(1, int(2_000_000 // max(1, h.size)))
    for lo in range(0, len(index), step):
        q = index[lo : lo + step]  # [P, N]: label of column j is y_train[q[p, j]] -> column q^-1 gets label j
        inv = np.argsort(q, axis=1)
        cols = inv[:, by_class]  # [P, N] columns grouped by their (permuted) class
        gathered = h[:, cols]  # [Nte, P, N]
        scores = np.add.reduceat(gathered, starts, axis=2) + prior  # [Nte, P, K]
        pred = classes[scores.argmax(-1)]  # [Nte, P]
        out[lo : lo + step] = (pred == y_test[:, None]).mean(0)
    return out


def _group_permutations(groups: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, N]`` index arrays, each a uniformly random permutation within every group."""
    base = np.argsort(groups, kind="stable")
    out = np.empty((n, groups.size), dtype=np.int64)
    for p in range(n):
        order = np.lexsort((rng.random(groups.size), groups))
        out[p, base] = order
    return out


def _null_summary(observed: float, null: np.ndarray, **extra) -> dict:
    return {
        "observed": round(float(observed), 4),
        "mean": round(float(null.mean()), 4),
        "q95": round(float(np.quantile(null, 0.95)), 4),
        "q99": round(float(np.quantile(null, 0.99)), 4),
        "p": round(float((1 + np.sum(null >= observed - 1e-9)) / (1 + null.size)), 5),
        **extra,
    }


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"{root}: no such folder")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    if not (root / FILTERED_FILE).is_file():
        raise UserError(f"{root}: not an EEG-CVPR40 dataset folder ({FILTERED_FILE} not found; see `bench data check`)")
    return root


def _read_session(root: Path, note: Say) -> dict[int, np.ndarray] | None:
    """Per-subject block id of each image from ``session.json`` (synthetic worlds), else None."""
    path = root / SESSION_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        return {int(s): np.asarray(v["block"], dtype=np.int64) for s, v in raw.items()}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        note(f"{SESSION_FILE} unreadable ({type(exc).__name__}); a block design (block = class) is assumed")
        return None


def _aligned(filt: Release, raw: Release) -> bool:
    return (
        len(filt) == len(raw)
        and np.array_equal(filt.label, raw.label)
        and np.array_equal(filt.image, raw.image)
        and np.array_equal(filt.subject, raw.subject)
    )


def _subject_features(root: Path, subject: int, filt: Release, raw: Release | None, session, note: Say) -> dict:
    """Everything the audit needs of one subject: labels, block ids, probe and ERP features."""
    d = load_split_data(DataConfig(root=str(root), eeg_file=FILTERED_FILE, subject=subject), release=filt)
    out: dict = {
        "y": {"train": d.train.label.numpy().astype(np.int64), "test": d.test.label.numpy().astype(np.int64)},
        "image": {"train": d.train.image.numpy(), "test": d.test.image.numpy()},
        "index": {"train": d.train.index, "test": d.test.index},
        "features": {},
        "erp": {"filtered": {k: binned_means(getattr(d, k).eeg) for k in ("train", "test")}},
    }
    for k in ("train", "test"):
        eeg = getattr(d, k).eeg
        out["features"].setdefault("band_power_30_95", {})[k] = band_log_power(eeg, 30.0, 95.0)
        out["features"].setdefault("band_power_55_95", {})[k] = band_log_power(eeg, 55.0, 95.0)
    del d
    if raw is not None:
        r = load_split_data(DataConfig(root=str(root), eeg_file=SLOW_FILE, subject=subject), release=raw)
        if not all(np.array_equal(getattr(r, k).index, out["index"][k]) for k in ("train", "test")):
            raise UserError(f"{root}: {SLOW_FILE} and {FILTERED_FILE} select different trials for subject {subject}")
        for k in ("train", "test"):
            ts = getattr(r, k)
            out["features"].setdefault("trial_means_raw", {})[k] = trial_means(ts.eeg)
            lo, hi = ONSET_WINDOW
            onset = torch.stack([raw.eeg[i][:, lo:hi] for i in ts.index]).double()
            out["features"].setdefault("onset_level_raw", {})[k] = onset.mean(-1).numpy()
            out["erp"].setdefault("slow", {})[k] = binned_means(ts.eeg)
    blocks = None
    if session is not None and subject in session:
        b = session[subject]
        imgs = np.concatenate([out["image"]["train"], out["image"]["test"]])
        if imgs.size and imgs.max() < b.size:
            blocks = {k: b[out["image"][k]] for k in ("train", "test")}
        else:
            note(f"{SESSION_FILE}: subject {subject}'s block list does not cover its images; block = class assumed")
    out["blocks"] = blocks
    return out


# --------------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------------


def audit_dataset(
    root: str | Path,
    subjects: list[int] | None = None,
    seed: int = 0,
    *,
    n_permutations: int = N_PERMUTATIONS,
    loso: bool = True,
    progress: Say | None = None,
) -> dict:
    """Audit a dataset folder for block-design leakage; return a JSON-serialisable report.

    See the module docstring for the probes, the nulls and the verdict rule.
    """
    say = progress or (lambda msg: None)
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) or n_permutations < 1:
        raise UserError(f"number of permutations must be a positive integer; got {n_permutations!r}")
    root = _check_root(root)
    notes: list[str] = []
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with threadpool_limits(1):
        say("loading EEG files")
        filt = load_release(root / FILTERED_FILE, check_finite=False)
        raw = None
        if (root / SLOW_FILE).is_file():
            raw = load_release(root / SLOW_FILE, check_finite=False)
            if not _aligned(filt, raw):
                notes.append(f"{SLOW_FILE} does not list the same trials as {FILTERED_FILE}; slow-content probes skipped")
                raw = None
        else:
            notes.append(f"no {SLOW_FILE} (a file that keeps slow content): slow-content probes and the band audit are unavailable")
        available = filt.subjects
        if subjects is None:
            subjects = available
        subjects = sorted(dict.fromkeys(int(s) for s in subjects))
        unknown = [s for s in subjects if s not in available]
        if unknown or not subjects:
            raise UserError(f"unknown subject(s) {unknown}; this dataset has subjects {available}")
        n_classes = len(filt.labels)
        chance = 1.0 / n_classes
        session = _read_session(root, notes.append)
        timings["load"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        loso_pool = available if (loso and len(available) > 1) else subjects
        data: dict[int, dict] = {}
        for s in loso_pool:
            say(f"features of subject {s}")
            data[s] = _subject_features(root, s, filt, raw, session if s in subjects else None, notes.append)
        timings["features"] = time.perf_counter() - t1

        # ---- stimulus-blind probes and their nulls ---------------------------------------------
        t2 = time.perf_counter()
        run = [p for p in PROBES if p.source == "filtered" or raw is not None]
        m = len(run)
        p_threshold = ALPHA / max(1, m)
        if 1 / (n_permutations + 1) >= p_threshold:
            notes.append(f"{n_permutations} permutations cannot reach p < {p_threshold:.4g}; use at least {math.ceil(1 / p_threshold)}")
        per_subject: dict[str, dict] = {
            str(s): {"n_train": int(data[s]["y"]["train"].size), "n_test": int(data[s]["y"]["test"].size), "probes": {}} for s in subjects
        }
        block_source = "session.json" if session is not None and all(data[s]["blocks"] is not None for s in subjects) else "assumed: block = class"
        probes: dict[str, dict] = {}
        for k, pdef in enumerate(PROBES):
            entry = {"description": pdef.description, "file": SLOW_FILE if pdef.source == "slow" else FILTERED_FILE, "stimulus_blind": True}
            if pdef not in run:
                probes[pdef.name] = {**entry, "available": False, "accuracy": None, "x_chance": None, "per_subject": None, "null": None, "flagged": False}
                continue
            say(f"probe {pdef.name}")
            rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
            accs, relabel, shuffle, within, ridge_obs = [], [], [], [], []
            degenerate = True
            for s in subjects:
                f, ytr, yte = data[s]["features"][pdef.name], data[s]["y"]["train"], data[s]["y"]["test"]
                pred = fit_predict(f["train"], ytr, f["test"], c=DRIFT_C)
                acc = float(np.mean(pred == yte))
                accs.append(acc)
                per_subject[str(s)]["probes"][pdef.name] = round(acc, 4)
                # block relabel: exact, from the fitted model's predictions (label equivariance)
                perms = np.argsort(rng.random((n_permutations, n_classes)), axis=1)
                relabel.append((perms[:, pred] == yte[None, :]).mean(1))
                # ridge nulls
                h = ridge_hat(f["train"], f["test"])
                n = ytr.size
                ridge_obs.append(ridge_accuracies(h, ytr, yte, np.arange(n)[None, :])[0])
                shuffle.append(ridge_accuracies(h, ytr, yte, np.argsort(rng.random((n_permutations, n)), axis=1)))
                groups = data[s]["blocks"]["train"] if data[s]["blocks"] is not None else ytr
                pure = all(np.unique(ytr[groups == g]).size == 1 for g in np.unique(groups))
                degenerate &= pure
                if pure:
                    within.append(np.full(n_permutations, ridge_obs[-1]))
                else:
                    within.append(ridge_accuracies(h, ytr, yte, _group_permutations(groups, n_permutations, rng)))
            acc_mean = float(np.mean(accs))
            null = {
                "block_relabel": _null_summary(acc_mean, np.mean(relabel, axis=0), classifier="logistic (exact, no refit)"),
                "trial_shuffle": _null_summary(float(np.mean(ridge_obs)), np.mean(shuffle, axis=0), classifier="ridge"),
                "within_block": _null_summary(
                    float(np.mean(ridge_obs)), np.mean(within, axis=0), classifier="ridge", blocks=block_source, degenerate=bool(degenerate)
                ),
            }
            flagged = acc_mean > CHANCE_MULTIPLE * chance and null["block_relabel"]["p"] < p_threshold
            probes[pdef.name] = {
                **entry,
                "available": True,
                "accuracy": round(acc_mean, 4),
                "x_chance": round(acc_mean / chance, 2),
                "per_subject": {str(s): round(a, 4) for s, a in zip(subjects, accs)},
                "null": null,
                "flagged": bool(flagged),
            }
        timings["probes"] = time.perf_counter() - t2

        # ---- ERP probe and band audit -----------------------------------------------------------
        t3 = time.perf_counter()
        say("band audit")
        erp: dict[str, list[float]] = {"filtered": [], "slow": []}
        for s in subjects:
            for src in ("filtered", "slow") if raw is not None else ("filtered",):
                e, ytr, yte = data[s]["erp"][src], data[s]["y"]["train"], data[s]["y"]["test"]
                acc = float(np.mean(fit_predict(e["train"], ytr, e["test"], c=ERP_C) == yte))
                erp[src].append(acc)
                per_subject[str(s)]["erp_" + ("5_95" if src == "filtered" else "raw")] = round(acc, 4)
        erp_filtered = float(np.mean(erp["filtered"]))
        if raw is not None:
            erp_slow = float(np.mean(erp["slow"]))
            gap = erp_slow - erp_filtered
            band_audit = {
                "available": True,
                "classifier": "logistic regression on 40 ms binned means (ERP probe)",
                "with_slow": {"file": SLOW_FILE, "accuracy": round(erp_slow, 4)},
                "without_slow": {"file": FILTERED_FILE, "accuracy": round(erp_filtered, 4)},
                "gap": round(gap, 4),
                "flagged": bool(gap > GAP_FLAG and erp_slow > CHANCE_MULTIPLE * chance),
            }
        else:
            band_audit = {
                "available": False,
                "classifier": "logistic regression on 40 ms binned means (ERP probe)",
                "with_slow": None,
                "without_slow": {"file": FILTERED_FILE, "accuracy": round(erp_filtered, 4)},
                "gap": None,
                "flagged": False,
            }
        timings["band_audit"] = time.perf_counter() - t3

        # ---- leave one subject out ----------------------------------------------------------------
        t4 = time.perf_counter()
        if loso and len(available) > 1:
            say("leave-one-subject-out")
            loso_accs = []
            for s in subjects:
                others = [o for o in available if o != s]
                xtr = np.concatenate([data[o]["erp"]["filtered"]["train"] for o in others])
                ytr = np.concatenate([data[o]["y"]["train"] for o in others])
                e, yte = data[s]["erp"]["filtered"]["test"], data[s]["y"]["test"]
                acc = float(np.mean(fit_predict(xtr, ytr, e, c=ERP_C) == yte))
                loso_accs.append(acc)
                per_subject[str(s)]["erp_loso"] = round(acc, 4)
            loso_mean = float(np.mean(loso_accs))
            loso_report = {
                "available": True,
                "classifier": "logistic regression on 40 ms binned means of the 5-95 Hz file",
                "accuracy": round(loso_mean, 4),
                "within_subject_accuracy": round(erp_filtered, 4),
                "per_subject": {str(s): round(a, 4) for s, a in zip(subjects, loso_accs)},
            }
        else:
            if loso:
                notes.append("leave-one-subject-out needs at least two subjects in the dataset")
            loso_report = {
                "available": False,
                "classifier": "logistic regression on 40 ms binned means of the 5-95 Hz file",
                "accuracy": None,
                "within_subject_accuracy": round(erp_filtered, 4),
                "per_subject": None,
            }
            for s in subjects:
                per_subject[str(s)]["erp_loso"] = None
        timings["loso"] = time.perf_counter() - t4

    # ---- design: what block identity alone gives ------------------------------------------------
    ceilings = []
    for s in subjects:
        b = data[s]["blocks"]
        if b is None:
            ceilings.append(1.0)
            continue
        ytr, yte = data[s]["y"]["train"], data[s]["y"]["test"]
        fallback = np.bincount(ytr).argmax()
        majority = {int(g): np.bincount(ytr[b["train"] == g]).argmax() for g in np.unique(b["train"])}
        pred = np.array([majority.get(int(g), fallback) for g in b["test"]])
        ceilings.append(float(np.mean(pred == yte)))
    design = {
        "blocks": block_source,
        "block_identity_accuracy": round(float(np.mean(ceilings)), 4),
        "note": (
            "block ids from the session log; block_identity_accuracy = test accuracy of predicting a trial's class by the "
            "majority training class of its block"
            if block_source == "session.json"
            else "no session log: EEG-CVPR40 used a block design (one block per class), so block identity alone gives accuracy 1"
        ),
    }

    flagged = [name for name, p in probes.items() if p["flagged"]]
    verdict = VERDICT_LEAK if flagged else VERDICT_OK
    evidence = []
    for name in flagged:
        p = probes[name]
        evidence.append(
            f"{name}: accuracy {p['accuracy']:.3f} = {p['x_chance']:.1f} x chance, block-relabel p = {p['null']['block_relabel']['p']:.4g}"
        )
    if band_audit["flagged"]:
        evidence.append(
            f"band audit: ERP probe {band_audit['with_slow']['accuracy']:.3f} with slow content vs "
            f"{band_audit['without_slow']['accuracy']:.3f} without (gap {band_audit['gap']:+.3f})"
        )
    if not flagged and probes and any(p["available"] for p in probes.values()):
        name, p = max(((n, p) for n, p in probes.items() if p["available"]), key=lambda kv: kv[1]["accuracy"])
        evidence.append(
            f"highest stimulus-blind probe {name}: accuracy {p['accuracy']:.3f} = {p['x_chance']:.1f} x chance, "
            f"block-relabel p = {p['null']['block_relabel']['p']:.4g} (flag needs > {CHANCE_MULTIPLE:g} x chance and p < {p_threshold:.4g})"
        )
    timings["total"] = time.perf_counter() - t0
    return {
        "schema": SCHEMA,
        "root": str(root.absolute()),
        "subjects": subjects,
        "n_classes": n_classes,
        "chance": round(chance, 6),
        "files": {"filtered": FILTERED_FILE, "slow": SLOW_FILE if raw is not None else None},
        "settings": {
            "seed": seed,
            "n_permutations": n_permutations,
            "chance_multiple": CHANCE_MULTIPLE,
            "alpha": ALPHA,
            "p_threshold": round(p_threshold, 6),
            "gap_flag": GAP_FLAG,
            "onset_window_ms": list(ONSET_WINDOW),
            "probe_c": {"stimulus_blind": DRIFT_C, "erp": ERP_C},
            "split": "DataConfig(root, subject=s): split_mode 'all', split 0; train on train, score test",
        },
        "verdict": verdict,
        "rule": VERDICT_RULE,
        "flagged_probes": flagged,
        "evidence": evidence,
        "probes": probes,
        "band_audit": band_audit,
        "loso": loso_report,
        "design": design,
        "per_subject": per_subject,
        "notes": list(dict.fromkeys(notes)),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }


def write_report(report: dict, out: str | Path) -> Path:
    """Write the report as JSON to ``out`` (parents created); a folder or unwritable path is a UserError."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"--json {out}: is a folder; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
    except OSError as exc:
        raise UserError(f"--json {out}: cannot write ({exc.strerror or exc})") from None
    return out
