"""First contact: every usage mistake gets click's usage message and exit 2 (never a traceback), and
the command line's other edges (store paths, silent cluster addresses, bad datasets, malformed
records, locks, progress lines, `bench methods`) give one clear line."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer
from rich.console import Console

from bench.cli.app import app, main


def command_table(typer_app=app, prefix: list[str] | None = None) -> list[tuple[list[str], object]]:
    """Every command and group of the CLI as (argv prefix, callback or None for a group), walked
    from typer's own registrations (not click internals, which typer releases change)."""
    prefix = prefix or []
    out: list[tuple[list[str], object]] = [(prefix, None)]
    for c in typer_app.registered_commands:
        out.append((prefix + [c.name or c.callback.__name__.replace("_", "-")], c.callback))
    for g in typer_app.registered_groups:
        out += command_table(g.typer_instance, prefix + [g.name])
    return out


def _params(callback) -> list[tuple[str, object, object]]:
    """(first flag or '' for an argument, python type, typer info) per parameter of a command."""
    import inspect
    import typing

    hints = typing.get_type_hints(callback)
    out = []
    for name, p in inspect.signature(callback).parameters.items():
        info = p.default
        kind = type(info).__name__
        tp = hints.get(name)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if args and typing.get_origin(tp) is typing.Union else tp
        if kind == "OptionInfo":
            decls = [d for d in (info.param_decls or ()) if d.startswith("--")] or [f"--{name.replace('_', '-')}"]
            out.append((decls[0].split("/")[0], tp, info))
        elif kind == "ArgumentInfo":
            out.append(("", tp, info))
    return out


def bad_usages() -> list[tuple[str, list[str]]]:
    cases = []
    for path, callback in command_table():
        label = " ".join(path) or "bench"
        cases.append((f"{label}: unknown option", path + ["--definitely-not-an-option"]))
        if callback is None:
            cases.append((f"{label}: unknown command", path + ["nosuchcommand"]))
            continue
        params = _params(callback)
        if any(info.default is ... for _, _, info in params):
            cases.append((f"{label}: missing a required parameter", list(path)))
        for flag, tp, _ in params:
            if flag and tp in (int, float):
                cases.append((f"{label}: {flag} not a number", path + [flag, "not-a-number"]))
    return cases


CASES = bad_usages()


def test_the_table_covers_every_command():
    import click

    labels = {c[0].split(":")[0] for c in CASES}
    leaves = {" ".join(p) for p, cb in command_table() if cb is not None}
    assert leaves <= labels and {"run", "methods list", "methods show", "score", "world build", "data check"} <= leaves
    # and the walk agrees with the click command tree typer builds
    def click_leaves(cmd, path=()):
        subs = getattr(cmd, "commands", None)
        if not subs:
            return {" ".join(path)}
        return set().union(*(click_leaves(c, (*path, n)) for n, c in subs.items()))

    assert click_leaves(typer.main.get_command(app)) == leaves
    assert sum("not a number" in c[0] for c in CASES) >= 8
    del click


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_usage_exits_2_with_usage_and_no_traceback(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 2, text
    assert "Traceback" not in text
    assert "Usage:" in out.err and "Error:" in out.err


@pytest.mark.parametrize("argv", [[], ["world"], ["methods"], ["grid"]])
def test_a_bare_command_or_group_prints_its_help(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out and "Traceback" not in out


def test_the_installed_console_script_behaves_the_same(tmp_path):
    """`python -m bench` in a fresh process: typer's own error path, not just main() in-process."""
    for argv in (["run"], ["run", "--gird", "x"], ["methods", "nope"]):
        r = subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "bench"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "Usage:" in r.stdout


def test_methods_list_names_every_builtin_method_and_reference_row(capsys):
    import baselines
    from bench.cli.methods import method_rows

    rows = {r["name"]: r for r in method_rows()}
    for name in ("brainvis", "dreamdiffusion", *baselines.CLASSIFY_THEN_DRAW, *baselines.REFERENCE_ROWS, "chance"):
        assert name in rows, name
    assert rows["brainvis"]["uses_w"] and rows["brainvis"]["kind"] == "EEG method"
    assert rows["oracle_label"]["kind"] == "reference row" and rows["chance"]["kind"] == "reference row"
    assert rows["noop"]["kind"] == "harness test" and not rows["noop"]["needs_generator"]
    assert main(["methods", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == list(rows)


def test_methods_show_gives_defaults_and_their_sources(capsys):
    from bench.cli.methods import method_config

    rows = {r["key"]: r for r in method_config("brainvis", "mini")}
    assert rows["d_model"]["value"] == 64 and rows["d_model"]["default"] == 1024 and rows["d_model"]["from"] == "profile mini"
    assert rows["use_time"]["from"] == "code default"
    eeg = {r["key"]: r for r in method_config("eegnet", "mini")}
    assert eeg["kernel_length"]["value"] == 16 and eeg["drop_prob"]["from"] == "code default"  # braindecode's own default
    assert main(["methods", "show", "lstm", "--profile", "paper"]) == 0
    assert "profile paper" in capsys.readouterr().out
    assert main(["methods", "show", "nosuch"]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# bench run: store folder, cluster address, empty flags, dataset validation, lock
# ------------------------------------------------------------------------------------------------

NOOP_GRID = '[axes]\nmethod = ["noop"]\nsubject = [1]\n'


def _error_line(err: str) -> str:
    """The run's one error line (progress lines, `[m:ss] ...`, may come before it)."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.fixture()
def noop_grid(tmp_path):
    p = tmp_path / "noop.toml"
    p.write_text(NOOP_GRID)
    return p


@pytest.mark.parametrize("case", ["store_is_a_file", "store_under_a_file", "store_unwritable", "empty_subjects", "silent_address"])
def test_run_refuses_bad_stores_flags_and_addresses_with_one_line(case, smoke_world, noop_grid, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    store = tmp_path / "store"
    extra: list[str] = []
    expect = {"store_is_a_file": "not a folder", "store_under_a_file": "is a file", "store_unwritable": "cannot write there",
              "empty_subjects": "--subjects: no values given", "silent_address": "did not answer"}[case]  # fmt: skip
    server = None
    if case == "store_is_a_file":
        store = a_file
    elif case == "store_under_a_file":
        store = a_file / "store"
    elif case == "store_unwritable":
        store = Path("/proc/bench-store")  # writable by no one, root included
    elif case == "empty_subjects":
        extra = ["--subjects", ""]
    elif case == "silent_address":
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # accepts (the kernel completes the handshake) and never answers
        extra = ["--address", f"127.0.0.1:{server.getsockname()[1]}"]
    capsys.readouterr()
    t = time.perf_counter()
    try:
        rc = main(["run", "--grid", str(noop_grid), "--data", str(smoke_world[0]), "--store", str(store), *extra])
    finally:
        if server is not None:
            server.close()
    took = time.perf_counter() - t
    assert rc == 2
    assert expect in _error_line(capsys.readouterr().err)
    assert took < 15, took  # the silent address: the 5 s answer timeout, not ray.init's endless wait
    if case not in ("store_is_a_file", "store_under_a_file", "store_unwritable"):
        assert not store.exists()


def _copy_world(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.mark.parametrize("damage", ["truncated_eeg", "evil_splits", "corrupt_image", "image_symlink_outside", "missing_image"])
def test_run_validates_the_dataset_before_ray_and_writes_nothing(damage, smoke_world, noop_grid, tmp_path, capsys):
    import pickle

    world = _copy_world(smoke_world[0], tmp_path / "world")
    an_image = sorted((world / "images").rglob("*.JPEG"))[0]
    if damage == "truncated_eeg":
        p = world / "eeg_5_95_std.pth"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    elif damage == "evil_splits":
        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        (world / "block_splits_by_image_all.pth").write_bytes(pickle.dumps({"splits": Evil()}))
    elif damage == "corrupt_image":
        an_image.write_bytes(an_image.read_bytes()[:200])
    elif damage == "image_symlink_outside":
        outside = tmp_path / "elsewhere.JPEG"
        shutil.copy(an_image, outside)
        an_image.unlink()
        an_image.symlink_to(outside)
    elif damage == "missing_image":
        an_image.unlink()
    expect = {"truncated_eeg": "truncated or corrupt", "evil_splits": "refused to load", "corrupt_image": "does not decode",
              "image_symlink_outside": "outside the image folder", "missing_image": "missing"}[damage]  # fmt: skip
    store = tmp_path / "store"
    capsys.readouterr()
    rc = main(["run", "--grid", str(noop_grid), "--data", str(world), "--store", str(store)])
    assert rc == 2
    assert expect in _error_line(capsys.readouterr().err)
    assert not store.exists()
    # `bench data check` says the same
    assert main(["data", "check", str(world)]) == 2
    assert expect in capsys.readouterr().err


def test_data_check_decodes_every_image_or_a_stated_sample(smoke_world, capsys):
    assert main(["data", "check", str(smoke_world[0]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images_decoded"] == summary["n_images"] == 240
    assert main(["data", "check", str(smoke_world[0]), "--quick", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images_decoded"] == 200


def test_validation_is_remembered_per_version_of_the_files(smoke_world, tmp_path, monkeypatch):
    from bench.data import check as datacheck

    world = _copy_world(smoke_world[0], tmp_path / "world")
    cache = tmp_path / "cache"
    calls = []
    real = datacheck.run_isolated if hasattr(datacheck, "run_isolated") else None
    import bench.experiment.isolated

    orig = bench.experiment.isolated.run_isolated

    def counting(*a, **k):
        calls.append(a)
        return orig(*a, **k)

    monkeypatch.setattr(bench.experiment.isolated, "run_isolated", counting)
    first = datacheck.validate_dataset(world, cache=cache)
    assert datacheck.validate_dataset(world, cache=cache) == first and len(calls) == 1
    captions = world / "captions.json"
    captions.write_text(captions.read_text())  # same content, new mtime: checked again
    os.utime(captions, ns=(time.time_ns(), time.time_ns() + 10**9))
    datacheck.validate_dataset(world, cache=cache)
    assert len(calls) == 2
    del real


def test_a_second_run_on_a_locked_store_is_refused(smoke_world, noop_grid, tmp_path, capsys):
    from bench.results.store import StoreLock

    store = tmp_path / "store"
    with StoreLock(store):
        rc = main(["run", "--grid", str(noop_grid), "--data", str(smoke_world[0]), "--store", str(store)])
    assert rc == 2
    line = _error_line(capsys.readouterr().err)
    assert "in use by another `bench run`" in line and f"pid {os.getpid()}" in line
    assert not (store / "records").exists()


def test_shipped_grid_leaderboard_is_written_from_any_folder(smoke_world, tmp_path, monkeypatch, capsys):
    import ray

    from bench.experiment.runner import start_ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRAINVIS_BENCH_CODE_VERSION", "test-first-contact")
    started = start_ray(num_cpus=2)
    try:
        rc = main(["run", "--grid", "smoke", "--methods", "noop", "--data", str(smoke_world[0]), "--store", str(tmp_path / "s")])
    finally:
        if started:
            ray.shutdown()
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "leaderboard not written" not in out.err
    assert (tmp_path / "s" / "leaderboard" / "smoke.md").is_file()


# ------------------------------------------------------------------------------------------------
# Malformed records, progress lines
# ------------------------------------------------------------------------------------------------


def test_malformed_records_are_skipped_with_a_warning_naming_the_file(tmp_path, capsys):
    src = Path(__file__).resolve().parents[1] / "leaderboards" / "records" / "records"
    good = [p for p in sorted(src.glob("*.json")) if not json.loads(p.read_text()).get("variant")][:1]  # compare pairs records without a variant
    store = tmp_path / "store"
    (store / "records").mkdir(parents=True)
    for p in good:
        shutil.copy(p, store / "records" / p.name)
    method = json.loads(good[0].read_text())["method"]
    bad = {"null.json": "null", "list.json": "[]", "nometrics.json": json.dumps({**json.loads(good[0].read_text()), "key": "x", "metrics": None}),
           "garbage.json": "{not json"}  # fmt: skip
    for name, text in bad.items():
        (store / "records" / name).write_text(text)
    assert main(["leaderboard", "--store", str(store), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name in bad:
        assert f"{name}: skipped" in err
    assert main(["compare", method, method, "--store", str(store)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_line_log_prints_a_heartbeat_when_quiet():
    from bench.experiment.progress import LineLog

    buf = io.StringIO()
    log = LineLog(Console(file=buf, width=200), heartbeat_s=0.3)
    with log:
        log.say("step one")
        time.sleep(1.6)
        log.status = lambda: "2/5 done"
        time.sleep(1.4)
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("step one") and lines[0].startswith("[0:00]")
    assert any(ln.endswith("still running: step one") for ln in lines)
    assert lines[-1].endswith("2/5 done")


def test_run_logs_progress_lines_when_not_a_terminal(smoke_world, noop_grid, tmp_path):
    env = {**os.environ, "BRAINVIS_BENCH_CODE_VERSION": "test-first-contact-log"}
    r = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--grid", str(noop_grid), "--data", str(smoke_world[0]), "--store", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    stamped = [ln for ln in r.stderr.splitlines() if ln.startswith("[")]
    text = "\n".join(stamped)
    for step in ("checking the dataset", "trial(s) to run; starting a local Ray instance", "ok noop s1", "leakage audit", "writing the leaderboard"):
        assert step in text, r.stderr


def test_parse_multi_rejects_a_flag_with_nothing_in_it():
    from bench.cli.harness import parse_multi
    from bench.errors import UserError

    assert parse_multi(None, int, "subjects") is None and parse_multi([], int, "subjects") is None
    assert parse_multi(["1,4", "6"], int, "subjects") == [1, 4, 6]
    for empty in ([""], [" , "], ["", ","]):
        with pytest.raises(UserError, match="no values given"):
            parse_multi(empty, int, "subjects")


def test_check_address_accepts_a_grpc_answer_and_refuses_other_protocols():
    """A server answering with an HTTP/2 SETTINGS frame (what a Ray GCS does) passes; an HTTP/1
    server or one that closes the connection is refused within the timeout."""
    from bench.experiment.runner import check_address
    from bench.errors import UserError

    def serve(answer: bytes | None):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def run():
            conn, _ = srv.accept()
            conn.recv(64)
            if answer is not None:
                conn.sendall(answer)
            time.sleep(0.5)
            conn.close()

        threading.Thread(target=run, daemon=True).start()
        return srv

    ok = serve(bytes([0, 0, 6, 4, 0, 0, 0, 0, 0]) + bytes(6))
    check_address(f"127.0.0.1:{ok.getsockname()[1]}", answer_timeout=2)
    http1 = serve(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(UserError, match="not as a gRPC server"):
        check_address(f"127.0.0.1:{http1.getsockname()[1]}", answer_timeout=2)
    closes = serve(b"")
    with pytest.raises(UserError, match="did not answer"):
        check_address(f"127.0.0.1:{closes.getsockname()[1]}", answer_timeout=2)
    for s in (ok, http1, closes):
        s.close()


# ------------------------------------------------------------------------------------------------
# Ctrl-C and the network
# ------------------------------------------------------------------------------------------------

SLEEP_GRID = '[axes]\nmethod = ["sleep"]\nsubject = [1]\nseed = [0, 1, 2, 3, 4, 5]\n[[variants]]\nname = "long"\noptions = { seconds = 4.0 }\n'


def test_ctrl_c_ends_a_run_within_seconds_and_skips_the_audit(smoke_world, tmp_path):
    import signal

    grid = tmp_path / "sleep.toml"
    grid.write_text(SLEEP_GRID)
    store = tmp_path / "store"
    env = {**os.environ, "BRAINVIS_BENCH_CODE_VERSION": "test-first-contact-sigint"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--grid", str(grid), "--data", str(smoke_world[0]), "--store", str(store), "--max-concurrent", "2"],
        cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not list((store / "records").glob("*.json")):
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        t = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "running the leakage audit" not in err and "Traceback" not in err, err[-3000:]
    assert "interrupted" in err
    assert not (store / "audit.json").exists()
    print(f"Ctrl-C to exit: {took:.1f} s")
    assert took < 20, took  # "within a few seconds": measured ~3-6 s here, generous for a busy CI machine


SITECUSTOMIZE = r'''
import os, sys
_LOG = os.environ.get("NET_AUDIT_LOG")
def _hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg"):
        try:
            target = args[1] if event in ("socket.connect", "socket.sendto", "socket.sendmsg") else args[0]
            with open(_LOG, "a") as f:
                f.write(repr((os.getpid(), event, target, " ".join(sys.argv)[:200])) + "\n")
        except Exception:
            pass
if _LOG:
    with open(_LOG, "a") as f:
        f.write(repr((os.getpid(), "start", None, " ".join(sys.argv)[:200])) + "\n")
    sys.addaudithook(_hook)
'''


def test_no_process_of_a_run_touches_the_network(smoke_world, noop_grid, tmp_path):
    """Every Python process a run starts (driver, Ray's dashboard and agents, trial actors) logs its
    socket connects and name lookups through an audit hook; none may leave the machine."""
    import ast
    import ipaddress

    import psutil

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "net.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "NET_AUDIT_LOG": str(log), "BRAINVIS_BENCH_CODE_VERSION": "test-first-contact-net"}  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--grid", str(noop_grid), "--data", str(smoke_world[0]), "--store", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    events = [ast.literal_eval(line) for line in log.read_text().splitlines()]
    started = [e[3] for e in events if e[1] == "start"]
    for process in ("run --grid", "dashboard.py", "runtime_env/agent", "default_worker.py"):  # driver, Ray's, a trial actor
        assert any(process in argv for argv in started), (process, started)
    own = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)}
    own |= {"localhost", socket.gethostname(), "", None}

    def local(host) -> bool:
        host = host.decode() if isinstance(host, bytes) else host
        if host in own:
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False  # a name to resolve: a DNS query

    outside = []
    for pid, event, target, argv in events:
        if event == "start":
            continue
        if isinstance(target, tuple) and target and isinstance(target[0], (str, bytes)):
            host = target[0]
        elif isinstance(target, (str, bytes)) or target is None:
            host = target  # getaddrinfo/gethostbyname name, or a Unix socket path for connect
            if event == "socket.connect":
                continue
        else:
            continue
        if not local(host):
            outside.append((event, target, argv[:120]))
    assert not outside, outside
