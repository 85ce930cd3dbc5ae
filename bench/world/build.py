"""Build a synthetic world on disk, in the EEG-CVPR40 release's exact format, and probe it.

``build_world(spec, out)`` writes into a temporary folder next to ``out`` and renames it into
place only when everything (files, manifest, probe report) is complete, so an interrupted or
failed build never leaves a partial world behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bench.data.classes import WNIDS
from bench.data.eegcvpr40 import EEG_FILE, MAX_LEN, RAW_FILE, SPLIT_FILES, DataConfig, load_release, load_split_data
from bench.errors import UserError
from bench.paths import MINI_MANIFEST, MINI_WEIGHTS_DIR
from bench.world import eeg as sim
from bench.world.images import ATTRIBUTES, ATTRIBUTES_FILE, caption, render, sample_specs
from bench.world.probe import band_log_power, band_powers, binned_means, probe_accuracy, ridge_accuracy, trial_means, unlabelled_bases, unlabelled_structure_accuracy
from bench.world.card import CARD_MD, write_card
from bench.world.spec import WorldSpec

MANIFEST = "world.json"
REPORT = "world_report.json"

Progress = Callable[[str], None]


def _lengths(rng: np.random.Generator, n: int, odd_rate: float) -> np.ndarray:
    """Trial lengths: 460..600 (about 515 +- 15); a share ``odd_rate`` outside 450..600."""
    lengths = np.clip(np.round(rng.normal(515, 15, n)), 460, 600).astype(np.int64)
    odd = rng.random(n) < odd_rate
    lengths[odd] = np.where(rng.random(odd.sum()) < 0.5, rng.integers(425, 450, odd.sum()), rng.integers(601, 626, odd.sum()))
    return lengths


def _split_by_image(labels: np.ndarray, rng: np.random.Generator, images: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Stratified 4:1:1 split of image indices (per class: 1/6 val, 1/6 test, at least one each)."""
    images = np.arange(labels.size) if images is None else images
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels[images]):
        members = rng.permutation(images[labels[images] == c])
        k = max(1, int(round(members.size / 6)))
        parts["test"] += members[:k].tolist()
        parts["val"] += members[k : 2 * k].tolist()
        parts["train"] += members[2 * k :].tolist()
    return {name: np.sort(np.array(v, dtype=np.int64)) for name, v in parts.items()}


def _simulate(args: tuple) -> tuple[np.ndarray, np.ndarray]:
    """One subject's EEG into ``<tmp>/.sim-<s>-{filtered,raw}.npy`` (memory maps: a worker holds
    only one chunk of trials in memory); returns (block, onset)."""
    subject, specs, lengths, codes, seed, strengths, tmp = args
    shape = (len(specs), sim.N_CHANNELS, sim.GEN_LEN)
    filt = np.lib.format.open_memmap(Path(tmp) / f".sim-{subject}-filtered.npy", mode="w+", dtype=np.float32, shape=shape)
    raw = np.lib.format.open_memmap(Path(tmp) / f".sim-{subject}-raw.npy", mode="w+", dtype=np.float32, shape=shape)
    with threadpool_limits(1):
        res = sim.simulate_subject(subject, specs, lengths, codes, seed, strengths=strengths, out=(filt, raw))
    filt.flush()
    raw.flush()
    del filt, raw
    return res.block, res.onset


def _return_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc). The EEG files are written from 7,200
    separate 0.26 MB trial tensors: once freed they stayed in the builder's heap (2.3 GB resident
    while the probes ran beside it, the main job's peak), as glibc raises its mmap threshold after
    the first large frees."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc: nothing to trim
        pass


def _digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def build_command(spec: WorldSpec) -> str:
    """The `bench world build` command that makes ``spec``."""
    changed = spec.changed_effects()
    cmd = f"bench world build --scale {spec.scale} --seed {spec.seed}"
    if changed.get("block_drift") == 1.0:
        cmd += " --block-drift"
        changed.pop("block_drift")
    cmd += "".join(f" --effect {k}={v:g}" for k, v in sorted(changed.items()))
    return cmd + ("" if spec.raw_file else " --no-raw")


def read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def build_world_isolated(spec: WorldSpec, out: str | Path, *, progress: Progress | None = None) -> dict:
    """:func:`build_world` in a child process (:func:`bench.experiment.isolated.run_isolated`), so the memory
    the build uses (the whole dataset, twice, plus serialisation buffers: about 4 GB for the mini
    world) goes back to the system before a run's trials start. An already-built world is reused
    in this process (nothing to free)."""
    from bench.experiment.isolated import run_isolated

    out = Path(out)
    if _already_built(spec, out):
        return build_world(spec, out, progress=progress)
    return run_isolated("bench.world.build:build_world", spec, str(out), progress=progress, what="world-build")


def _backbones_changed(report: dict) -> bool:
    """Whether the report's backbone check was made on other weights than the shipped ones
    (their manifest read as plain JSON: importing the backbone code would cost seconds per run)."""
    try:
        digests = json.loads((MINI_WEIGHTS_DIR / MINI_MANIFEST).read_text()).get("digests")
    except (OSError, ValueError):
        return False
    return report.get("backbones", {}).get("digests") != digests


def disk_needed(spec: WorldSpec) -> int:
    """Bytes a build of ``spec`` needs at its peak: the simulation's memory maps (1 kHz, ``GEN_LEN``
    samples per trial, filtered and raw) and the EEG files written from them (trials of at most
    ``MAX_LEN`` samples), plus 10% (mini world: 10.1 GB; it keeps 3.6 GB)."""
    per_kind = spec.subjects * spec.n_images * sim.N_CHANNELS * sim.GEN_LEN * 4
    files = (2 if spec.raw_file else 1) * per_kind * MAX_LEN / sim.GEN_LEN  # the simulation keeps both kinds either way
    return int(1.1 * (2 * per_kind + files))


def _check_disk(spec: WorldSpec, where: Path) -> None:
    """One clear message before the build when the disk cannot hold it (a full disk otherwise shows as
    torch's "unexpected pos" from the EEG file's writer, or a crash in the memory-mapped simulation)."""
    free, need = shutil.disk_usage(where).free, disk_needed(spec)
    if free < need:
        raise UserError(f"building {spec.label()} needs about {need / 1e9:.1f} GB free at {where}; {free / 1e9:.1f} GB are free there "
                        "(free some space or choose another --out / cache folder)")


def _already_built(spec: WorldSpec, out: Path) -> bool:
    existing = read_manifest(out) if out.is_dir() else None
    return bool(existing) and existing.get("world_id") == spec.world_id and (out / REPORT).is_file()


def build_world(
    spec: WorldSpec, out: str | Path, *, force: bool = False, workers: int = 2, progress: Progress | None = None, check_backbones: bool = True
) -> dict:
    """Write the world described by ``spec`` to ``out`` and return its report.

    If ``out`` already holds this exact world it is reused (nothing is rewritten). If it holds
    anything else the build refuses unless ``force``.
    """
    say = progress or (lambda msg: None)
    out = Path(out)
    if not force and _already_built(spec, out):
        say(f"world {spec.world_id} already built at {out}; reusing it")
        report = json.loads((out / REPORT).read_text())
        if check_backbones and spec.scale == "mini" and _backbones_changed(report):
            from bench.backbones.train_mini import backbone_report
            from bench.results.store import atomic_write_text

            report["backbones"] = backbone_report(out)  # the shipped weights changed since: re-measure
            atomic_write_text(out / REPORT, json.dumps(report, indent=1))
            write_card(out)
            say("re-checked the mini backbones (the shipped weights changed)")
        elif not (out / CARD_MD).is_file():
            write_card(out)
        return report
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and does not hold world {spec.world_id}; choose another --out or pass --force to replace it")

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_disk(spec, out.parent)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        def stream(purpose: int) -> np.random.Generator:  # keyed by purpose: effects never shift a stream
            return np.random.default_rng(np.random.SeedSequence([spec.seed, purpose]))

        # Images, captions, attributes (they depend on the stimulus part of the spec only).
        say(f"rendering {spec.n_images} images")
        specs = sample_specs(spec.images_per_class, stream(1))
        for s in specs:
            path = tmp / "images" / s.name.split("_")[0] / f"{s.name}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            render(s, spec.image_side).save(path, quality=95)
        (tmp / "captions.json").write_text(json.dumps({s.name: caption(s) for s in specs}, indent=1, sort_keys=True))
        (tmp / ATTRIBUTES_FILE).write_text(json.dumps({s.name: s.to_dict() for s in specs}, indent=1, sort_keys=True))
        timings["images"] = time.perf_counter() - t0
        say(f"rendered {len(specs)} images")

        # EEG, one subject per task, into memory maps in the build folder.
        say(f"simulating the EEG of {spec.subjects} subjects x {len(specs)} trials")
        t1 = time.perf_counter()
        codes = sim.world_codes(stream(4), len(specs))
        subjects = list(range(1, spec.subjects + 1))
        lengths = {s: _lengths(np.random.default_rng(np.random.SeedSequence([spec.seed, 3, s])), len(specs), spec.odd_length_rate) for s in subjects}
        strengths = dict(spec.effects)
        tasks = [(s, specs, lengths[s], codes, spec.seed, strengths, str(tmp)) for s in subjects]
        if workers > 1:
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
                sessions = list(pool.map(_simulate, tasks))
        else:
            sessions = [_simulate(t) for t in tasks]
        timings["eeg_simulate"] = time.perf_counter() - t1
        say(f"simulated {len(subjects)} subjects x {len(specs)} trials")

        say("writing the EEG files")
        t2 = time.perf_counter()
        labels = np.array([s.label for s in specs])
        names = [s.name for s in specs]
        digests = {}
        files = ((EEG_FILE, "filtered"), (RAW_FILE, "raw")) if spec.raw_file else ((EEG_FILE, "filtered"),)
        for fname, kind in files:
            # One file at a time; each trial its own tensor, as in the release (about 2 GB for the mini world).
            trials = []
            for subj in subjects:
                mm = np.load(tmp / f".sim-{subj}-{kind}.npy", mmap_mode="r")
                trials += [
                    {"eeg": torch.from_numpy(np.array(mm[i, :, :L])), "label": int(labels[i]), "image": i, "subject": subj}
                    for i, L in enumerate(lengths[subj])
                ]
                del mm
            torch.save({"dataset": trials, "labels": list(WNIDS), "images": names}, tmp / fname)
            digests[fname] = _digest([t["eeg"] for t in trials])
            del trials
            _return_freed_memory()
        for p in tmp.glob(".sim-*.npy"):
            p.unlink()
        session = {str(subj): {"onset_s": onset.round(3).tolist(), "block": block.tolist()} for subj, (block, onset) in zip(subjects, sessions)}
        (tmp / "session.json").write_text(json.dumps(session))

        # Splits (stimulus part only): 'all' indexes the full trial list (subject-major, image-minor:
        # trial = (s-1)*n + i); 'single' indexes one subject's trials (position = image) and covers about half the images.
        split_rng = stream(2)
        n_img = len(specs)
        all_splits, single_splits = [], []
        for _ in range(spec.n_splits):
            by_image = _split_by_image(labels, split_rng)
            all_splits.append({k: [int((s - 1) * n_img + i) for s in subjects for i in v] for k, v in by_image.items()})
            half = np.concatenate([split_rng.permutation(np.flatnonzero(labels == c))[: max(3, (labels == c).sum() // 2)] for c in range(40)])
            single_splits.append({k: v.tolist() for k, v in _split_by_image(labels, split_rng, np.sort(half)).items()})
        torch.save({"splits": all_splits}, tmp / SPLIT_FILES["all"])
        torch.save({"splits": single_splits}, tmp / SPLIT_FILES["single"])
        timings["write"] = time.perf_counter() - t2
        say("wrote EEG files and splits")

        manifest = {
            "world_id": spec.world_id,
            "stimulus_id": spec.stimulus_id,
            "label": spec.label(),
            "spec": spec.to_dict(),
            "format": "EEG-CVPR40 (Spampinato et al., CVPR 2017) on-disk layout; synthetic data",
            "files": sorted(p.name for p in tmp.iterdir() if p.is_file()) + ["images/"],
            "eeg_digest_sha256": digests,
            "n_trials": len(subjects) * n_img,
            "n_images": n_img,
            "subjects": subjects,
            "command": build_command(spec),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))

        say("probing the world (linear probes per subject)")
        t3 = time.perf_counter()
        report = {"world_id": spec.world_id, "spec": spec.to_dict(), "probe": probe_world(tmp, workers=workers)}
        timings["probe"] = time.perf_counter() - t3
        if check_backbones:
            from bench.backbones.train_mini import backbone_report

            say("checking the mini backbones on this world")
            t4 = time.perf_counter()
            report["backbones"] = backbone_report(tmp)
            timings["backbones"] = time.perf_counter() - t4
            say("checked the mini backbones")
        timings["total"] = time.perf_counter() - t0
        report["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        (tmp / REPORT).write_text(json.dumps(report, indent=1))
        write_card(tmp)
        say("probed the world; wrote its card (world_card.md)")

        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def probe_subject(root: str | Path, subject: int) -> dict:
    """Class (ERP and band power), attribute and drift probes of one subject (see :mod:`bench.world.probe`)."""
    root = Path(root)
    with threadpool_limits(1):
        filt = load_release(root / EEG_FILE, check_finite=False)
        attrs = json.loads((root / ATTRIBUTES_FILE).read_text()) if (root / ATTRIBUTES_FILE).is_file() else None
        d = load_split_data(DataConfig(root=str(root), subject=subject), release=filt)
        ytr, yte = d.train.label.numpy(), d.test.label.numpy()
        erp_tr, erp_te = binned_means(d.train.eeg), binned_means(d.test.eeg)
        res: dict = {
            "n_train": len(d.train),
            "n_test": len(d.test),
            "class_accuracy": probe_accuracy(erp_tr, ytr, erp_te, yte),
            "induced_accuracy": probe_accuracy(band_powers(d.train.eeg), ytr, band_powers(d.test.eeg), yte, c=1.0),
            "drift_probes": {"band_power_30_95": probe_accuracy(band_log_power(d.train.eeg), ytr, band_log_power(d.test.eeg), yte, c=1.0)},
        }
        if (root / RAW_FILE).is_file():
            raw = load_release(root / RAW_FILE, check_finite=False)
            r = load_split_data(DataConfig(root=str(root), eeg_file=RAW_FILE, subject=subject), release=raw)
            res["drift_probes"]["trial_means_raw"] = probe_accuracy(trial_means(r.train.eeg), ytr, trial_means(r.test.eeg), yte, c=1.0)
        res["drift_accuracy"] = max(res["drift_probes"].values())
        if attrs is not None:
            res["attribute_accuracy"] = {}
            for key in ATTRIBUTES:
                a_tr = np.array([attrs[n][key] for n in d.train.image_names])
                a_te = np.array([attrs[n][key] for n in d.test.image_names])
                res["attribute_accuracy"][key] = probe_accuracy(erp_tr, a_tr, erp_te, a_te)
    return res


def _erp_features(root: str | Path, subject: int) -> dict:
    with threadpool_limits(1):
        d = load_split_data(DataConfig(root=str(root), subject=subject), release=load_release(Path(root) / EEG_FILE, check_finite=False))
        return {k: (binned_means(getattr(d, k).eeg).astype(np.float32), getattr(d, k).label.numpy()) for k in ("train", "val", "test")}


def subject_pool_probes(root: str | Path, subjects: list[int], *, workers: int = 2) -> dict[str, dict[str, float]]:
    """Per subject, the probes that read other subjects' trials (see :mod:`bench.world.probe`):

    - ``cross_subject_accuracy``: the ERP ridge probe trained on every other subject's training trials,
      scored on this subject's test split (the shared codes' known answer);
    - ``unlabelled_own_accuracy`` / ``unlabelled_pooled_accuracy``: the ERP probe on the top principal
      components of the unlabelled training and validation EEG of this subject / of every subject
      (masked pretraining's known answer; pooled minus own is what the other subjects' EEG adds)."""
    if workers > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(subjects))) as pool:
            feats = dict(zip(subjects, pool.map(_erp_features, [root] * len(subjects), subjects)))
    else:
        feats = {s: _erp_features(root, s) for s in subjects}
    feats = {s: {k: (x.astype(np.float64), y) for k, (x, y) in f.items()} for s, f in feats.items()}
    unlabelled = {s: np.concatenate([feats[s]["train"][0], feats[s]["val"][0]]) for s in subjects}
    out: dict[str, dict[str, float]] = {}
    with threadpool_limits(2):
        pooled = unlabelled_bases({"pooled": np.concatenate(list(unlabelled.values()))}) if len(subjects) > 1 else {}
        for s in subjects:
            (x_train, y_train), (x_test, y_test) = feats[s]["train"], feats[s]["test"]
            acc = unlabelled_structure_accuracy(unlabelled_bases({"own": unlabelled[s]}) | pooled, x_train, y_train, x_test, y_test)
            res = {f"unlabelled_{name}_accuracy": v for name, v in acc.items()}
            if len(subjects) > 1:
                xs = np.concatenate([feats[o]["train"][0] for o in subjects if o != s])
                ys = np.concatenate([feats[o]["train"][1] for o in subjects if o != s])
                res["cross_subject_accuracy"] = ridge_accuracy(xs, ys, x_test, y_test)
            out[str(s)] = res
    return out


def probe_world(root: str | Path, *, workers: int = 2) -> dict:
    """Probe every subject (in parallel) and summarise: means over subjects, and per subject."""
    root = Path(root)
    release = load_release(root / EEG_FILE, check_finite=False)
    subjects = release.subjects
    n_classes = len(release.labels)
    del release
    if workers > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(subjects))) as pool:
            results = list(pool.map(probe_subject, [root] * len(subjects), subjects))
    else:
        results = [probe_subject(root, s) for s in subjects]
    per_subject = {str(s): r for s, r in zip(subjects, results)}
    for s, probes in subject_pool_probes(root, subjects, workers=workers).items():
        per_subject[s].update(probes)

    def mean_of(get) -> float:
        return round(float(np.mean([get(v) for v in per_subject.values()])), 4)

    out: dict = {
        "chance": 1 / n_classes,
        "class_accuracy": mean_of(lambda v: v["class_accuracy"]),
        "induced_accuracy": mean_of(lambda v: v["induced_accuracy"]),
        "drift_accuracy": mean_of(lambda v: v["drift_accuracy"]),
        "drift_probes": {k: mean_of(lambda v, k=k: v["drift_probes"][k]) for k in results[0]["drift_probes"]},
    }
    for key in ("cross_subject_accuracy", "unlabelled_own_accuracy", "unlabelled_pooled_accuracy"):
        if all(key in v for v in per_subject.values()):
            out[key] = mean_of(lambda v, key=key: v[key])
    if "attribute_accuracy" in results[0]:
        out["attribute_accuracy"] = {k: mean_of(lambda v, k=k: v["attribute_accuracy"][k]) for k in ATTRIBUTES}
        out["attribute_chance"] = {k: round(1 / len(v), 4) for k, v in ATTRIBUTES.items()}
    out["per_subject"] = per_subject
    return out
