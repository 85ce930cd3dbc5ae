"""Metric registry (lm-eval / torch-fidelity style).

Every registered metric function takes explicit array inputs and returns a flat,
JSON-safe ``dict`` whose ``"value"`` key holds the headline number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Metric", "METRICS", "UnknownMetricError", "register", "get_metric", "list_metrics"]


@dataclass(frozen=True)
class Metric:
    """A named metric: ``fn(*inputs, **options) -> dict`` with a ``"value"`` key."""

    name: str
    fn: Callable[..., dict]
    higher_is_better: bool
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return self.fn(*args, **kwargs)

    def to_dict(self) -> dict:
        """JSON-safe description (no function object)."""
        return {
            "name": self.name,
            "higher_is_better": self.higher_is_better,
            "description": self.description,
            "fn": f"{self.fn.__module__}.{self.fn.__qualname__}",
            "tags": list(self.tags),
        }


METRICS: dict[str, Metric] = {}


class UnknownMetricError(KeyError):
    """Raised by :func:`get_metric` for a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly.
        return str(self.args[0]) if self.args else "unknown metric"


def register(
    name: str,
    *,
    higher_is_better: bool,
    description: str = "",
    tags: tuple[str, ...] = (),
    overwrite: bool = False,
) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Decorator registering ``fn`` under ``name``; returns ``fn`` unchanged."""

    def deco(fn: Callable[..., dict]) -> Callable[..., dict]:
        if not overwrite and name in METRICS and METRICS[name].fn is not fn:
            existing = METRICS[name].fn
            same = (existing.__module__, existing.__qualname__) == (fn.__module__, fn.__qualname__)
            if not same:  # re-importing the same module is fine; a clash is not
                raise ValueError(f"metric {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
        doc_lines = (fn.__doc__ or "").strip().splitlines()
        desc = description or (doc_lines[0] if doc_lines else "")
        METRICS[name] = Metric(name=name, fn=fn, higher_is_better=higher_is_better, description=desc, tags=tuple(tags))
        return fn

    return deco


def get_metric(name: str) -> Metric:
    """Return the registered :class:`Metric` ``name`` or raise listing the known names."""
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(sorted(METRICS)) or "(none registered)"
        raise UnknownMetricError(f"unknown metric {name!r}; known metrics: {known}") from None


def list_metrics() -> list[str]:
    """Sorted names of all registered metrics."""
    return sorted(METRICS)
