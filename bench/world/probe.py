"""Known-answer probes of a dataset: is the planted signal there, and can the block state be read?

- class probe: logistic regression on binned ERP means of the 5-95 Hz window -> class (what the
  phase-locked code gives a linear reader).
- induced probe: the same on per-channel log power in three beta bands (13-27 Hz) -> class (what
  the non-phase-locked code gives; the ERP's own beta power adds a little).
- cross-subject probe: the ERP probe trained on every *other* subject's training trials (ridge),
  scored on this subject's test split: above chance only where subjects share codes.
- attribute probe: the same features -> each image attribute (synthetic worlds only).
- unlabelled-structure probe: the ERP probe on the projection onto the top 128 principal components
  of *unlabelled* binned means (training and validation trials, never a test image's), of this
  subject's own EEG and of every subject's pooled: what unsupervised learning on unlabelled EEG can
  give a linear reader (the known answer of masked pretraining), and what other subjects' EEG adds
  to the subject's own (the known answer of pretraining on all subjects).
- drift probes, which cannot see the stimulus-locked response: per-channel trial means of the
  file that keeps slow content, and per-channel log band power at 30-95 Hz (where neither the
  evoked responses nor the induced bursts have energy) of the 5-95 Hz file -> class. Under a block design the class is the
  block, so these score far above chance exactly when block state leaks into the trials.

All probes train on the training split and score the test split of the same subject.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FS = 1000


def binned_means(eeg: torch.Tensor, bin_ms: int = 40) -> np.ndarray:
    """``[N, C, T]`` -> ``[N, C * T // bin]``: mean of each channel in consecutive time bins."""
    x = eeg.numpy() if isinstance(eeg, torch.Tensor) else np.asarray(eeg)
    n, c, t = x.shape
    nb = t // bin_ms
    return x[:, :, : nb * bin_ms].reshape(n, c, nb, bin_ms).mean(-1).reshape(n, c * nb)


def trial_means(eeg: torch.Tensor) -> np.ndarray:
    """Per-channel mean of each trial, ``[N, C]``."""
    return eeg.double().mean(-1).numpy()


CHUNK = 64  # trials per FFT: the float64 spectra of a whole split took ~2 GB in each probe worker


def log_band_powers(eeg: torch.Tensor, bands: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Per-trial, per-band, per-channel log power ``[N, len(bands), C]`` from one FFT per chunk of trials."""
    n, c, t = eeg.shape
    f = torch.fft.rfftfreq(t, 1 / FS)
    masks = [(f >= lo) & (f <= hi) for lo, hi in bands]
    out = np.empty((n, len(bands), c))
    for i in range(0, n, CHUNK):
        x = eeg[i : i + CHUNK].double()
        spec = torch.fft.rfft(x - x.mean(-1, keepdim=True), dim=-1).abs() ** 2
        for b, band in enumerate(masks):
            out[i : i + CHUNK, b] = torch.log(spec[..., band].mean(-1) + 1e-12).numpy()
    return out


def band_log_power(eeg: torch.Tensor, low: float = 30.0, high: float = 95.0) -> np.ndarray:
    """Per-channel log power in ``[low, high]`` Hz of each trial, ``[N, C]``."""
    return log_band_powers(eeg, ((low, high),))[:, 0]


INDUCED_BANDS = ((13.0, 17.0), (18.0, 22.0), (23.0, 27.0))  # Hz, around bench.world.eeg.BANDS


def band_powers(eeg: torch.Tensor, bands: tuple[tuple[float, float], ...] = INDUCED_BANDS) -> np.ndarray:
    """Per-channel log power in each band, ``[N, C * len(bands)]`` band by band (what an amplitude spectrum shows)."""
    return log_band_powers(eeg, bands).reshape(len(eeg), -1)


def ridge_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, alpha: float | None = None) -> float:
    """Test accuracy of a closed-form ridge classifier (standardised features, one-hot targets,
    penalty = number of training samples unless given): fast enough for pooled-subject probes."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-8
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    classes = np.unique(y_train)
    onehot = (y_train[:, None] == classes[None, :]).astype(float)
    lam = float(len(a)) if alpha is None else alpha
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (onehot - onehot.mean(0)))
    return float(np.mean(classes[(b @ w).argmax(1)] == y_test))


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *, c: float = 0.05) -> float:
    """Test accuracy of a standardised, L2-regularised multinomial logistic regression."""
    if np.unique(y_train).size < 2:
        return float(np.mean(y_test == y_train[0]))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300))
    model.fit(x_train, y_train)
    return float(np.mean(model.predict(x_test) == y_test))


PCA_COMPONENTS = 128  # of the 1,408 binned means (128 channels x 11 bins); 16 or 32 components lose the class code


def unlabelled_bases(unlabelled: dict[str, np.ndarray], *, k: int = PCA_COMPONENTS) -> dict[str, PCA]:
    """The top ``k`` principal components of each unlabelled set (``{name: [N, F]}``, e.g. the subject's
    own and all subjects' training and validation trials), fitted without labels; fit once, read often."""
    return {name: PCA(min(k, *x.shape), random_state=0).fit(x) for name, x in unlabelled.items()}


def unlabelled_structure_accuracy(bases: dict[str, PCA], x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """``{name: test accuracy}`` of the ERP probe on each basis' projection (:func:`unlabelled_bases`)."""
    return {name: probe_accuracy(pca.transform(x_train), y_train, pca.transform(x_test), y_test) for name, pca in bases.items()}
