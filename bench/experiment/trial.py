"""One trial, end to end: dataset files -> method (fit on train/val) -> predictions and images on the
test trials -> metrics. Plain function in, plain dict out; the runner and the store wrap it.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data.captions import cached_captions, caption_cache_file
from bench.methods.base import FitContext, SubjectSplits, TrialSpec, UnlabelledPool
from bench.methods.registry import get_method, load_builtin_methods
from bench.plugins import load_plugins
from bench.methods.training import SharedWork
from bench.paths import cache_dir
from bench.evaluation.scoring import ScoreSettings, ScoringInputs, score
from bench.results.store import code_version, identity_key
from bench.data.dataset import DEFAULT_FORMAT, Dataset, open_dataset


@dataclass(frozen=True)
class RunEnv:
    """Where a trial reads and writes; identical for every trial of one `bench run`."""

    data_root: str
    dataset_id: str  # world id, or "cvpr40:<folder name>" for the real set
    profile: dict = field(default_factory=dict)  # the whole profile (configs as data)
    backbones: str = "none"  # "mini", "paper" or "none"
    backbones_dir: str | None = None
    images_dir: str | None = None  # where generated images go (one folder per trial key)
    split_mode: str = "all"
    fraction_seed: int = 0
    device: str = "cpu"
    cache_dir: str | None = None  # shared work (captions); default: bench.paths.cache_dir()
    plugins: tuple[str, ...] = ()  # plugin references (bench.plugins) every actor imports before its method
    dataset_format: str = DEFAULT_FORMAT  # a registered bench.data.dataset format

    def dataset(self) -> Dataset:
        return open_dataset(self.data_root, self.dataset_format, split_mode=self.split_mode)


@lru_cache(maxsize=1)
def _backbones(kind: str, weights_dir: str | None, stimuli: str | None):
    if kind == "mini":
        from bench.backbones.mini import WEIGHTS_DIR, load_mini_backbones

        if stimuli is None:
            from bench.errors import UserError

            raise UserError("the mini backbones serve the synthetic worlds only (this dataset has no world.json); use --profile paper")
        return load_mini_backbones(Path(weights_dir) if weights_dir else WEIGHTS_DIR, stimulus_id=stimuli)
    if kind == "paper":
        from bench.backbones.paper import load_paper_backbones, load_paper_config

        return load_paper_backbones(load_paper_config(weights_dir))
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def save_images(images: dict[str, np.ndarray], names: list[str], out: Path) -> None:
    """``<out>/<image_name>_<s>.png`` for the final images, ``<out>/<stage>/...`` for other stages."""
    for stage, arr in images.items():
        folder = out if stage == "final" else out / stage
        folder.mkdir(parents=True, exist_ok=True)
        seen: dict[str, int] = {}  # several trials of one image (subject 0): samples numbered on
        for i, name in enumerate(names):
            for s in range(arr.shape[1]):
                j = seen.get(name, 0)
                seen[name] = j + 1
                Image.fromarray(arr[i, s]).save(folder / f"{name}_{j}.png")


def unlabelled_pool(dataset: Dataset, env: "RunEnv", subject: int = 0) -> UnlabelledPool:
    """Training and validation trials, EEG only (float16), for pretraining: every subject's
    (``subject = 0``) or one subject's at every training fraction."""
    description, n_train, n_val, load = dataset.unlabelled_eeg(subject=subject) if subject else dataset.unlabelled_eeg()
    return UnlabelledPool({"dataset_id": env.dataset_id, **description}, n_train, n_val, load)


def subject_splits(dataset: Dataset, env: "RunEnv", fraction: float) -> SubjectSplits:
    """Every subject's training trials at ``fraction`` and validation trials, with labels (no test trial)."""

    def load(subject: int):
        d = dataset.load_split(subject, fraction, env.fraction_seed)
        return d.train, d.val

    subjects = tuple(int(s) for s in dataset.subjects())
    return SubjectSplits({"dataset_id": env.dataset_id, "fraction": float(fraction), "fraction_seed": int(env.fraction_seed), "subjects": list(subjects)}, subjects, load)


def run_trial(spec: TrialSpec, env: RunEnv, *, key: str | None = None, stage_cb=None) -> dict:
    """Run one trial and return ``{"metrics", "timings", "fit", "n_test", "images_dir"}``."""
    say = stage_cb or (lambda stage: None)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    say("load")
    load_builtin_methods()  # installed plugins: their methods, metrics and dataset formats (once per process)
    load_plugins(env.plugins)  # the run's --include / grid include
    dataset = env.dataset()
    data = dataset.load_split(spec.subject, spec.fraction, env.fraction_seed)
    method_cls = get_method(spec.method)
    backbones = _backbones(env.backbones, env.backbones_dir, dataset.stimulus_id if env.backbones == "mini" else None) if method_cls.needs_generator else None
    timings["load"] = time.perf_counter() - t

    captions: dict[str, str] = {}
    if backbones is not None and backbones.captioner is not None:
        # Training/validation images only: captions of test images are never needed.
        say("caption")
        t = time.perf_counter()
        names = sorted(set(data.train.image_names) | set(data.val.image_names))
        cache = caption_cache_file(cache_dir(env.cache_dir), env.dataset_id, backbones.ids.get("captioner", "captioner"))
        captions = cached_captions(names, dataset.image_root(), backbones.captioner, cache)
        timings["caption"] = time.perf_counter() - t

    seed_everything(spec.seed)
    ctx = FitContext(
        spec=spec,
        profile=env.profile.get(spec.method, {}) | {"generation": env.profile.get("generation", {})},
        backbones=backbones,
        class_prompts=dataset.class_prompts(),
        captions=captions,
        image_root=dataset.image_root(),
        device=env.device,
        pretrain_pool=lambda subject=0: unlabelled_pool(dataset, env, subject),
        subject_splits=lambda: subject_splits(dataset, env, spec.fraction),
        image_cache=cache_dir(env.cache_dir) / "images",
        shared=SharedWork(cache_dir(env.cache_dir) / "shared" / env.dataset_id, version=code_version()),
    )
    method = method_cls()
    say("fit")
    t = time.perf_counter()
    fit_report = method.fit(data.train, data.val, ctx)
    timings["fit"] = time.perf_counter() - t

    # From here on the test split is used: its EEG goes to predict(), its labels only to scoring.
    say("predict")
    t = time.perf_counter()
    with torch.no_grad():
        if getattr(method_cls, "reference", False):
            # Reference rows (oracles, chance by label) see the test identities, never the EEG.
            preds = method.predict_reference(data.test.label.clone(), list(data.test.image_names))
        else:
            preds = method.predict(data.test.eeg.clone())
    timings["predict"] = time.perf_counter() - t
    settings = ScoreSettings(**env.profile.get("metrics", {}))
    inputs = ScoringInputs(settings, backbones, logits=preds.logits, labels=data.test.label.numpy(), wnids=list(data.labels))

    images_dir = None
    if backbones is not None:
        say("generate")
        t = time.perf_counter()
        images = method.generate(preds, ctx, seed=spec.seed)
        timings["generate"] = time.perf_counter() - t
        if images:
            inputs.gt = dataset.images(list(data.test.image_names))
            inputs.gen = images["final"]
            inputs.stages = {k: v for k, v in images.items() if k != "final"}
            inputs.attributes = dataset.attributes(list(data.test.image_names))
            if env.images_dir and key:
                images_dir = str(Path(env.images_dir) / key)
                save_images(images, data.test.image_names, Path(images_dir))
    say("score")
    t = time.perf_counter()
    metrics, not_computable = score(inputs)  # every registered metric these inputs can give
    if inputs.gen is not None:
        timings["score"] = time.perf_counter() - t
    return {
        "metrics": metrics,
        **({"not_computable": not_computable} if not_computable else {}),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "fit": fit_report,
        "n_train": len(data.train),
        "n_val": len(data.val),
        "n_test": len(data.test),
        "images_dir": images_dir,
        "score_settings": settings.to_dict(),
        "pid": os.getpid(),
    }


def trial_identity(spec: TrialSpec, env: RunEnv, backbone_ids: dict | None = None) -> dict:
    """Everything that determines a trial's result (hashed into the store key)."""
    return {
        "spec": asdict(spec),
        "method_config": env.profile.get(spec.method, {}),
        "generation": env.profile.get("generation", {}),
        "metrics": env.profile.get("metrics", {}),
        "dataset_id": env.dataset_id,
        "split_mode": env.split_mode,
        "fraction_seed": env.fraction_seed,
        "backbones": env.backbones,
        "backbone_ids": backbone_ids or {},
    }


def trial_key(spec: TrialSpec, env: RunEnv, backbone_ids: dict | None = None, version: str | None = None) -> str:
    """The store key of a trial: its identity hashed with the code version."""
    return identity_key(trial_identity(spec, env, backbone_ids), version)
