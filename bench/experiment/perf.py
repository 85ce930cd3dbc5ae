"""`bench perf`: what the harness costs, measured through the real runner in one go.

(a) overhead per trial: ``noop`` trials one at a time through :func:`bench.experiment.runner.run_grid`
    (reused actors); the median interval between consecutive trial results in the driver minus
    the median in-trial time (``run_trial``), i.e. what Ray/Tune, the trainable and the store add.
(b) throughput of 2 concurrent vs 1 concurrent CPU-bound trials (``burn``: a fixed amount of
    single-threaded matmul work in fit), in steady state (after the first wave).
(c) world load: ``load_release`` in a fresh process (what a trial pays without actor reuse, plus the
    interpreter start and imports) vs a reused actor's load stage (the release is cached per process
    and memory-mapped, so only the subject/split selection remains).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from rich.table import Table

from bench.data.eegcvpr40 import EEG_FILE


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def calibrate_burn(seconds: float) -> int:
    """Matmul iterations of the ``burn`` method that take about ``seconds`` on one thread here."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(256, 256) / 16
        b = torch.randn(256, 256) / 16
        n = 300
        t = time.perf_counter()
        for _ in range(n):
            a = torch.tanh(a @ b)
        per_iter = (time.perf_counter() - t) / n
    finally:
        torch.set_num_threads(threads)
    return max(10, int(seconds / per_iter))


def steady_throughput(result_times: list[float], concurrency: int) -> float:
    """Trials per second after the first wave (excludes actor start-up)."""
    ts = sorted(result_times)
    k = min(concurrency, len(ts) - 1)
    if len(ts) < 2 or ts[-1] <= ts[k - 1]:
        return float("nan")
    return (len(ts) - k) / (ts[-1] - ts[k - 1])


_FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
from bench.data.eegcvpr40 import load_release
t1 = time.perf_counter()
rel = load_release(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "trials": len(rel)}))
"""


def fresh_process_load(eeg_path: Path) -> dict:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _FRESH, str(eeg_path)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"fresh-process load failed: {out.stderr.strip().splitlines()[-1:]}")
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    rep["process_s"] = wall
    return rep


def run_perf(
    data_root: Path,
    dataset_id: str,
    *,
    noop_trials: int = 16,
    burn_trials: int = 6,
    burn_seconds: float = 2.0,
    say: Callable[[str], None] = lambda m: None,
) -> dict:
    import ray

    from bench.methods.base import TrialSpec
    from bench.experiment.runner import run_grid, start_ray
    from bench.results.store import Store
    from bench.data.dataset import open_dataset
    from bench.experiment.trial import RunEnv

    from bench.errors import UserError

    if noop_trials < 2 or burn_trials < 3 or burn_seconds <= 0:
        raise UserError("bench perf needs --noop-trials >= 2, --burn-trials >= 3 and --burn-seconds > 0")
    subject = open_dataset(Path(data_root)).subjects()[0]
    env = RunEnv(data_root=str(data_root), dataset_id=dataset_id, backbones="none")
    tmp = Path(tempfile.mkdtemp(prefix="bench-perf-"))
    report: dict = {"data_root": str(data_root), "dataset_id": dataset_id, "cpus": os.cpu_count()}
    try:
        say("starting Ray")
        t = time.perf_counter()
        started = start_ray(num_cpus=max(2, os.cpu_count() or 1))
        report["ray_init_s"] = time.perf_counter() - t
        try:
            # (a) overhead per trial
            say(f"(a) {noop_trials} noop trials, one at a time")
            specs = [TrialSpec("noop", subject=subject, seed=i) for i in range(noop_trials)]
            s = run_grid(specs, env, Store(tmp / "noop"), max_concurrent=1, name="perf-noop")
            intervals = [b - a for a, b in zip([0.0] + s.result_times[:-1], s.result_times)]
            frame = Store(tmp / "noop").load_frame()
            loads = frame.sort_values("finished")["time.load"].tolist()
            report["noop"] = {
                "trials": noop_trials,
                "ok": s.ok,
                "fit_s": s.fit_s,
                "first_trial_s": intervals[0] if intervals else float("nan"),
                "median_wall_per_trial_s": _median(intervals[1:]),
                "median_in_trial_s": _median(s.trial_s[1:]),
                "overhead_per_trial_s": _median(intervals[1:]) - _median(s.trial_s[1:]),
                "amortized_per_trial_s": s.fit_s / max(1, noop_trials),
                "first_load_s": loads[0] if loads else float("nan"),
                "reuse_load_s": _median(loads[1:]),
            }
            # (b) 2 vs 1 concurrent CPU-bound trials
            iters = calibrate_burn(burn_seconds)
            burn: dict = {"trials": burn_trials, "iters": iters}
            for conc in (1, 2):
                say(f"(b) {burn_trials} burn trials ({iters} iterations each), {conc} at a time")
                specs = [TrialSpec("burn", subject=subject, seed=100 * conc + i, options=(("iters", iters),)) for i in range(burn_trials)]
                s = run_grid(specs, env, Store(tmp / f"burn{conc}"), max_concurrent=conc, name=f"perf-burn{conc}")
                burn[f"c{conc}"] = {
                    "ok": s.ok,
                    "fit_s": s.fit_s,
                    "steady_trials_per_s": steady_throughput(s.result_times, conc),
                    "overall_trials_per_s": burn_trials / s.fit_s if s.fit_s else float("nan"),
                    "median_in_trial_s": _median(s.trial_s),
                }
            burn["throughput_ratio_2v1"] = burn["c2"]["steady_trials_per_s"] / burn["c1"]["steady_trials_per_s"]
            burn["overall_ratio_2v1"] = burn["c2"]["overall_trials_per_s"] / burn["c1"]["overall_trials_per_s"]
            burn["in_trial_slowdown_2v1"] = burn["c2"]["median_in_trial_s"] / burn["c1"]["median_in_trial_s"]
            report["burn"] = burn
        finally:
            if started:
                ray.shutdown()
        # (c) world load
        say("(c) world load in a fresh process")
        fresh = fresh_process_load(Path(data_root) / EEG_FILE)
        report["load"] = {
            "fresh_process_wall_s": fresh["process_s"],
            "fresh_import_s": fresh["import_s"],
            "fresh_load_s": fresh["load_s"],
            "trials": fresh["trials"],
            "reused_actor_load_s": report["noop"]["reuse_load_s"],
            "speedup": fresh["load_s"] / report["noop"]["reuse_load_s"] if report["noop"]["reuse_load_s"] else float("nan"),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def perf_table(report: dict) -> Table:
    n, b, ld = report["noop"], report["burn"], report["load"]
    t = Table(title=f"bench perf ({report['cpus']} CPUs, {report['dataset_id']})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("how")
    t.add_row("ray.init", f"{report['ray_init_s']:.2f} s", "once per `bench run`")
    t.add_row("(a) harness overhead per trial", f"{n['overhead_per_trial_s'] * 1000:.0f} ms",
              f"median wall per trial {n['median_wall_per_trial_s'] * 1000:.0f} ms - in-trial {n['median_in_trial_s'] * 1000:.0f} ms ({n['trials']} noop, 1 at a time, reused actor)")  # fmt: skip
    t.add_row("    first trial (actor start)", f"{n['first_trial_s']:.2f} s", "includes worker start and imports")
    t.add_row("    amortized per trial", f"{n['amortized_per_trial_s'] * 1000:.0f} ms", "Tuner.fit wall / trials")
    t.add_row("(b) throughput 2 vs 1 concurrent", f"{b['throughput_ratio_2v1']:.2f}x",
              f"burn trials ({b['iters']} matmuls, {b['c1']['median_in_trial_s']:.2f} s alone), steady state; "
              f"incl. start-up {b['overall_ratio_2v1']:.2f}x")  # fmt: skip
    t.add_row("    per-trial slowdown when 2 share", f"{b['in_trial_slowdown_2v1']:.2f}x", f"in-trial {b['c2']['median_in_trial_s']:.2f} s vs {b['c1']['median_in_trial_s']:.2f} s")
    t.add_row("(c) world load, fresh process", f"{ld['fresh_load_s']:.2f} s", f"load_release of {ld['trials']} trials; process incl. imports {ld['fresh_process_wall_s']:.2f} s")
    t.add_row("    reused actor (cached, mmap)", f"{ld['reused_actor_load_s'] * 1000:.0f} ms", f"load stage of a noop trial; {ld['speedup']:.0f}x faster")
    return t
