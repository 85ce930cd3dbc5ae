"""`bench run` end to end on the smoke world: records, skip on rerun, failures, retry, errors that
leave the store untouched. One local Ray instance serves the whole module (the runner reuses it)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from bench.cli.app import main
from bench.methods.base import TrialSpec
from bench.results.store import Store, make_record, now_iso

VERSION = "test-harness-run"

NOOP_GRID = """
description = "noop grid for tests"
[axes]
method = ["noop"]
subject = [1, 2]
w = [0.0, 1.0]     # collapses: noop has no w
seed = [0, 1]
"""

FAILING_GRID = """
description = "a trial that raises, next to one that does not"
[axes]
method = ["sleep", "noop"]
subject = [1]
[[variants]]
name = "broken"
options = { seconds = "not a number" }
methods = ["sleep"]
"""


@pytest.fixture(scope="module", autouse=True)
def pinned_version():
    old = os.environ.get("BRAINVIS_BENCH_CODE_VERSION")
    os.environ["BRAINVIS_BENCH_CODE_VERSION"] = VERSION  # keys must not move when someone commits mid-test
    yield
    if old is None:
        os.environ.pop("BRAINVIS_BENCH_CODE_VERSION", None)
    else:
        os.environ["BRAINVIS_BENCH_CODE_VERSION"] = old


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from bench.experiment.runner import start_ray

    started = start_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def grid_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("grids")
    (d / "noop.toml").write_text(NOOP_GRID)
    (d / "failing.toml").write_text(FAILING_GRID)
    return d


@pytest.fixture(scope="module")
def done_store(smoke_world, grid_files, ray_local, tmp_path_factory):
    """The noop grid, run once: (store path, rc, seconds)."""
    store = tmp_path_factory.mktemp("runs") / "noop"
    t = time.perf_counter()
    rc = main(["run", "--grid", str(grid_files / "noop.toml"), "--data", str(smoke_world[0]), "--store", str(store)])
    return store, rc, time.perf_counter() - t


def listing(root: Path) -> dict:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_writes_one_complete_record_per_trial(done_store, smoke_world):
    store, rc, _ = done_store
    assert rc == 0
    st = Store(store)
    recs = list(st.records())
    assert len(recs) == 4  # 2 subjects x 2 seeds; the w axis collapsed
    assert {(r["subject"], r["seed"], r["w"]) for r in recs} == {(s, seed, 0.5) for s in (1, 2) for seed in (0, 1)}
    world_id = json.loads((smoke_world[0] / "world.json").read_text())["world_id"]
    for r in recs:
        assert r["status"] == "ok" and r["method"] == "noop" and r["grid"] == "noop"
        assert r["config"]["dataset_id"] == world_id and r["code_version"] == VERSION
        assert r["metrics"]["top1"]["value"] == pytest.approx(1 / 40)
        assert {"load", "fit", "predict"} <= set(r["timings"]) and r["n_train"] > 0 and r["n_test"] > 0
        assert r["started"] <= r["finished"] and r["host"] and r["versions"]["torch"] and r["versions"]["cpu"]
    df = st.load_frame()
    assert {"metric.top1", "metric.top1.ci_low", "metric.top1.ci_high"} <= set(df.columns)
    assert not list(st.records_dir.glob("*.tmp")) and st.stages() == {}


def test_rerun_runs_nothing_and_is_fast(done_store, grid_files, smoke_world, capsys):
    store, _, first_s = done_store
    before = listing(store / "records")
    t = time.perf_counter()
    rc = main(["run", "--grid", str(grid_files / "noop.toml"), "--data", str(smoke_world[0]), "--store", str(store)])
    took = time.perf_counter() - t
    assert rc == 0
    assert listing(store / "records") == before
    out = capsys.readouterr().out
    assert "ran 0" in out and "peak memory" not in out  # nothing pending: Ray never started
    print(f"rerun of a finished grid: {took:.2f} s")  # timed by `bench perf`, not asserted here


@pytest.mark.parametrize(
    "case",
    ["bad_values", "unknown_method", "unknown_subject", "unknown_key", "unreachable_address", "bad_seed_flag"],
)
def test_user_errors_exit_2_with_one_line_and_leave_store_untouched(case, done_store, grid_files, smoke_world, tmp_path, capsys):
    store = done_store[0]
    grid = grid_files / "noop.toml"
    extra: list[str] = []
    expect = {
        "bad_values": "fraction 0",
        "unknown_method": "unknown method(s) 'nosuch'",
        "unknown_subject": "subject(s) 9 not in the dataset",
        "unknown_key": "unknown axis key(s) ['seeds']",
        "unreachable_address": "cannot reach a Ray cluster",
        "bad_seed_flag": "seed -1",
    }[case]
    if case == "bad_values":
        grid = tmp_path / "bad.toml"
        grid.write_text('[axes]\nmethod = ["noop"]\nfraction = [0, 1]\n')
    elif case == "unknown_method":
        extra = ["--methods", "noop,nosuch"]
    elif case == "unknown_subject":
        extra = ["--subjects", "1", "--subjects", "9"]
    elif case == "unknown_key":
        grid = tmp_path / "bad.toml"
        grid.write_text('[axes]\nmethod = ["noop"]\nseeds = [0]\n')
    elif case == "unreachable_address":
        extra = ["--address", f"127.0.0.1:{free_port()}", "--subjects", "3"]  # subject 3: a trial would run
    elif case == "bad_seed_flag":
        extra = ["--seeds=-1,2"]
    before = listing(store)
    capsys.readouterr()
    t = time.perf_counter()
    rc = main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(store), *extra])
    took = time.perf_counter() - t
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], err
    assert listing(store) == before
    assert took < 10, took
    # and a store that does not exist yet is not created
    fresh = tmp_path / "fresh"
    assert main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(fresh), *extra]) == 2
    assert not fresh.exists()


def test_failed_trial_is_recorded_and_retried_only_on_request(grid_files, smoke_world, tmp_path, ray_local, capsys):
    store = tmp_path / "st"
    args = ["run", "--grid", str(grid_files / "failing.toml"), "--data", str(smoke_world[0]), "--store", str(store)]
    assert main(args) == 1  # some trial failed
    st = Store(store)
    recs = {r["method"]: r for r in st.records()}
    assert recs["noop"]["status"] == "ok"  # the other trial is unaffected
    bad = recs["sleep"]
    assert bad["status"] == "failed" and bad["variant"] == "broken" and bad["options"] == {"seconds": "not a number"}
    assert bad["error"]["type"] == "ValueError" and "not a number" in bad["error"]["message"]
    assert "Traceback" in bad["traceback"] and "ValueError" in bad["traceback"]
    assert bad["metrics"] == {}
    capsys.readouterr()

    # rerun: the failed trial is reported and skipped (no Ray, nothing rewritten)
    before = listing(store / "records")
    t = time.perf_counter()
    assert main(args) == 1
    assert time.perf_counter() - t < 3.0
    assert listing(store / "records") == before
    captured = capsys.readouterr()
    assert "1 failed before (use --retry-failed)" in captured.out and "failed" in captured.err

    # --retry-failed runs it again (it fails again: new record), the ok one stays untouched
    assert main([*args, "--retry-failed"]) == 1
    after = {r["method"]: r for r in st.records()}
    assert after["sleep"]["run_id"] != bad["run_id"] and after["sleep"]["finished"] > bad["finished"]
    assert after["noop"]["finished"] == recs["noop"]["finished"]


def test_retry_failed_turns_a_failed_record_ok(smoke_world, tmp_path, ray_local):
    from bench.experiment.runner import plan, run_grid
    from bench.experiment.trial import RunEnv

    root = smoke_world[0]
    env = RunEnv(data_root=str(root), dataset_id="w", backbones="none")
    st = Store(tmp_path / "st")
    specs = [TrialSpec("noop", subject=1, seed=5)]
    (p,) = plan(specs, env)
    st.write(make_record(key=p.key, spec=p.spec, identity=p.identity, started=now_iso(), finished=now_iso(), wall_s=0.0,
                         error=RuntimeError("earlier crash"), traceback_text="..."))  # fmt: skip
    (st.records_dir / ".stale.json.abc.tmp").write_text("{")  # left by a crash mid-write
    s = run_grid(specs, env, st, max_concurrent=1)
    assert (s.ran, s.skipped_failed, s.failed_keys) == (0, 1, [p.key]) and st.status(p.key) == "failed"
    s = run_grid(specs, env, st, max_concurrent=1, retry_failed=True)
    assert (s.ran, s.ok, s.failed) == (1, 1, 0) and st.status(p.key) == "ok"
    assert not list(st.records_dir.glob("*.tmp"))
    assert s.trial_s and s.result_times  # the driver saw the result stream
    assert s.peak_pss_mib > 100 and s.peak_used_mib >= 0  # this process alone holds torch


def test_peak_memory_counts_a_child_process():
    """An independent check of bench.experiment.memory: a grandchild that fills 300 MiB raises its tree's PSS by about that.

    Each tree is rooted at its own shell, so processes this test session started earlier (Ray's, which
    may exit while we measure) are not counted.
    """
    import subprocess
    import sys

    import psutil

    from bench.experiment.memory import tree_pss_mib

    def tree_with_filler(mib: int) -> float:
        fill = f"import sys; b = bytearray({mib} * 2**20); b[::4096] = b'x' * len(b[::4096]); print('ok', flush=True); sys.stdin.read()"
        shell = subprocess.Popen(["/bin/sh", "-c", f'"{sys.executable}" -c "{fill}"; true'],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert shell.stdout.readline().strip() == "ok"
            root = psutil.Process(shell.pid)
            assert len(root.children(recursive=True)) == 1  # the filler is the shell's child
            return tree_pss_mib(root)
        finally:
            shell.communicate("")

    empty, full = tree_with_filler(0), tree_with_filler(300)
    assert 290 < full - empty < 360, (empty, full)


def test_peak_memory_reads_pss_at_its_own_slower_cadence(monkeypatch):
    """The expensive PSS pass runs every ``pss_interval_s``; the cheap used-memory read every ``interval_s``."""
    import time

    from bench.experiment import memory as M

    calls = {"pss": 0, "used": 0}

    def pss(*a):
        calls["pss"] += 1
        return 100.0 + calls["pss"]

    def used():
        calls["used"] += 1
        return 1000.0 + 10 * calls["used"]

    monkeypatch.setattr(M, "tree_pss_mib", pss)
    monkeypatch.setattr(M, "used_mib", used)
    with M.PeakMemory(interval_s=0.01, pss_interval_s=0.1) as m:
        time.sleep(0.5)
    ticks = calls["used"] - 2  # minus the baseline read and the first sample
    assert ticks >= 20
    assert 2 + ticks // 10 - 1 <= calls["pss"] <= 2 + ticks // 10 + 1  # start, every 10th tick, stop
    assert m.peak_pss == 100.0 + calls["pss"]  # the last (largest) reading, taken at stop
    assert m.peak_used == 10 * calls["used"] - 10  # rise over the baseline, read every tick
    # a peak another monitor saw during part of the span (the grid runner's, through the trials) is folded in:
    # the command's peak is never below the trials' peak (it once read 4.96 GiB against 5.40 for the trials)
    before = m.peak_pss
    m.include(before + 50.0)
    assert m.peak_pss == before + 50.0
    m.include(1.0)
    assert m.peak_pss == before + 50.0


def test_progress_display_renders(tmp_path):
    from rich.console import Console

    from bench.experiment.progress import RunProgress
    from bench.experiment.runner import PlannedTrial, RunSummary

    st = Store(tmp_path)
    console = Console(file=open(os.devnull, "w"), width=120)
    prog = RunProgress(st, title="t", console=console, live=False)
    trials = [PlannedTrial(TrialSpec("noop", seed=i), f"k{i}", {}) for i in range(3)]
    prog.start(RunSummary(total=4, skipped_ok=1), trials)
    st.set_stage("k1", "fit")
    prog.result("k0", "ok", 0.1)
    c = Console(width=120, record=True)
    c.print(prog)
    text = c.export_text()
    assert "1/3 done" in text and "fit" in text and "noop s4" in text and "ETA" in text
    prog.stop()


def test_perf_helpers():
    from bench.experiment.perf import calibrate_burn, steady_throughput

    assert steady_throughput([5.0, 6.0, 7.0, 8.0], 1) == 1.0  # the first result (actor start) is left out
    assert steady_throughput([5.0, 5.1, 6.0, 6.1], 2) == 2.0
    assert calibrate_burn(0.05) >= 10


def test_run_summary_table_fits_the_screen_and_keeps_the_headline_metrics(monkeypatch):
    """`bench run`'s closing table: never a truncated cell at any width; headline metrics first, named as
    in the leaderboard; the rest counted in a caption; 160 columns when stdout is a log file."""
    import io

    import pandas as pd
    from rich.console import Console

    from bench.results.summary import metric_summary, print_table, summary_width

    names = ["top1", "n_way_top_k", "inception_score", "ssim", "clip_similarity", "fid", "top5", "top3", "macro_f1", "n_way_top_k_label"]
    for methods in (["lstm"], ["lstm", "brainvis_stage2_random"]):
        rows = [{"key": f"k{i}", "method": m, "variant": None, "status": "ok", **{f"metric.{n}": (1234.5 if n == "fid" else 0.5 + i) for n in names}}
                for i, m in enumerate(methods)]  # fmt: skip
        frame = pd.DataFrame(rows)
        for width in range(40, 201):  # 40: a narrow terminal, still wider than the method/ok/failed columns
            table = metric_summary(frame, [r["key"] for r in rows], width=width)
            console = Console(width=width, record=True, file=io.StringIO())
            console.print(table)
            text = console.export_text()
            assert "…" not in text and all(m in text for m in methods), (methods, width)
            headers = [c.header for c in table.columns]
            order = ["top-1", "top-5", "N-way top-K", "IS", "SSIM", "CS", "FID", "macro-F1", "N-way top-K (label)", "top-3"]  # leaderboard columns, then the rest
            assert headers[3:] == order[: len(headers) - 3]
            left = 13 - len(headers)
            assert (table.caption or "") == (f"{left} more metric(s) in the store's records" if left else "")
            assert left > 0 if width <= 80 else True
        assert left == 0  # at 200 columns every metric is shown
    assert "1234.500" in text

    monkeypatch.delenv("COLUMNS", raising=False)
    log = io.StringIO()
    to_file = Console(file=log)  # not a terminal: rich would use 80 columns
    assert summary_width(to_file) == 160 and summary_width(Console(file=io.StringIO(), force_terminal=True, width=90)) == 90
    print_table(to_file, metric_summary(frame, ["k0", "k1"], width=160))
    assert "…" not in log.getvalue() and max(map(len, log.getvalue().splitlines())) > 120
