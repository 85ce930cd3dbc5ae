"""Run a list of trials on Ray Tune, one store record per trial.

Each trial runs in a Ray actor with one CPU (and ``gpus_per_trial`` GPUs) and one torch thread;
actors are reused between trials (``reuse_actors=True``), so the heavy imports below (torch, the
trial pipeline) and the per-process caches of :mod:`bench.experiment.trial` (dataset release, backbones) are
paid once per actor, not once per trial. The trial itself writes its record to the store, so
finished work survives the driver being killed; a rerun skips every key whose record is ``ok``.

Exceptions inside a trial become a ``failed`` record (type, message, traceback), never a crash of
the run; failed keys are re-run only with ``retry_failed``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

# Quiet Ray before it is imported (the variables reach the processes it starts).
for _k, _v in {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report (offline machines)
    "RAY_DEDUP_LOGS": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no per-trial CSV/JSON/TensorBoard loggers
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000000",
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S": "1000000",
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S_AUTOSCALER": "1000000",
    "TUNE_WARN_SLOW_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000000",
    "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning"),
}.items():
    os.environ.setdefault(_k, _v)

import ray  # noqa: E402
import torch  # noqa: E402  (module level: a reused actor imports these once)
from ray import tune  # noqa: E402

from bench.experiment.memory import PeakMemory  # noqa: E402
from bench.methods.base import TrialSpec  # noqa: E402
from bench.methods.registry import get_method  # noqa: E402
from bench.paths import MINI_WEIGHTS_DIR  # noqa: E402
from bench.results.store import Store, code_version, identity_key, make_record, now_iso  # noqa: E402
from bench.experiment.trial import RunEnv, run_trial, trial_identity  # noqa: E402
from bench.errors import UserError  # noqa: E402

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Planning: keys and what is left to do
# ----------------------------------------------------------------------------------------------


def backbone_ids(env: RunEnv) -> dict:
    """Ids of the backbones a generating method would use, without loading any model."""
    try:
        if env.backbones == "mini":
            # bench.backbones.mini's manifest, read directly: importing that module costs seconds (open_clip)
            weights = Path(env.backbones_dir) if env.backbones_dir else MINI_WEIGHTS_DIR
            try:
                digests = json.loads((weights / "manifest.json").read_text()).get("digests", {})
            except (OSError, ValueError):
                return {"missing": str(weights)}  # the trial fails with the real message
            return {name: f"mini:{name}@{str(d)[:12]}" for name, d in sorted(digests.items())}
        if env.backbones == "paper":
            if not env.backbones_dir:
                return {"config": "default"}
            from bench.backbones.paper import load_paper_config

            cfg = asdict(load_paper_config(env.backbones_dir))
            for k in ("device", "batch_size"):
                cfg.pop(k, None)
            return {k: str(v) for k, v in sorted(cfg.items())}
    except UserError:
        return {"missing": str(env.backbones_dir or env.backbones)}  # the trial will fail with the real message
    return {}


@dataclass
class PlannedTrial:
    spec: TrialSpec
    key: str
    identity: dict
    variant: str | None = None


def _expected_cost(p: PlannedTrial) -> float:
    """Scheduling only: a method's relative ``cost`` scaled by its training-data fraction."""
    cls = get_method(p.spec.method)
    return cls.cost * (max(p.spec.fraction, 0.1) if cls.uses_fraction else 1.0)


def plan(trials: Iterable, env: RunEnv) -> list[PlannedTrial]:
    """Keys and identities for ``trials`` (TrialSpecs or :class:`bench.experiment.grid.GridTrial`), deduplicated."""
    ids: dict | None = None
    out: dict[str, PlannedTrial] = {}
    for t in trials:
        spec, variant = (t.spec, t.variant) if hasattr(t, "spec") else (t, None)
        cls = get_method(spec.method)  # UserError for unknown methods, before anything runs
        if cls.needs_generator and ids is None:
            ids = backbone_ids(env)
        identity = trial_identity(spec, env, ids if cls.needs_generator else {})
        key = identity_key(identity)
        out.setdefault(key, PlannedTrial(spec, key, identity, variant))
    return list(out.values())


# ----------------------------------------------------------------------------------------------
# The trainable (runs inside a Ray actor)
# ----------------------------------------------------------------------------------------------


def spec_to_dict(spec: TrialSpec) -> dict:
    d = asdict(spec)
    d["options"] = [[k, v] for k, v in spec.options]
    return d


def spec_from_dict(d: dict) -> TrialSpec:
    return TrialSpec(**{**d, "options": tuple((k, v) for k, v in d.get("options", []))})


def execute(payload: dict, env: RunEnv, store: Store, run_id: str | None = None, extra: dict | None = None) -> dict:
    """Run one planned trial and write its record (ok or failed); return the record."""
    spec = spec_from_dict(payload["spec"])
    key = payload["key"]
    store.set_stage(key, "start")
    started = now_iso()
    t0 = time.perf_counter()
    result = error = tb = None
    try:
        result = run_trial(spec, env, key=key, stage_cb=lambda stage: store.set_stage(key, stage))
    except Exception as exc:  # noqa: BLE001 - a failed trial is a result, not a crash of the run
        error, tb = exc, traceback.format_exc()
    record = make_record(
        key=key, spec=spec, identity=payload["identity"], started=started, finished=now_iso(),
        wall_s=time.perf_counter() - t0, result=result, error=error, traceback_text=tb,
        variant=payload.get("variant"), run_id=run_id, version=payload.get("code_version"),
    )  # fmt: skip
    record["grid"] = payload.get("grid")
    record.update(extra or {})
    store.write(record)
    return record


def release_freed_memory() -> None:
    """Collect garbage and return freed heap pages to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Without it a long-lived actor keeps the high-water mark of its largest trial."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _trainable(config: dict) -> None:
    t0 = time.perf_counter()
    if config.get("home"):
        os.environ["HOME"] = config["home"]  # the user's, not the one the local Ray instance got
    torch.set_num_threads(1)
    env = RunEnv(**{**config["env"], "plugins": tuple(config["env"].get("plugins", ()))})
    if env.device == "cuda" and not torch.cuda.is_available():
        env = dataclasses.replace(env, device="cpu")
    try:
        node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - informational only
        node = None
    record = execute(config["trial"], env, Store(config["store"]), config.get("run_id"), extra={"ray_node": node})
    release_freed_memory()  # a reused actor runs many trials: hand what this one freed back to the system
    tune.report(
        {
            "key": record["key"],
            "status": record["status"],
            "trial_s": record["wall_s"],
            "actor_s": round(time.perf_counter() - t0, 4),
            "pid": os.getpid(),
        }
    )


_LISTENERS: dict[str, Any] = {}  # run id -> driver-side function called with each trial's result


class _ResultStream(tune.Callback):
    """Tune callback forwarding trial results to the driver's listener (picklable: holds only an id)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def on_trial_result(self, iteration, trials, trial, result, **info):
        listener = _LISTENERS.get(self.run_id)
        if listener is not None and "key" in result:
            listener(result)


def _trial_dirname(trial) -> str:
    return f"trial-{trial.config['trial']['key']}"


def _trial_name(trial) -> str:
    spec = trial.config["trial"]["spec"]
    return f"{spec['method']}-s{spec['subject']}-{trial.config['trial']['key'][:6]}"


# ----------------------------------------------------------------------------------------------
# Ray
# ----------------------------------------------------------------------------------------------


def _split_address(address: str) -> tuple[str, int] | None:
    addr = address.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return (host.strip("[]") or "127.0.0.1", int(port))


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS frame
ANSWER_TIMEOUT_S = 5.0


def check_address(address: str, timeout: float = 3.0, answer_timeout: float = ANSWER_TIMEOUT_S) -> None:
    """Fail fast (one UserError) when a Ray cluster address cannot be reached or does not answer.

    A Ray head's GCS port speaks gRPC (HTTP/2): it answers the HTTP/2 connection preface with a
    SETTINGS frame at once. Something that accepts the connection and stays silent (or answers in
    another protocol) would make ``ray.init`` wait without limit; it is refused within
    ``answer_timeout`` seconds instead.
    """
    if address == "auto":
        return
    hp = _split_address(address)
    if hp is None:
        raise UserError(f"--address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379 for `ray start --head --port=6379`)")
    try:
        sock = socket.create_connection(hp, timeout=timeout)
    except OSError as exc:
        raise UserError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
            f"`ray start --head --port={hp[1]}` or leave out --address to run locally"
        ) from None
    with sock:
        answer = b""
        try:
            sock.settimeout(answer_timeout)
            sock.sendall(HTTP2_PREFACE)
            deadline = time.monotonic() + answer_timeout
            while len(answer) < 9 and time.monotonic() < deadline:
                chunk = sock.recv(64)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass  # timeout or reset: judged below
    if len(answer) < 9 or answer[3] != 0x04:  # frame header: 3 bytes length, 1 byte type (4 = SETTINGS)
        what = "did not answer" if not answer else "answered, but not as a gRPC server"
        raise UserError(
            f"{address} accepted the connection but {what} within {answer_timeout:g} s: not a Ray cluster's "
            f"GCS port (the one `ray start --head --port=PORT` prints)"
        )


def _use_token_if_available() -> None:
    """`ray start --head` (Ray 2.60) enables token authentication and stores the token in
    ``~/.ray/auth_token``; a driver must then run with ``RAY_AUTH_MODE=token``. Turn that on when a
    token is at hand and the user has not chosen a mode (token clients also reach clusters without auth)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def quiet_ray_logging() -> None:
    for name in ("ray", "ray.tune", "ray.air", "ray.train", "ray.data", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)


_RAY_HOME_FOR: dict[str, str] = {}  # {"home": the user's HOME} while a local instance started here runs with another


def _offline_ray_home() -> Path:
    """A HOME for the processes of a local Ray instance, holding ``ray_bootstrap_config.yaml``.

    Ray 2.60 starts its dashboard process even with ``include_dashboard=False`` (with only its
    usage-stats module), and that module asks the cloud metadata servers (169.254.169.254,
    metadata.google.internal) which cloud it runs on unless ``~/ray_bootstrap_config.yaml`` names a
    provider, whether or not usage stats are enabled. This file says ``provider: local``, so no
    process of a local run touches the network. Trials get the user's HOME back (:func:`_trainable`).
    """
    from bench.paths import cache_dir

    home = cache_dir() / "ray-home"
    cfg = home / "ray_bootstrap_config.yaml"
    if not cfg.is_file():
        home.mkdir(parents=True, exist_ok=True)
        cfg.write_text("# Written by brainvis-bench: a local Ray instance, no cloud provider to look up.\nprovider:\n  type: local\n")
    return home


def start_ray(*, address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` or start a local instance; returns True if this call started Ray.

    A local instance listens on 127.0.0.1 only and makes no network connection (see
    :func:`_offline_ray_home`)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    if address:
        check_address(address)
        _use_token_if_available()
        _RAY_HOME_FOR.clear()
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ... -> one line
            raise UserError(f"could not connect to the Ray cluster at {address}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    else:
        home = os.environ.get("HOME")
        os.environ["HOME"] = str(_offline_ray_home())  # inherited by every process ray.init starts
        try:
            # never attach to a `ray start` cluster by accident (address="local")
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, _node_ip_address="127.0.0.1", **kwargs)
        finally:
            if home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = home
        _RAY_HOME_FOR.clear()
        if home is not None:
            _RAY_HOME_FOR["home"] = home
    quiet_ray_logging()
    return True


# ----------------------------------------------------------------------------------------------
# run_grid
# ----------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    total: int = 0
    skipped_ok: int = 0
    skipped_failed: int = 0
    ran: int = 0
    ok: int = 0
    failed: int = 0
    not_run: int = 0  # pending trials left without a record (run interrupted)
    keys: list[str] = field(default_factory=list)
    failed_keys: list[str] = field(default_factory=list)  # failed in this run or skipped as failed
    init_s: float = 0.0
    fit_s: float = 0.0
    wall_s: float = 0.0
    result_times: list[float] = field(default_factory=list)  # driver clock at each trial result (since fit start)
    trial_s: list[float] = field(default_factory=list)  # in-trial (run_trial) seconds per trial, result order
    run_id: str | None = None
    experiment_dir: str | None = None
    cluster_cpus: float = 0.0
    cluster_nodes: int = 0
    peak_pss_mib: float = 0.0  # this process and its descendants (local Ray included), see bench.experiment.memory
    peak_used_mib: float = 0.0  # rise of the machine's used memory during the run

    def to_dict(self) -> dict:
        return asdict(self)


def run_grid(
    trials: list,
    env: RunEnv,
    store: Store,
    *,
    max_concurrent: int | None = None,
    gpus_per_trial: float = 0.0,
    address: str | None = None,
    retry_failed: bool = False,
    progress: Any = None,
    name: str = "run",
) -> RunSummary:
    """Run every trial not already ``ok`` in ``store``; returns a :class:`RunSummary`.

    ``progress``: None/False for silence, or an object with ``start(summary, pending)``,
    ``result(key, status, trial_s)`` and ``stop()`` (see :mod:`bench.experiment.progress`).
    Nothing is written to the store before Ray is up and every check has passed.
    """
    t_start = time.perf_counter()
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    if gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial}")
    if address:
        check_address(address)  # before anything else, and quickly
    planned = plan(trials, env)
    summary = RunSummary(total=len(planned), keys=[p.key for p in planned])
    pending: list[PlannedTrial] = []
    for p in planned:
        status = store.status(p.key)
        if status == "ok":
            summary.skipped_ok += 1
        elif status == "failed" and not retry_failed:
            summary.skipped_failed += 1
            summary.failed_keys.append(p.key)
        else:
            pending.append(p)
    if not pending:
        summary.wall_s = time.perf_counter() - t_start
        return summary
    pending.sort(key=_expected_cost, reverse=True)  # longest first, so no long trial runs alone at the end (stable)

    if progress and hasattr(progress, "starting"):
        progress.starting(len(pending), address)
    t = time.perf_counter()
    started_ray = start_ray(address=address, num_cpus=max_concurrent)
    summary.init_s = time.perf_counter() - t
    memory = PeakMemory().start()  # Ray's own processes are up, and count
    try:
        resources = ray.cluster_resources()
        summary.cluster_cpus = float(resources.get("CPU", 0))
        summary.cluster_nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        if gpus_per_trial > 0 and resources.get("GPU", 0) < gpus_per_trial:
            raise UserError(f"--gpus-per-trial {gpus_per_trial}: the Ray cluster has {resources.get('GPU', 0):g} GPU(s)")
        if gpus_per_trial > 0:
            env = RunEnv(**{**asdict(env), "device": "cuda"})
        version = code_version()
        run_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        summary.run_id = run_id

        # From here on the store is written.
        store.root.mkdir(parents=True, exist_ok=True)
        store.clean_tmp()
        for p in pending:
            store.clear_stage(p.key)  # stale stages from a killed run
        if progress:
            progress.start(summary, pending)

        fit_t0 = time.perf_counter()

        def on_result(result: dict) -> None:
            summary.result_times.append(time.perf_counter() - fit_t0)
            summary.trial_s.append(float(result.get("trial_s", 0.0)))
            if progress:
                progress.result(result["key"], result["status"], result.get("trial_s"))

        _LISTENERS[run_id] = on_result

        param_space = {
            "trial": tune.grid_search([{"key": p.key, "spec": spec_to_dict(p.spec), "identity": p.identity, "variant": p.variant, "code_version": version, "grid": name} for p in pending]),
            "env": asdict(env),
            "store": str(store.root),
            "run_id": run_id,
            "home": _RAY_HOME_FOR.get("home"),  # set while the Ray instance is a local one started here
        }
        storage = store.root / "ray"
        tuner = tune.Tuner(
            tune.with_resources(_trainable, {"cpu": 1, "gpu": gpus_per_trial}),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=max_concurrent, reuse_actors=True,
                trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                storage_path=str(storage), name=run_id, verbose=0, callbacks=[_ResultStream(run_id)],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )  # fmt: skip
        summary.experiment_dir = str(storage / run_id)
        try:
            results = tuner.fit()
        finally:
            _LISTENERS.pop(run_id, None)
            summary.fit_s = time.perf_counter() - fit_t0
            if progress:
                progress.stop()
        # A trial that died without writing its record (worker killed, out of memory) gets a failed one
        # here; one that never ran (run interrupted) gets none and runs next time.
        errors = {}
        for r in results:
            if r.error is not None:
                key = (r.config or {}).get("trial", {}).get("key") or Path(str(r.path)).name.removeprefix("trial-")
                errors[key] = r.error
        for p in pending:
            if store.get(p.key) is None and p.key in errors:
                err = errors[p.key]
                rec = make_record(
                    key=p.key, spec=p.spec, identity=p.identity, started=now_iso(), finished=now_iso(), wall_s=0.0,
                    error=err, traceback_text=f"{type(err).__name__}: {err}", variant=p.variant, run_id=run_id, version=version,
                )  # fmt: skip
                rec["grid"] = name
                store.write(rec)
        for p in pending:
            status = store.status(p.key)
            if status is None:
                summary.not_run += 1
                continue
            summary.ran += 1
            if status == "ok":
                summary.ok += 1
            else:
                summary.failed += 1
                summary.failed_keys.append(p.key)
    finally:
        memory.stop()
        summary.peak_pss_mib, summary.peak_used_mib = round(memory.peak_pss, 1), round(memory.peak_used, 1)
        if started_ray:
            ray.shutdown()
    summary.wall_s = time.perf_counter() - t_start
    return summary
