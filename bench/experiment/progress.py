"""Live progress of a run in the driver: done / running / failed / total, each running trial's stage,
elapsed time and ETA.

Finished trials come from the runner's result stream (:meth:`RunProgress.result`); the stage of
running trials comes from the small status files each trial writes at every stage
(``<store>/status/<key>.json``, see :meth:`bench.results.store.Store.set_stage`), read on each refresh.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bench.results.store import Store

MAX_ROWS = 12
HEARTBEAT_S = 20.0  # a log file gets a line at least this often (the promise: every 30 s)


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


class LineLog:
    """Progress as plain lines ``[m:ss] message`` on a console (for logs, CI, cluster jobs).

    With ``heartbeat=True`` a background thread repeats the current status (``status()`` if set,
    else the last message) whenever nothing was printed for :data:`HEARTBEAT_S` seconds, so a long
    step (a world build, a trial in fit, the audit) still shows the run is alive.
    """

    def __init__(self, console: Console, *, heartbeat: bool = True, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.console = console
        self.heartbeat_s = heartbeat_s
        self.t0 = time.perf_counter()
        self._last = self.t0
        self._last_msg = "starting"
        self.status: Any = None  # optional () -> str, the heartbeat's text
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="bench-heartbeat", daemon=True) if heartbeat else None

    def __call__(self, msg: str) -> None:
        self.say(msg)

    def say(self, msg: str, *, remember: bool = True) -> None:
        with self._lock:
            now = time.perf_counter()
            self.console.print(f"[{fmt_s(now - self.t0)}] {msg}", highlight=False, soft_wrap=True, markup=False)
            self._last = now
            if remember:
                self._last_msg = msg

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            if time.perf_counter() - self._last >= self.heartbeat_s:
                try:
                    text = self.status() if self.status is not None else f"still running: {self._last_msg}"
                except Exception:  # noqa: BLE001 - a status line must never end the run
                    text = f"still running: {self._last_msg}"
                self.say(text, remember=False)

    def __enter__(self) -> "LineLog":
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2)


class RunProgress:
    """Progress for :func:`bench.experiment.runner.run_grid`; ``live=False`` prints one line per finished trial."""

    def __init__(self, store: Store, *, title: str = "run", console: Console | None = None, live: bool = True, log: LineLog | None = None) -> None:
        self.store = store
        self.log = log  # non-live mode: lines go through it (timestamps, heartbeat with the running trials)
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
            if self.log is not None:
                self.log.status = self.status_line
            self._line(self._header().plain)

    def _line(self, text: str) -> None:
        if self.log is not None:
            self.log.say(text)
        else:
            self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def starting(self, n_pending: int, address: str | None) -> None:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        self._line(f"{self.title}: {n_pending} trial(s) to run; starting {where}")

    def result(self, key: str, status: str, trial_s: float | None = None) -> None:
        with self._lock:
            self.done[key] = status
        if not self.live_mode:
            self._line(f"{status} {self.labels.get(key, key)} ({fmt_s(trial_s)}) [{len(self.done)}/{self.n_pending}]")

    def status_line(self) -> str:
        """One line: counts, ETA and each running trial's stage (the log's heartbeat)."""
        c = self.counts()
        stages = {k: v for k, v in self.store.stages().items() if k in self.labels and k not in c["finished"]}
        now = time.time()
        running = "; ".join(f"{self.labels[k]}: {st.get('stage', '?')} {fmt_s(now - float(st.get('since', now)))}" for k, st in sorted(stages.items(), key=lambda kv: kv[1].get("since", 0)))
        return self._header().plain + (f" | running: {running}" if running else "")

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        if self.log is not None:
            self.log.status = None

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
