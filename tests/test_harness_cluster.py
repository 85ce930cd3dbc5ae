"""`bench run --address` on a real two-node Ray cluster simulated on this machine
(`ray start --head` plus `ray start --address=...`), each node with one CPU: the shipped smoke grid
on the mini world (a subset of its methods: the harness's no-op, a trained EEG classifier, chance,
and a reference row that loads the mini backbones and generates), then a rerun that has nothing to do."""

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

from bench.results.store import Store

import pytest

METHODS = ["noop", "chance", "lstm", "oracle_label"]  # of the smoke grid's 12: keeps this test near a minute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """End a `ray start --block` node and everything it started (its own process group; its workers
    fate-share with its raylet). SIGTERM is not enough for `ray start --block`."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=15)


WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, include_dashboard=False, logging_level="ERROR")
deadline = time.monotonic() + float(sys.argv[3])
while sum(1 for node in ray.nodes() if node.get("Alive")) < int(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit(f"cluster nodes: {ray.nodes()}")
    time.sleep(0.3)
"""


def wait_for_nodes(address: str, n: int, env: dict, timeout: float = 60) -> None:
    """In a separate process: this test's process keeps no Ray state between sessions."""
    out = subprocess.run([sys.executable, "-c", WAIT_FOR_NODES, address, str(n), str(timeout)], env=env,
                         capture_output=True, text=True, timeout=timeout + 30)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]


def bench_run(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "run", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_grid_on_a_two_node_cluster(mini_world, tmp_path):
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray puts unix sockets under it
    # the driver and both nodes agree on no token authentication (no token files are touched)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "BRAINVIS_BENCH_CODE_VERSION": "test-harness-cluster"}
    common = dict(cwd=temp, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes: list[subprocess.Popen] = []
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
        wait_for_nodes(address, 2, env)

        args = ["--grid", "smoke", "--methods", ",".join(METHODS), "--data", str(mini_world[0]), "--store", str(store), "--address", address]
        out = bench_run(args, env, tmp_path)  # the real command line, in its own process
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"ran {len(METHODS)} ({len(METHODS)} ok, 0 failed)" in out.stdout
        recs = list(Store(store).records())
        assert sorted(r["method"] for r in recs) == sorted(METHODS) and all(r["status"] == "ok" for r in recs)
        assert all(r.get("ray_node") and r["grid"] == "smoke" for r in recs)
        by = {r["method"]: r for r in recs}
        import tomllib

        budget = tomllib.loads((Path(__file__).resolve().parents[1] / "bench" / "profiles" / "mini.toml").read_text())["lstm"]["epochs"]
        lstm = by["lstm"]["fit"]
        assert lstm["epochs"] == budget and 0 <= lstm["best_epoch"] <= lstm["epochs_run"] <= budget  # trained on a worker, selected on val
        assert by["chance"]["metrics"]["top1"]["value"] < 0.2 and abs(by["noop"]["metrics"]["top1"]["value"] - 1 / 40) < 1e-9
        assert by["oracle_label"]["images_dir"] and "clip_similarity" in by["oracle_label"]["metrics"]
        # a rerun against the cluster has nothing to do
        out = bench_run(args, env, tmp_path)
        assert out.returncode == 0 and "ran 0" in out.stdout, out.stderr[-3000:]
    finally:
        for proc in reversed(nodes):
            stop(proc)
        if not os.environ.get("KEEP_RAY_TEMP"):
            shutil.rmtree(temp, ignore_errors=True)
