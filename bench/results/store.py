"""The results store: one JSON record per trial at ``<store>/records/<key>.json``.

The key is the first 16 hex digits of the SHA-256 of the canonical JSON (``sort_keys``) of the
trial's identity (:func:`bench.experiment.trial.trial_identity`) plus the code version. Records are written
atomically (temporary file in the same folder, fsync, ``os.replace``), so a crash at any point
leaves the previous record or none, never a partial one. Leftover ``*.tmp`` files are ignored and
removed by :meth:`Store.clean_tmp`.

A record is a :class:`TrialRecord` (``schema`` :data:`RECORD_SCHEMA`; records without the field are
schema 1, which has the same fields); :func:`read_records` is its one reader: every command and
library function reads records through it.

``<store>/status/<key>.json`` holds the current stage of a running trial (for progress displays);
it is removed when the trial's record is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, TypedDict

RECORDS = "records"
STATUS = "status"
TMP_SUFFIX = ".tmp"
STATUSES = ("ok", "failed")
RECORD_SCHEMA = 2  # 2: adds "schema" itself (1: the same fields without it)


class TrialRecord(TypedDict, total=False):
    """One trial's record on disk (JSON). ``metrics``: name -> flat result (``value``, ``ci_low``,
    ``ci_high``, ``ci_method``, ``per_trial``, protocol settings); ``config``: the trial identity."""

    schema: int
    key: str
    status: str  # one of STATUSES
    method: str
    subject: int
    fraction: float
    w: float
    seed: int
    profile: str
    options: dict[str, Any]
    variant: str | None
    grid: str | None
    config: dict[str, Any]
    code_version: str
    metrics: dict[str, dict[str, Any]]
    not_computable: dict[str, str]
    timings: dict[str, float]
    fit: dict[str, Any]
    score_settings: dict[str, Any] | None
    n_train: int | None
    n_val: int | None
    n_test: int | None
    images_dir: str | None
    versions: dict[str, str]
    git_commit: str | None
    host: str
    pid: int
    run_id: str | None
    started: str
    finished: str
    wall_s: float
    error: dict[str, str] | None
    traceback: str | None


# ----------------------------------------------------------------------------------------------
# Versions and keys
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("brainvis-bench")
    except Exception:  # noqa: BLE001 - not installed (source checkout)
        return "unknown"


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout the package runs from, or None (no git, not a checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


CODE_VERSION_ENV = "BRAINVIS_BENCH_CODE_VERSION"


RESULTS_VERSION = "3"  # bump when a change alters any trial's result (methods, metrics, data layer)


def code_version() -> str:
    """The code version in every key: ``<package version>/r<RESULTS_VERSION>``.

    Deliberately not the git commit: results stay valid across commits that do not change them
    (bump ``RESULTS_VERSION`` when one does). Each record still stores the exact ``git_commit``.
    ``$BRAINVIS_BENCH_CODE_VERSION`` overrides it.
    """
    return os.environ.get(CODE_VERSION_ENV) or f"{package_version()}/r{RESULTS_VERSION}"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def identity_key(identity: dict, version: str | None = None) -> str:
    """First 16 hex digits of SHA-256 over the canonical identity plus the code version."""
    blob = canonical_json({"identity": identity, "code_version": version if version is not None else code_version()})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``): records reproduce bit for
    bit on the same CPU, not across CPUs (their float kernels differ), so each record says which one ran it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


@lru_cache(maxsize=1)
def versions() -> dict:
    """Software versions, and the CPU model, of the process that computed a record."""
    out = {"python": platform.python_version(), "package": package_version(), "cpu": cpu_model()}
    for mod in ("torch", "numpy", "ray"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        out[mod] = getattr(m, "__version__", "?")
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------


def spec_fields(spec) -> dict:
    return {
        "method": spec.method,
        "subject": spec.subject,
        "fraction": spec.fraction,
        "w": spec.w,
        "seed": spec.seed,
        "profile": spec.profile,
        "options": {k: v for k, v in spec.options},
    }


def make_record(
    *,
    key: str,
    spec,
    identity: dict,
    started: str,
    finished: str,
    wall_s: float,
    result: dict | None = None,
    error: BaseException | None = None,
    traceback_text: str | None = None,
    variant: str | None = None,
    run_id: str | None = None,
    version: str | None = None,
) -> dict:
    """A complete store record for a finished (``result``) or failed (``error``) trial."""
    result = result or {}
    rec: TrialRecord = {
        "schema": RECORD_SCHEMA,
        "key": key,
        "status": "failed" if error is not None else "ok",
        **spec_fields(spec),
        "variant": variant,
        "grid": None,
        "config": identity,
        "code_version": version or code_version(),
        "metrics": result.get("metrics", {}),
        **({"not_computable": result["not_computable"]} if result.get("not_computable") else {}),
        "timings": result.get("timings", {}),
        "fit": result.get("fit", {}),
        "score_settings": result.get("score_settings"),
        "n_train": result.get("n_train"),
        "n_val": result.get("n_val"),
        "n_test": result.get("n_test"),
        "images_dir": result.get("images_dir"),
        "versions": versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "run_id": run_id,
        "started": started,
        "finished": finished,
        "wall_s": round(wall_s, 4),
        "error": None,
        "traceback": None,
    }
    if error is not None:
        rec["error"] = {"type": type(error).__name__, "message": str(error)}
        rec["traceback"] = traceback_text
    return rec


class StoreWarning(UserWarning):
    """A store file was skipped (malformed record); the CLI prints it as one ``warning:`` line."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def record_problem(rec: Any) -> str | None:
    """Why ``rec`` is not a usable trial record (None if it is): the fields every reader relies on."""
    if not isinstance(rec, dict):
        return f"not a JSON object (a {type(rec).__name__})"
    if not _is_int(rec.get("schema", 1)) or rec.get("schema", 1) > RECORD_SCHEMA:
        return f"record schema {rec.get('schema')!r} is newer than this brainvis-bench reads ({RECORD_SCHEMA}); upgrade it"
    if rec.get("status") not in STATUSES:
        return f"status {rec.get('status')!r} is not one of {', '.join(STATUSES)}"
    checks = (("key", lambda v: isinstance(v, str) and v), ("method", lambda v: isinstance(v, str) and v), ("subject", _is_int),
              ("fraction", _is_num), ("w", _is_num), ("seed", _is_int))  # fmt: skip
    for field_name, ok in checks:
        if not ok(rec.get(field_name)):
            return f"field {field_name!r} missing or of the wrong type ({rec.get(field_name)!r})"
    if rec["status"] == "ok" and not isinstance(rec.get("metrics"), dict):
        return "an ok record without a 'metrics' object"
    for field_name in ("config", "options"):
        if rec.get(field_name) is not None and not isinstance(rec[field_name], dict):
            return f"field {field_name!r} is not an object"
    return None


_WARNED: set[tuple[str, str]] = set()


def read_records(folder: str | Path, *, warn: bool = True) -> list[TrialRecord]:
    """Every usable record in ``folder`` (``*.json``), sorted by file name; unreadable or malformed
    files are skipped, each with a :class:`StoreWarning` naming it."""
    import warnings

    out = []
    for p in sorted(Path(folder).glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
            problem = record_problem(rec)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            problem = f"not readable as JSON ({type(exc).__name__})"
        if problem:
            if warn and (str(p), problem) not in _WARNED:
                _WARNED.add((str(p), problem))  # once per file and process, however often the store is read
                warnings.warn(f"{p}: skipped: {problem}", StoreWarning, stacklevel=2)
            continue
        out.append(rec)
    return out


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable too
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


LOCK = ".lock"


def check_writable_folder(path: str | Path, what: str = "--store") -> Path:
    """``path`` as an absolute folder that exists or can be created, and can be written; one
    :class:`~bench.errors.UserError` otherwise. Nothing is left on disk."""
    from bench.errors import UserError

    path = Path(path).expanduser().absolute()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        where = "" if probe == path else f" ({probe} is a file)"
        raise UserError(f"{what} {path}: not a folder{where}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".bench-write-check-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot write there ({exc.strerror or exc} at {probe})") from None
    return path


class StoreLock:
    """One `bench run` at a time per store: an exclusive ``flock`` on ``<store>/.lock`` for the
    run's duration (advisory; NFS clients see it too). The lock file names its holder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK
        self._fd: int | None = None

    def __enter__(self) -> "StoreLock":
        import fcntl

        from bench.errors import UserError

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except (OSError, ValueError):
                holder = {}
            os.close(fd)
            who = f" (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')})" if holder else ""
            raise UserError(f"store {self.root} is in use by another `bench run`{who}; wait for it to finish or pass another --store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Store:
    """A folder of trial records. Nothing is created on disk until something is written."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.records_dir = self.root / RECORDS
        self.status_dir = self.root / STATUS

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # paths
    def path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    # reading
    def get(self, key: str) -> dict | None:
        """The record for ``key``; None if absent, unreadable or malformed (never a partial one)."""
        try:
            rec = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return rec if record_problem(rec) is None else None

    def status(self, key: str) -> str | None:
        rec = self.get(key)
        return rec["status"] if rec else None

    def keys(self) -> list[str]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p.stem for p in self.records_dir.glob("*.json") if not p.name.startswith("."))

    def records(self) -> Iterator[dict]:
        """Every usable record (malformed files are skipped with a :class:`StoreWarning`)."""
        yield from read_records(self.records_dir)

    def statuses(self) -> dict[str, str]:
        return {rec["key"]: rec["status"] for rec in self.records()}

    # writing
    def write(self, record: dict) -> Path:
        if record.get("status") not in STATUSES or not record.get("key"):
            raise ValueError("a record needs a key and status 'ok' or 'failed'")
        path = self.path(record["key"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))
        self.clear_stage(record["key"])
        return path

    def clean_tmp(self, older_than_s: float = 0.0) -> int:
        """Remove leftover temporary files (from a crash mid-write); returns how many."""
        n = 0
        cutoff = time.time() - older_than_s
        for folder in (self.records_dir, self.status_dir):
            if not folder.is_dir():
                continue
            for p in folder.glob(f"*{TMP_SUFFIX}"):
                try:
                    if p.stat().st_mtime <= cutoff:
                        p.unlink()
                        n += 1
                except OSError:
                    pass
        return n

    # stage files (progress)
    def set_stage(self, key: str, stage: str, **extra: Any) -> None:
        try:
            atomic_write_text(
                self.status_dir / f"{key}.json",
                json.dumps({"key": key, "stage": stage, "since": time.time(), "pid": os.getpid(), "host": socket.gethostname(), **extra}),
            )
        except OSError:
            pass  # progress is best effort

    def clear_stage(self, key: str) -> None:
        try:
            (self.status_dir / f"{key}.json").unlink()
        except OSError:
            pass

    def stages(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        if not self.status_dir.is_dir():
            return out
        for p in self.status_dir.glob("*.json"):
            if p.name.startswith("."):
                continue
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return out

    # analysis
    def load_frame(self):
        """One row per record: spec fields, ``metric.<name>`` (+ ``.ci_low``/``.ci_high``), ``time.<stage>``."""
        import pandas as pd

        rows = []
        for rec in self.records():
            row = {
                "key": rec["key"],
                "status": rec["status"],
                "method": rec.get("method"),
                "variant": rec.get("variant"),
                "grid": rec.get("grid"),
                "subject": rec.get("subject"),
                "fraction": rec.get("fraction"),
                "w": rec.get("w"),
                "seed": rec.get("seed"),
                "profile": rec.get("profile"),
                "options": canonical_json(rec.get("options") or {}),
                "dataset_id": (rec.get("config") or {}).get("dataset_id"),
                "n_train": rec.get("n_train"),
                "n_val": rec.get("n_val"),
                "n_test": rec.get("n_test"),
                "wall_s": rec.get("wall_s"),
                "started": rec.get("started"),
                "finished": rec.get("finished"),
                "error": (rec.get("error") or {}).get("message") if rec.get("error") else None,
            }
            for name, m in (rec.get("metrics") or {}).items():
                if isinstance(m, dict):
                    row[f"metric.{name}"] = m.get("value")
                    row[f"metric.{name}.ci_low"] = m.get("ci_low")
                    row[f"metric.{name}.ci_high"] = m.get("ci_high")
                else:
                    row[f"metric.{name}"] = m
            for stage, secs in (rec.get("timings") or {}).items():
                row[f"time.{stage}"] = secs
            rows.append(row)
        base = ["key", "status", "method", "variant", "subject", "fraction", "w", "seed", "profile", "options"]
        return pd.DataFrame(rows, columns=None if rows else base)
