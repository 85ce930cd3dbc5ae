"""`bench run --address` on a real two-node Ray cluster simulated on this machine
(`ray start --head` plus `ray start --address=...`), each node with one CPU."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cli import main
from bench.store import Store

GRID = """
description = "noop grid for the cluster test"
[axes]
method = ["noop"]
subject = [1, 2]
seed = [0, 1]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """End a `ray start --block` node and everything it started (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=15)


def wait_for_nodes(address: str, n: int, timeout: float = 60) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, include_dashboard=False, logging_level="ERROR")
    try:
        deadline = time.monotonic() + timeout
        while sum(1 for node in ray.nodes() if node.get("Alive")) < n:
            assert time.monotonic() < deadline, f"only {ray.nodes()} after {timeout} s"
            time.sleep(0.3)
    finally:
        ray.shutdown()


def test_run_on_a_two_node_cluster(smoke_world, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINVIS_BENCH_CODE_VERSION", "test-harness-cluster")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the driver and both nodes agree (no token files touched)
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray puts unix sockets under it
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    common = dict(cwd=temp, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes: list[subprocess.Popen] = []
    grid = tmp_path / "cluster.toml"
    grid.write_text(GRID)
    store = tmp_path / "store"
    try:
        nodes.append(subprocess.Popen(
            [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={temp}", "--block"], **common))  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert nodes[0].poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "head node did not come up"
                time.sleep(0.3)
        nodes.append(subprocess.Popen(
            [ray_bin, "start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats", "--block"], **common))  # fmt: skip
        wait_for_nodes(address, 2)

        rc = main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(store), "--address", address])
        assert rc == 0
        recs = list(Store(store).records())
        assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
        assert all(r.get("ray_node") for r in recs)
        # a rerun against the cluster has nothing to do
        assert main(["run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(store), "--address", address]) == 0
    finally:
        for proc in reversed(nodes):
            stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
