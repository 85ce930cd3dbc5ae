"""The results store: stable keys sensitive to every identity field, atomic records, the frame."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from bench.methods.base import TrialSpec
from bench.experiment.trial import trial_key
from bench.results.store import Store, code_version, identity_key, make_record, now_iso
from bench.experiment.trial import RunEnv, trial_identity

ENV = RunEnv(data_root="/data", dataset_id="world-a", profile={"noop": {"x": 1}, "generation": {"steps": 2}, "metrics": {"n": 50}})
SPEC = TrialSpec("noop", subject=1, fraction=0.5, w=0.25, seed=3, options=(("a", 1),))


def record(key: str, status: str = "ok", **kw) -> dict:
    spec = kw.pop("spec", SPEC)
    err = RuntimeError("boom") if status == "failed" else None
    result = None if err else {"metrics": {"top1": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}, "f1": {"value": 0.1, "ci_low": None, "ci_high": None}},
                               "timings": {"load": 0.1, "fit": 0.2}, "n_train": 10, "n_val": 2, "n_test": 3}  # fmt: skip
    return make_record(key=key, spec=spec, identity=trial_identity(spec, ENV), started=now_iso(), finished=now_iso(), wall_s=0.3,
                       result=result, error=err, traceback_text="Traceback ...\nRuntimeError: boom" if err else None, **kw)  # fmt: skip


def test_key_is_stable_and_16_hex():
    k = trial_key(SPEC, ENV, version="v1")
    assert k == trial_key(TrialSpec("noop", subject=1, fraction=0.5, w=0.25, seed=3, options=(("a", 1),)), ENV, version="v1")
    assert len(k) == 16 and int(k, 16) >= 0
    assert k == identity_key(json.loads(json.dumps(trial_identity(SPEC, ENV))), "v1")  # canonical JSON, any key order


@pytest.mark.parametrize(
    "change",
    [
        dict(spec=replace(SPEC, method="chance")),
        dict(spec=replace(SPEC, subject=2)),
        dict(spec=replace(SPEC, fraction=1.0)),
        dict(spec=replace(SPEC, w=0.5)),
        dict(spec=replace(SPEC, seed=4)),
        dict(spec=replace(SPEC, profile="paper")),
        dict(spec=replace(SPEC, options=(("a", 2),))),
        dict(env=replace(ENV, dataset_id="world-b")),
        dict(env=replace(ENV, split_mode="single")),
        dict(env=replace(ENV, fraction_seed=1)),
        dict(env=replace(ENV, backbones="paper")),
        dict(env=replace(ENV, profile={**ENV.profile, "noop": {"x": 2}})),
        dict(env=replace(ENV, profile={**ENV.profile, "generation": {"steps": 3}})),
        dict(env=replace(ENV, profile={**ENV.profile, "metrics": {"n": 40}})),
        dict(ids={"generator": "mini:unet@abc"}),
        dict(version="v2"),
    ],
)
def test_key_changes_with_every_identity_field(change):
    base = trial_key(SPEC, ENV, {}, version="v1")
    changed = trial_key(change.get("spec", SPEC), change.get("env", ENV), change.get("ids", {}), version=change.get("version", "v1"))
    assert changed != base


def test_key_ignores_where_things_run():
    base = trial_key(SPEC, ENV, version="v1")
    assert trial_key(SPEC, replace(ENV, data_root="/elsewhere", images_dir="/x", device="cuda"), version="v1") == base


def test_code_version(monkeypatch):
    monkeypatch.delenv("BRAINVIS_BENCH_CODE_VERSION", raising=False)
    v = code_version()
    assert v.startswith("0.") and "/r" in v  # package version + results version (not the git commit)
    monkeypatch.setenv("BRAINVIS_BENCH_CODE_VERSION", "pinned")
    assert code_version() == "pinned"


def test_record_fields_and_roundtrip(tmp_path):
    st = Store(tmp_path / "st")
    assert not st.root.exists() and st.keys() == [] and st.get("k") is None  # reading creates nothing
    rec = record("abc", variant="v")
    st.write(rec)
    got = st.get("abc")
    assert got == json.loads(json.dumps(rec))
    for field in ("key", "status", "method", "subject", "fraction", "w", "seed", "profile", "options", "config", "metrics", "timings",
                  "versions", "git_commit", "host", "started", "finished", "images_dir", "n_train", "n_val", "n_test", "error", "traceback"):  # fmt: skip
        assert field in got, field
    assert got["options"] == {"a": 1} and got["status"] == "ok" and got["error"] is None
    assert {"python", "torch", "numpy", "package"} <= set(got["versions"])
    failed = record("bad", status="failed")
    st.write(failed)
    got = st.get("bad")
    assert got["status"] == "failed" and got["error"] == {"type": "RuntimeError", "message": "boom"} and "Traceback" in got["traceback"]
    assert st.statuses() == {"abc": "ok", "bad": "failed"}


def test_atomic_write_keeps_old_record_on_crash(tmp_path, monkeypatch):
    st = Store(tmp_path)
    st.write(record("k1"))
    before = st.path("k1").read_text()

    def crash(*a, **kw):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    new = record("k1", status="failed")
    with pytest.raises(OSError):
        st.write(new)
    monkeypatch.undo()
    assert st.path("k1").read_text() == before
    assert [p.name for p in st.records_dir.iterdir()] == ["k1.json"]  # no temporary file left


def test_partial_and_stale_files_are_ignored_and_cleaned(tmp_path):
    st = Store(tmp_path)
    st.write(record("good"))
    (st.records_dir / ".good.json.x1.tmp").write_text('{"key": "good", "sta')  # crash mid-write
    (st.records_dir / "torn.json").write_text('{"key": "torn", "status": "o')  # not written by the store, but be safe
    (st.records_dir / "nostatus.json").write_text('{"key": "nostatus"}')
    assert st.get("torn") is None and st.get("nostatus") is None and st.status("torn") is None
    assert [r["key"] for r in st.records()] == ["good"]
    assert st.clean_tmp() == 1
    assert not list(st.records_dir.glob("*.tmp"))


def test_stage_files(tmp_path):
    st = Store(tmp_path)
    st.set_stage("k", "fit")
    assert st.stages()["k"]["stage"] == "fit"
    st.write(record("k"))  # writing the record clears the stage
    assert st.stages() == {}


def test_load_frame(tmp_path):
    st = Store(tmp_path)
    assert st.load_frame().empty
    st.write(record("a", variant="full"))
    st.write(record("b", spec=replace(SPEC, seed=9)))
    st.write(record("c", status="failed"))
    df = st.load_frame()
    assert len(df) == 3 and set(df["key"]) == {"a", "b", "c"}
    for col in ("metric.top1", "metric.top1.ci_low", "metric.top1.ci_high", "metric.f1", "time.fit", "status", "method", "variant", "seed", "options", "wall_s"):
        assert col in df.columns, col
    ok = df[df.status == "ok"].set_index("key")
    assert ok.loc["a", "metric.top1"] == 0.5 and ok.loc["a", "metric.top1.ci_low"] == 0.4 and ok.loc["b", "seed"] == 9
    assert df.set_index("key").loc["c", "error"] == "boom"


def test_records_carry_a_schema_version_and_newer_ones_are_skipped(tmp_path):
    from bench.results.store import RECORD_SCHEMA, StoreWarning, read_records

    rec = make_record(key="k1", spec=SPEC, identity={}, started=now_iso(), finished=now_iso(), wall_s=0.1, result={"metrics": {}})
    assert rec["schema"] == RECORD_SCHEMA
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "k1.json").write_text(json.dumps(rec))
    old = {k: v for k, v in rec.items() if k != "schema"} | {"key": "k0"}  # schema 1: no field
    (folder / "k0.json").write_text(json.dumps(old))
    (folder / "k2.json").write_text(json.dumps(rec | {"key": "k2", "schema": RECORD_SCHEMA + 1}))
    with pytest.warns(StoreWarning, match="k2.json: skipped: record schema 3 is newer"):
        assert [r["key"] for r in read_records(folder)] == ["k0", "k1"]
