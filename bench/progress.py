"""Live progress of a run in the driver: done / running / failed / total, each running trial's stage,
elapsed time and ETA.

Finished trials come from the runner's result stream (:meth:`RunProgress.result`); the stage of
running trials comes from the small status files each trial writes at every stage
(``<store>/status/<key>.json``, see :meth:`bench.store.Store.set_stage`), read on each refresh.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bench.store import Store

MAX_ROWS = 12


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(spec: Any, variant: str | None = None) -> str:
    opts = ",".join(f"{k}={v}" for k, v in spec.options)
    label = f"{spec.method} s{spec.subject} f{spec.fraction:g} w{spec.w:g} seed{spec.seed}"
    if variant:
        label += f" [{variant}]"
    elif opts:
        label += f" [{opts}]"
    return label


class RunProgress:
    """Progress for :func:`bench.runner.run_grid`; ``live=False`` prints one line per finished trial."""

    def __init__(self, store: Store, *, title: str = "run", console: Console | None = None, live: bool = True) -> None:
        self.store = store
        self.title = title
        self.console = console or Console(stderr=True)
        self.live_mode = live
        self._lock = threading.Lock()
        self._live: Live | None = None
        self.done: dict[str, str] = {}
        self.t0 = time.perf_counter()
        self.labels: dict[str, str] = {}
        self.n_pending = 0
        self.skipped_ok = self.skipped_failed = self.total = 0

    # runner hooks
    def start(self, summary: Any, pending: list) -> None:
        self.t0 = time.perf_counter()
        self.labels = {p.key: describe(p.spec, p.variant) for p in pending}
        self.n_pending = len(pending)
        self.total, self.skipped_ok, self.skipped_failed = summary.total, summary.skipped_ok, summary.skipped_failed
        if self.live_mode:
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._live.start()
        else:
            self.console.print(self._header(), highlight=False, soft_wrap=True)

    def starting(self, n_pending: int, address: str | None) -> None:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        self.console.print(f"{self.title}: {n_pending} trial(s) to run; starting {where}", highlight=False, soft_wrap=True)

    def result(self, key: str, status: str, trial_s: float | None = None) -> None:
        with self._lock:
            self.done[key] = status
        if not self.live_mode:
            mark = "[green]ok[/]" if status == "ok" else "[red]failed[/]"
            self.console.print(f"{mark} {self.labels.get(key, key)} ({fmt_s(trial_s)}) [{len(self.done)}/{self.n_pending}]", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # display
    def counts(self) -> dict:
        with self._lock:
            done = dict(self.done)
        failed = sum(1 for s in done.values() if s != "ok")
        return {"done": len(done), "failed": failed, "pending": self.n_pending, "finished": done}

    def eta(self) -> float | None:
        c = self.counts()
        if not c["done"]:
            return None
        elapsed = time.perf_counter() - self.t0
        return elapsed / c["done"] * (c["pending"] - c["done"])

    def _header(self) -> Text:
        c = self.counts()
        elapsed = time.perf_counter() - self.t0
        parts = [
            f"{self.title}: {c['done']}/{c['pending']} done",
            f"{c['failed']} failed",
            f"elapsed {fmt_s(elapsed)}",
            f"ETA {fmt_s(self.eta())}",
        ]
        if self.skipped_ok or self.skipped_failed:
            parts.append(f"skipped {self.skipped_ok} done + {self.skipped_failed} failed of {self.total}")
        return Text(" | ".join(parts))

    def __rich__(self):
        c = self.counts()
        stages = {k: v for k, v in self.store.stages().items() if k in self.labels and k not in c["finished"]}
        header = self._header()
        header.append(f" | {len(stages)} running")
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("running trial")
        table.add_column("stage")
        table.add_column("in stage", justify="right")
        now = time.time()
        for key, st in sorted(stages.items(), key=lambda kv: kv[1].get("since", 0))[:MAX_ROWS]:
            table.add_row(self.labels.get(key, key), str(st.get("stage", "?")), fmt_s(now - float(st.get("since", now))))
        if len(stages) > MAX_ROWS:
            table.add_row(f"... {len(stages) - MAX_ROWS} more", "", "")
        return Group(header, table) if stages else header
