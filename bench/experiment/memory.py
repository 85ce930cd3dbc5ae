"""Peak memory of a run: the driver, Ray's processes and the trial actors, sampled in the background.

Two figures, both in MiB:

- ``peak_pss``: the largest sum over the process tree (this process and every descendant: in local
  mode that is Ray's GCS, raylet, agents and the trial workers) of the proportional set size, so
  pages shared between processes (libraries, a memory-mapped dataset) count once in total;
- ``peak_used``: the largest rise of the machine's used memory (total - available) over its value
  when sampling began: everything the run made the machine hold, whoever holds it.

PSS costs: reading it walks every page of every process (about 120 ms of CPU for a run's 10
processes holding ~6 GB), so sampled every 0.5 s it took a third of one of the machine's two cores
from the trials. It is sampled every ``pss_interval_s`` (10 s); the machine's used memory (30 us) every
``interval_s`` (0.5 s), so a short spike still shows in ``peak_used``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psutil


def tree_pss_mib(root: psutil.Process | None = None) -> float:
    """Sum of PSS (falling back to RSS where PSS is unavailable) over ``root`` and its descendants."""
    root = root or psutil.Process()
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:  # exited meanwhile, or not ours to read
            continue
    return total / 2**20


def used_mib() -> float:
    vm = psutil.virtual_memory()
    return (vm.total - vm.available) / 2**20


@dataclass
class PeakMemory:
    """``with PeakMemory() as m: ...`` (or ``m.start()`` ... ``m.stop()``) then ``m.peak_pss`` and ``m.peak_used`` (MiB)."""

    interval_s: float = 0.5  # machine's used memory
    pss_interval_s: float = 10.0  # the process tree's PSS (expensive: see the module docstring)
    peak_pss: float = 0.0
    peak_used: float = 0.0
    baseline_used: float = 0.0

    def include(self, peak_pss: float) -> None:
        """Fold in a peak sampled by another monitor over part of this one's span (e.g. the grid runner's
        through the trials), so this peak is never below it."""
        self.peak_pss = max(self.peak_pss, float(peak_pss))

    def _sample(self, pss: bool = True) -> None:
        if pss:
            self.peak_pss = max(self.peak_pss, tree_pss_mib())
        self.peak_used = max(self.peak_used, used_mib() - self.baseline_used)

    def _loop(self) -> None:
        every = max(1, round(self.pss_interval_s / self.interval_s))
        tick = 0
        while not self._stop.wait(self.interval_s):
            tick += 1
            self._sample(pss=tick % every == 0)

    def start(self) -> "PeakMemory":
        self.baseline_used = used_mib()
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def __enter__(self) -> "PeakMemory":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
