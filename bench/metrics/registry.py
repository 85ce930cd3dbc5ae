"""Metric registry (lm-eval / torch-fidelity style).

Every registered metric function takes explicit array inputs and returns a flat,
JSON-safe ``dict`` whose ``"value"`` key holds the headline number.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

__all__ = ["Metric", "METRICS", "NEEDS", "UnknownMetricError", "register", "scores", "get_metric", "list_metrics", "shown_metrics"]


LEVELS = ("trial", "set")  # a value per test trial (paired comparisons possible) | one value per set of images
INTERVALS = ("wilson", "student_t", "jackknife_log", "jackknife")  # keys of bench.metrics.intervals.CI_METHODS
NEEDS = ("logits", "labels", "images", "stage1", "attributes", "fidelity")  # what a scorer may need (bench.evaluation.scoring.ScoringInputs)


def _check_needs(name: str, needs: tuple[str, ...]) -> tuple[str, ...]:
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise ValueError(f"metric {name!r}: unknown need(s) {bad}; one of {NEEDS}")
    return tuple(needs)


@dataclass(frozen=True)
class Metric:
    """A named metric and everything the harness needs to compute, compare and show it.

    ``fn(*inputs, **options) -> dict`` (with a ``"value"`` key) is the array function. ``score``, when
    set, computes the metric from a trial's :class:`bench.evaluation.scoring.ScoringInputs` and is
    called by scoring whenever the inputs named in ``needs`` are present (see :func:`register` and
    :func:`scores`). ``label``/``fmt`` are the column title and number format; ``level`` says whether
    there is a value per test trial; ``interval`` is the kind of 95% interval a per-trial metric gets
    ("wilson" for rates, "student_t" for means); ``show``/``rank`` place it among leaderboard columns.
    """

    name: str
    fn: Callable[..., dict]
    higher_is_better: bool
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    label: str = ""
    fmt: str = "{:.3f}"
    level: str = "trial"
    interval: str = "student_t"
    show: bool = True
    rank: int = 100
    needs: tuple[str, ...] = ()
    score: Callable[..., dict | None] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return self.fn(*args, **kwargs)

    @property
    def title(self) -> str:
        """Column title with its direction: ``top-1 ↑``, ``FID ↓``."""
        return f"{self.label or self.name} {'↑' if self.higher_is_better else '↓'}"

    def format(self, value: float) -> str:
        return self.fmt.format(value)

    def to_dict(self) -> dict:
        """JSON-safe description (no function object)."""
        return {
            "name": self.name,
            "label": self.label or self.name,
            "higher_is_better": self.higher_is_better,
            "level": self.level,
            "interval": self.interval,
            "format": self.fmt,
            "needs": list(self.needs),
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
    label: str = "",
    fmt: str = "{:.3f}",
    level: str = "trial",
    interval: str | None = None,
    show: bool = True,
    rank: int = 100,
    needs: tuple[str, ...] = (),
    overwrite: bool = False,
) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Decorator registering ``fn`` under ``name``; returns ``fn`` unchanged.

    With ``needs`` (names of :class:`~bench.evaluation.scoring.ScoringInputs` fields, e.g.
    ``("images",)``) ``fn`` is itself the scorer: ``fn(inputs) -> {"value", "per_trial"?, ...}`` and
    every trial whose inputs have those fields computes it (a plugin metric needs nothing else).
    """
    if level not in LEVELS:
        raise ValueError(f"metric {name!r}: level must be one of {LEVELS}, got {level!r}")
    interval = interval or ("jackknife" if level == "set" else "student_t")
    needs = _check_needs(name, needs)
    if interval not in INTERVALS:
        raise ValueError(f"metric {name!r}: interval must be one of {INTERVALS}, got {interval!r}")

    def deco(fn: Callable[..., dict]) -> Callable[..., dict]:
        if not overwrite and name in METRICS and METRICS[name].fn is not fn:
            existing = METRICS[name].fn
            same = (existing.__module__, existing.__qualname__) == (fn.__module__, fn.__qualname__)
            if not same:  # re-importing the same module is fine; a clash is not
                raise ValueError(f"metric {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
        doc_lines = (fn.__doc__ or "").strip().splitlines()
        desc = description or (doc_lines[0] if doc_lines else "")
        previous = METRICS.get(name)
        METRICS[name] = Metric(
            name=name, fn=fn, higher_is_better=higher_is_better, description=desc, tags=tuple(tags), label=label, fmt=fmt,
            level=level, interval=interval, show=show, rank=rank, needs=tuple(needs) or (previous.needs if previous else ()),
            score=fn if needs else (previous.score if previous else None),
        )  # fmt: skip
        return fn

    return deco


def scores(name: str, *, needs: tuple[str, ...]) -> Callable[[Callable[..., dict | None]], Callable[..., dict | None]]:
    """Decorator attaching a scorer ``f(inputs) -> dict | None`` to the registered metric ``name``
    (``None``: not applicable to these inputs). Scoring calls it whenever ``needs`` are present."""

    def deco(f: Callable[..., dict | None]) -> Callable[..., dict | None]:
        METRICS[name] = replace(get_metric(name), score=f, needs=_check_needs(name, needs))
        return f

    return deco


def shown_metrics() -> list[Metric]:
    """Leaderboard columns, in order."""
    return sorted((m for m in METRICS.values() if m.show), key=lambda m: m.rank)


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
