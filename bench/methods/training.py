"""Training helpers every method may use: seeded batches, supervised training with selection on the
validation split and early stopping, and the harness's cache for work shared between trials.

Selection is always on validation: a stage keeps the state of its best validation epoch and stops
once ``patience`` epochs pass without improvement (``None``: run every epoch). Its report says which
epoch won and how many ran, so a budget that is too short (best epoch = last epoch) shows.

An epoch is as many optimizer steps at every training fraction: at fraction ``f`` it makes
:func:`passes_per_epoch` passes over the fraction's trials (10 at 0.1), so a budget and a patience in
epochs mean the same amount of training whatever the fraction (at 0.1 with batch 64, a single pass
is two steps: eight epochs of patience would stop a stage after sixteen steps).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.eegcvpr40 import TrialSet


def passes_per_epoch(fraction: float) -> int:
    """Passes over a training fraction's trials that make one epoch: ``round(1 / fraction)`` (at least 1)."""
    return max(1, round(1.0 / float(fraction)))


def batches(n: int, batch: int, g: torch.Generator, shuffle: bool = True, passes: int = 1) -> Iterator[torch.Tensor]:
    """Index batches over ``n`` items, ``passes`` times, each pass in its own seeded random order."""
    for _ in range(int(passes)):
        order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        for i in range(0, n, batch):
            yield order[i : i + batch]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


@torch.no_grad()
def eval_logits(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch].float()) for i in range(0, len(x), batch)])


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = (1e-2, 1e3)) -> float:
    """The temperature ``T`` that minimises the cross-entropy of ``logits / T`` (temperature scaling,
    Guo et al. 2017), by a bounded scalar search over ``log T``. Fitted on held-out (validation)
    logits it measures how far a head's confidence can be trusted: large for a head that guesses."""
    from scipy.optimize import minimize_scalar

    z, y = logits.detach().double(), labels.long()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), y))

    res = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def improves(loss: float, best: float, min_delta: float = 0.0) -> bool:
    """Early stopping's test on a validation loss: does ``loss`` beat ``best`` by at least the relative
    ``min_delta`` (0: any decrease)?"""
    return loss < best * (1.0 - min_delta)


def stage_report(best_value: float, best_epoch: int, epochs_run: int, epochs: int, key: str = "val_top1") -> dict:
    """A stage's selection report: best validation value and epoch, epochs run, budget, and whether
    the best epoch was the last one run (a sign that the budget is too short)."""
    return {key: best_value, "best_epoch": best_epoch, "epochs_run": epochs_run, "epochs": epochs, "best_is_last": best_epoch == epochs_run and epochs_run == epochs}


def train_classifier(
    module: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    train: TrialSet,
    val: TrialSet,
    *,
    epochs: int,
    lr: float,
    batch: int,
    wd: float,
    g: torch.Generator,
    params=None,
    patience: int | None = None,
    passes: int = 1,
    min_epochs: int = 0,
    select_start: bool = False,
) -> dict:
    """Cross-entropy training with AdamW; keeps the state with the best validation accuracy, and
    stops after ``patience`` epochs without improvement, never before epoch ``min_epochs`` (a stage
    whose accuracy sits at chance for its first epochs is not stopped there). An epoch is ``passes``
    passes over ``train`` (:func:`passes_per_epoch`). ``select_start``: the starting state competes
    as epoch 0 (a stage that starts from trained parts returns nothing worse on validation than its start)."""
    opt = torch.optim.AdamW(params if params is not None else module.parameters(), lr=lr, weight_decay=wd)
    best = (-1.0, 0, copy.deepcopy(module.state_dict()))
    if select_start:
        module.eval()
        best = (accuracy(eval_logits(forward, val.eeg), val.label), 0, best[2])
    ran = 0
    for epoch in range(epochs):
        module.train()
        for idx in batches(len(train), batch, g, passes=passes):
            loss = F.cross_entropy(forward(train.eeg[idx]), train.label[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        module.eval()
        acc = accuracy(eval_logits(forward, val.eeg), val.label)
        ran = epoch + 1
        if acc > best[0]:
            best = (acc, epoch + 1, copy.deepcopy(module.state_dict()))
        elif patience is not None and epoch + 1 >= min_epochs and epoch + 1 - best[1] >= patience:
            break
    module.load_state_dict(best[2])
    module.eval()
    return stage_report(best[0], best[1], ran, epochs)


# ------------------------------------------------------------------------------------------------
# Work shared between trials (e.g. an encoder pretrained on every subject's unlabelled EEG)
# ------------------------------------------------------------------------------------------------


def shared_work_key(parts: dict[str, Any]) -> str:
    """A short hash of everything the shared work depends on (canonical JSON)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def state_digest(module: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a module's state: names, shapes, dtypes and values (e.g. a shared
    stage's starting weights, part of its key)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


class SharedWork:
    """Tensors computed once and reused by every trial that needs the same thing, under
    ``<folder>/<key>.safetensors`` (with ``<key>.json``, its description and report).

    :meth:`get` computes under an exclusive file lock, so concurrent trials (Ray actors, also on
    other nodes of a shared filesystem) wait for the first one instead of repeating its work. The
    computation must be deterministic given ``parts``: a trial's result must not depend on whether
    it computed the work or loaded it.
    """

    def __init__(self, folder: str | Path | None, version: str = "") -> None:
        self.folder = Path(folder) if folder is not None else None
        self.version = version  # the harness's code version: results-changing code changes invalidate

    def get(self, parts: dict[str, Any], compute: Callable[[], tuple[dict[str, torch.Tensor], dict]]) -> tuple[dict[str, torch.Tensor], dict, bool]:
        """``(tensors, report, computed_here)``; ``compute() -> (tensors, report)``."""
        if self.folder is None:
            tensors, report = compute()
            return tensors, report, True
        import fcntl

        from safetensors.torch import load_file, save_file

        parts = {**parts, "code_version": self.version}
        key = shared_work_key(parts)
        self.folder.mkdir(parents=True, exist_ok=True)
        data, meta = self.folder / f"{key}.safetensors", self.folder / f"{key}.json"
        with open(self.folder / f".{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if data.is_file() and meta.is_file():
                return load_file(data), json.loads(meta.read_text())["report"], False
            tensors, report = compute()
            tmp = data.with_name(f".{data.name}.{os.getpid()}.tmp")
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, data)
            meta.write_text(json.dumps({"parts": parts, "report": report}, indent=1, default=str))
            return tensors, report, True
