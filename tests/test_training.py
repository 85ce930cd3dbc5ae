"""Training helpers: an epoch is as many optimizer steps at every training fraction, and selection
keeps the best validation epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.eegcvpr40 import TrialSet
from bench.methods.base import FitContext, TrialSpec
from bench.methods.training import batches, fit_temperature, passes_per_epoch, train_classifier


@pytest.mark.parametrize(("fraction", "passes"), [(1.0, 1), (0.5, 2), (0.25, 4), (0.1, 10), (0.05, 20), (0.3, 3), (0.75, 1)])
def test_passes_per_epoch(fraction, passes):
    assert passes_per_epoch(fraction) == passes
    assert FitContext(spec=TrialSpec("x", fraction=fraction), profile={}, backbones=None, class_prompts=[]).passes == passes


def test_batches_make_each_pass_a_fresh_permutation():
    g = torch.Generator().manual_seed(0)
    out = list(batches(10, 4, g, passes=3))
    assert [len(b) for b in out] == [4, 4, 2] * 3
    passes = [torch.cat(out[i : i + 3]) for i in (0, 3, 6)]
    for p in passes:
        assert sorted(p.tolist()) == list(range(10))
    assert not torch.equal(passes[0], passes[1])
    # one pass draws exactly what the single-pass call draws (full-data training is unchanged)
    assert torch.equal(torch.cat(list(batches(10, 4, torch.Generator().manual_seed(0)))), passes[0])


def _set(n: int, seed: int) -> TrialSet:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, 3, generator=g) + 2.0 * y[:, None, None]
    return TrialSet(eeg=x, label=y, image=torch.arange(n), subject=torch.ones(n, dtype=torch.long), index=np.arange(n),
                    image_names=[f"im{i}" for i in range(n)])


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        return self.lin(x.flatten(1))


def test_train_classifier_takes_passes_steps_per_epoch_and_keeps_the_best_epoch():
    train, val = _set(8, 1), _set(40, 2)
    m = _Counting()
    rep = train_classifier(m, m, train, val, epochs=3, lr=0.05, batch=4, wd=0.0, g=torch.Generator().manual_seed(0), passes=10)
    assert m.calls == 3 * 10 * 2  # epochs x passes x batches per pass
    assert rep["epochs_run"] == 3 and 1 <= rep["best_epoch"] <= 3
    acc = float((m(val.eeg).argmax(1) == val.label).float().mean())
    assert acc == pytest.approx(rep["val_top1"])  # the kept state is the reported one


def test_early_stopping_never_fires_before_min_epochs():
    train, val = _set(8, 1), _set(40, 2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    kw = dict(epochs=12, lr=0.0, batch=4, wd=0.0, patience=1)  # lr 0: validation never improves after epoch 1
    m = _Counting()
    stopped = train_classifier(m, m, train, val, g=g(), **kw)
    m = _Counting()
    floored = train_classifier(m, m, train, val, g=g(), min_epochs=7, **kw)
    assert stopped["epochs_run"] == 2 and stopped["best_epoch"] == 1
    assert floored["epochs_run"] == 7 and floored["best_epoch"] == 1


def test_select_start_keeps_a_start_that_training_only_spoils():
    train, val = _set(8, 1), _set(40, 2)
    m = _Counting()
    with torch.no_grad():  # a perfect reader of the class offset (+2 on every value of class 1)
        m.lin.weight.copy_(torch.tensor([[-1.0] * 6, [1.0] * 6]))
        m.lin.bias.copy_(torch.tensor([6.0, -6.0]))
    start = {k: v.clone() for k, v in m.state_dict().items()}
    start_acc = float((m(val.eeg).argmax(1) == val.label).float().mean())
    wrong = _set(8, 1)
    wrong = TrialSet(eeg=wrong.eeg, label=1 - wrong.label, image=wrong.image, subject=wrong.subject, index=wrong.index, image_names=wrong.image_names)
    kw = dict(epochs=3, lr=0.5, batch=4, wd=0.0)  # trained on flipped labels: every epoch is worse than the start
    rep = train_classifier(m, m, wrong, val, g=torch.Generator().manual_seed(0), select_start=True, **kw)
    assert rep["best_epoch"] == 0 and rep["val_top1"] == pytest.approx(start_acc) and start_acc > 0.9
    assert all(torch.equal(v, start[k]) for k, v in m.state_dict().items())  # the starting weights are back
    m.load_state_dict(start)
    plain = train_classifier(m, m, wrong, val, g=torch.Generator().manual_seed(0), **kw)
    assert plain["best_epoch"] >= 1 and plain["val_top1"] < start_acc  # without it the stage returns a spoilt epoch


def test_fit_temperature_matches_a_grid_search_and_silences_a_guessing_head():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (500,), generator=g)
    informative = 3.0 * F.one_hot(y, 10).float() + torch.randn(500, 10, generator=g) * 2.0
    guessing = 5.0 * torch.randn(500, 10, generator=g)  # confident and unrelated to the label
    grid = torch.logspace(-2, 3, 20001, dtype=torch.float64)
    for logits in (informative, guessing):
        t = fit_temperature(logits, y)
        nll = torch.stack([F.cross_entropy(logits.double() / s, y) for s in grid])
        assert t == pytest.approx(float(grid[nll.argmin()]), rel=2e-3)
    assert fit_temperature(guessing, y) > 50 * fit_temperature(informative, y)
