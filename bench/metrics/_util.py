"""Small shared helpers: array coercion and input validation."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any, *, name: str = "input") -> np.ndarray:
    """Convert a numpy array, torch tensor or nested sequence to a numpy array (no copy if possible)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - defensive
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to a numpy array") from e


def as_float_matrix(x: Any, *, name: str, dtype: type = np.float64) -> np.ndarray:
    """2-D finite float array or ``ValueError``."""
    a = to_numpy(x, name=name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [rows, columns], got shape {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: empty array of shape {tuple(a.shape)}")
    a = a.astype(dtype, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def as_index_vector(x: Any, *, name: str, length: int, upper: int) -> np.ndarray:
    """1-D int64 vector of ``length`` entries in ``[0, upper)`` or ``ValueError``."""
    a = to_numpy(x, name=name)
    if a.ndim != 1 or a.shape[0] != length:
        raise ValueError(f"{name}: expected shape [{length}], got {tuple(a.shape)}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{name}: expected integer class indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= upper):
        raise ValueError(f"{name}: class indices must lie in [0, {upper}), got range [{a.min()}, {a.max()}]")
    return a


def tie_credit(n_greater: np.ndarray, n_tied: np.ndarray, k: int) -> np.ndarray:
    """Expected top-``k`` success under uniformly random tie-breaking.

    The reference item is outranked by ``n_greater`` competitors and ties with
    ``n_tied`` others. Placed uniformly at random among its ``n_tied + 1`` tied
    slots (which follow the ``n_greater`` strictly better ones), it lands in the
    top ``k`` with probability ``clip(k - n_greater, 0, n_tied + 1) / (n_tied + 1)``.
    Without ties this is the indicator ``n_greater < k``.
    """
    g = np.asarray(n_greater, dtype=np.float64)
    t = np.asarray(n_tied, dtype=np.float64)
    return np.clip(k - g, 0.0, t + 1.0) / (t + 1.0)
