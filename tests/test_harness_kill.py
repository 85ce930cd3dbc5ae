"""kill -9 of a running `bench run` loses no finished work and leaves no partial record; a rerun
completes the grid with results equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.cli.app import main

SLEEP_GRID = """
description = "eight one-second trials"
[axes]
method = ["sleep"]
subject = [1]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""
VERSION = "test-harness-kill"


def test_kill_9_then_rerun_completes_with_identical_results(smoke_world, tmp_path, monkeypatch):
    import ray

    from bench.experiment.runner import start_ray

    monkeypatch.setenv("BRAINVIS_BENCH_CODE_VERSION", VERSION)
    grid = tmp_path / "sleep.toml"
    grid.write_text(SLEEP_GRID)
    data = str(smoke_world[0])
    killed = tmp_path / "killed"
    records = killed / "records"

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--grid", str(grid), "--data", data, "--store", str(killed), "--max-concurrent", "2"],
        cwd=tmp_path, env={**os.environ}, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if records.is_dir() and len(list(records.glob("*.json"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"bench run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(1.5)  # trials already inside fit may still finish (and write complete records) before their node dies
    at_kill = sorted(records.glob("*.json"))
    assert 2 <= len(at_kill) < 8
    for p in at_kill:
        assert json.loads(p.read_text())["status"] == "ok"  # every file is a complete record

    started = start_ray(num_cpus=2)  # one local Ray for the rerun and the reference run
    try:
        assert main(["run", "--grid", str(grid), "--data", data, "--store", str(killed)]) == 0
        reference = tmp_path / "reference"
        assert main(["run", "--grid", str(grid), "--data", data, "--store", str(reference)]) == 0
    finally:
        if started:
            ray.shutdown()

    def by_key(store: Path) -> dict:
        files = sorted(p for p in (store / "records").iterdir())
        assert all(p.suffix == ".json" and not p.name.startswith(".") for p in files), files  # nothing partial or temporary
        return {p.stem: json.loads(p.read_text()) for p in files}

    got, want = by_key(killed), by_key(reference)
    assert len(want) == 8 and set(got) == set(want)
    for key, rec in got.items():
        assert rec["key"] == key and rec["status"] == "ok"
        assert rec["metrics"] == want[key]["metrics"]
    for p in at_kill:  # the work done before the kill was kept, not redone
        assert json.loads(p.read_text())["finished"] == got[p.stem]["finished"]
