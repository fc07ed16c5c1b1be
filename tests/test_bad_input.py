"""Bad raw batches dropped into the landing zone: each is accepted and flagged by a named asset
check, or rejected with an error naming table, column and file; nothing is dropped silently.

The corpus is ``tests/bad_batches/<case>/<stream>.<jsonl|csv>`` (two cases, an oversized string
and a Parquet file, are generated here: too big or binary to keep as files). Each test drops one
batch into a fresh ``DATA_PLATFORM_HOME`` whose raw tables already hold a small stand-in sync,
evaluates the landing sensor, and executes the ingestion job for the sensor's run request, in
process, as the daemon would launch it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context

from ingestion import standin
from ingestion.definitions import defs
from ingestion.jobs import landing_sensor
from ingestion.landing import ERROR_FILE, REJECTED_DIR, SUCCESS_MARKER
from ingestion.settings import StandInSettings, landing_dir
from ingestion.streams import EVENTS, STREAMS, USERS
from shared import iceberg
from shared.resources import ObjectStoreResource
from shared.settings import load_settings

CORPUS = Path(__file__).parent / "bad_batches"
#: The raw tables before each batch: one small stand-in day (all checks pass on it).
BASE = StandInSettings(users=20, events_per_day=40, days=1, seed=3)


@dataclass(frozen=True)
class Accepted:
    """The batch lands: ``rows`` more rows per table, and ``check`` says so."""

    rows: dict[str, int]
    check: str | None = None
    #: Expected outcome of ``check`` (False: it fails and flags the batch).
    passed: bool = False
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """The run fails naming ``table``/``column``/``file`` (and ``example``); no table changes."""

    table: str | None
    column: str | None
    file: str
    example: str | None = None


CASES: dict[str, Accepted | Rejected] = {
    "null_user_id": Accepted(
        {"users": 3}, "raw_users_primary_key_not_null", metadata={"null_id": 1}
    ),
    "dup_user_version": Accepted(
        {"users": 3}, "raw_users_primary_key_unique", metadata={"duplicate_id_updated_at": 1}
    ),
    # At-least-once delivery repeats event ids legitimately: reported, not failed.
    "dup_event_id": Accepted(
        {"events": 3},
        "raw_events_primary_key_unique",
        passed=True,
        metadata={"repeated_primary_keys_info": 1},
    ),
    "null_event_id": Accepted(
        {"events": 2}, "raw_events_primary_key_not_null", metadata={"null_event_id": 1}
    ),
    "added_column": Accepted(
        {"events": 2}, "raw_events_schema_drift", metadata={"added_columns": ["referrer"]}
    ),
    "dropped_column": Accepted(
        {"users": 2}, "raw_users_schema_drift", metadata={"dropped_columns": ["country"]}
    ),
    "dropped_optional_column": Accepted(
        {"events": 1}, "raw_events_schema_drift", metadata={"dropped_columns": ["amount"]}
    ),
    "empty_file": Accepted({"events": 0}),
    "header_only_csv": Accepted({"users": 0}),
    "future_timestamp": Accepted(
        {"events": 2}, "raw_events_timestamps_plausible", metadata={"future_event_ts": 1}
    ),
    "before_1970": Accepted(
        {"users": 1}, "raw_users_timestamps_plausible", metadata={"before_1970_signup_at": 1}
    ),
    "oversized_string": Accepted(
        {"users": 1}, "raw_users_string_sizes", metadata={"oversized_name": 1}
    ),
    "wrong_type_int": Rejected("raw.events", "user_id", "events.jsonl", "'abc'"),
    "wrong_type_timestamp": Rejected("raw.users", "updated_at", "users.csv", "'yesterday'"),
    "wrong_type_parquet": Rejected("raw.events", "user_id", "events.parquet", "'x1'"),
    "non_utf8_csv": Rejected("raw.users", "name", "users.csv", "Jos\\xe9"),
    "non_utf8_jsonl": Rejected("raw.events", "event_type", "events.jsonl", "cl\\xffck"),
    "mixed_good_and_bad": Rejected("raw.events", "amount", "events.jsonl", "'twelve'"),
    "reserved_column": Rejected("raw.users", "_airbyte_raw_id", "users.jsonl"),
    "not_json": Rejected("raw.events", None, "events.jsonl", "line 2"),
    "unknown_stream": Rejected(None, None, "orders.jsonl", "'orders'"),
}

GENERATED = {"oversized_string", "wrong_type_parquet"}


def test_every_corpus_folder_is_a_case():
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert folders | GENERATED == set(CASES)


def write_batch(case: str, landing: Path) -> Path:
    """Drop the case's batch into the landing zone, as a producer would: a new folder, its
    files, then the ``_SUCCESS`` marker that says the batch is complete."""
    target = landing / case
    if case == "oversized_string":
        target.mkdir(parents=True)
        row = {"id": 9100, "email": "long@example.com", "name": "x" * 70_000, "country": "DE",
               "plan": "free", "signup_at": "2025-06-01T00:00:00Z",
               "updated_at": "2026-01-02T10:00:00Z"}  # fmt: skip
        (target / "users.jsonl").write_text(json.dumps(row) + "\n")
    elif case == "wrong_type_parquet":
        target.mkdir(parents=True)
        table = pa.table(
            {
                "event_id": ["bad-p-1", "bad-p-2"],
                "user_id": ["7", "x1"],
                "event_type": ["click", "click"],
                "event_ts": pa.array([1767348000000000] * 2, pa.timestamp("us")),
            }
        )
        pq.write_table(table, target / "events.parquet")
    else:
        shutil.copytree(CORPUS / case, target)
    (target / SUCCESS_MARKER).touch()
    return target


@pytest.fixture
def platform(tmp_path, monkeypatch):
    """A fresh platform home whose raw tables hold one small stand-in sync."""
    for name in list(__import__("os").environ):
        if name.startswith(("DATA_PLATFORM_", "AIRBYTE_", "GARAGE_", "ICEBERG_", "TRINO_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    catalog = iceberg.open_catalog(load_settings())
    for stream in STREAMS:
        standin.sync_stream(catalog, stream, BASE)
    return catalog


def snapshot(catalog, stream) -> tuple[int | None, int]:
    table = catalog.load_table(stream.identifier)
    snap = table.current_snapshot()
    return (snap.snapshot_id if snap else None), iceberg.row_count(table)


def run_landing(instance: DagsterInstance) -> tuple[list[RunRequest], object]:
    """One sensor tick, then the ingestion job for its (single) run request."""
    context = build_sensor_context(
        cursor=None, resources={"object_store": ObjectStoreResource()}, instance=instance
    )
    result = landing_sensor(context)
    requests = [
        r for r in (result if isinstance(result, list) else []) if isinstance(r, RunRequest)
    ]
    assert len(requests) == 1, result
    request = requests[0]
    job = defs.resolve_job_def("ingestion_job")
    run = job.execute_in_process(
        instance=instance,
        tags=request.tags,
        asset_selection=request.asset_selection,
        raise_on_error=False,
    )
    return requests, run


def failure_text(run) -> str:
    failures = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "expected the ingestion step to fail"
    error = failures[0].step_failure_data.error
    parts = []
    while error is not None:
        parts.append(str(error.message))
        error = error.cause
    return " ".join(parts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_batch(case, platform):
    catalog = platform
    expected = CASES[case]
    landing = landing_dir(load_settings())
    batch_dir = write_batch(case, landing)
    files = sorted(p.relative_to(batch_dir) for p in batch_dir.rglob("*") if p.is_file())
    assert Path(SUCCESS_MARKER) in files
    before = {s.name: snapshot(catalog, s) for s in STREAMS}

    requests, run = run_landing(DagsterInstance.ephemeral())
    assert requests[0].tags["ingestion/landing_batch"] == case

    if isinstance(expected, Rejected):
        assert not run.success
        message = failure_text(run)
        for part in (expected.table, expected.column, expected.file, expected.example):
            if part:
                assert part in message, (part, message)
        # Nothing written: every raw table is at the same snapshot.
        assert {s.name: snapshot(catalog, s) for s in STREAMS} == before
        # Nothing deleted: the batch is quarantined with the reason beside it.
        quarantine = landing / REJECTED_DIR / case
        assert sorted(p.relative_to(quarantine) for p in quarantine.rglob("*")
                      if p.is_file() and p.name != ERROR_FILE) == files  # fmt: skip
        assert expected.file in (quarantine / ERROR_FILE).read_text()
        assert not batch_dir.exists()
        return

    assert run.success, failure_text(run)
    for stream in STREAMS:
        added = expected.rows.get(stream.name, 0)
        assert snapshot(catalog, stream)[1] == before[stream.name][1] + added, stream.name
    materialized = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in run.get_asset_materialization_events()
    }
    for name, rows in expected.rows.items():
        meta = materialized[STREAMS[[s.name for s in STREAMS].index(name)].key]
        assert meta["landing_batch"].value == case
        assert meta["rows_written"].value == rows
        if rows == 0:  # an empty file is a reported no-op
            assert meta["landing_empty_files"].value != "none"
    # Landed rows carry Airbyte's metadata columns, naming their batch and file.
    for name, rows in expected.rows.items():
        if rows:
            stream = USERS if name == "users" else EVENTS
            landed = iceberg.read_table(catalog, stream.identifier).filter(
                pa.compute.match_substring(pa.compute.field("_airbyte_meta"), f'"{case}"')
            )
            assert landed.num_rows == rows
            assert landed["_airbyte_raw_id"].null_count == 0
            assert landed["_airbyte_extracted_at"].null_count == 0
    # The batch stays where it was (an accepted batch is not moved).
    assert batch_dir.is_dir()
    if expected.check:
        evaluations = {e.check_name: e for e in run.get_asset_check_evaluations()}
        assert expected.check in evaluations, sorted(evaluations)
        evaluation = evaluations[expected.check]
        assert evaluation.passed is expected.passed, evaluation.metadata
        for key, value in expected.metadata.items():
            assert evaluation.metadata[key].value == value, (key, evaluation.metadata)


def test_rerunning_a_batch_appends_it_once(platform):
    """A re-executed run (e.g. after a crash after the commit) finds its rows and skips them."""
    catalog = platform
    write_batch("dup_event_id", landing_dir(load_settings()))
    instance = DagsterInstance.ephemeral()
    requests, first = run_landing(instance)
    assert first.success
    rows = snapshot(catalog, EVENTS)[1]
    # The next tick requests nothing (the ledger records the batch); a re-execution of the run
    # itself (from the UI, say) finds the batch's fingerprint in the table and appends nothing.
    context = build_sensor_context(
        resources={"object_store": ObjectStoreResource()}, instance=instance
    )
    assert not [r for r in (landing_sensor(context) or []) if isinstance(r, RunRequest)]
    second = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=instance, tags=requests[0].tags, asset_selection=requests[0].asset_selection,
        raise_on_error=False,
    )  # fmt: skip
    assert second.success
    assert snapshot(catalog, EVENTS)[1] == rows
    meta = second.get_asset_materialization_events()[0].step_materialization_data
    assert meta.materialization.metadata["landing_already_loaded"].value is True


def test_a_future_timestamp_does_not_freeze_the_stand_in(platform, monkeypatch):
    """Landed rows are another source: their cursor values do not move the stand-in's."""
    catalog = platform
    write_batch("future_timestamp", landing_dir(load_settings()))
    _, run = run_landing(DagsterInstance.ephemeral())
    assert run.success
    before = snapshot(catalog, EVENTS)[1]
    result = standin.sync_stream(catalog, EVENTS, StandInSettings(**{**BASE.__dict__, "days": 2}))
    assert result.plan.days == (1,)
    assert snapshot(catalog, EVENTS)[1] == before + BASE.events_per_day


@pytest.mark.slow
def test_accepted_bad_keys_do_not_corrupt_staging(platform, tmp_path, monkeypatch):
    """Null and duplicate keys accepted into raw (and flagged there) must not reach staging:
    the transformation location's dbt models run over them and its dbt tests (unique, not
    null on the staging keys) pass; staging holds exactly the expected rows."""
    pytest.importorskip("transformation.project").ensure_manifest()  # fresh clone: dbt parse
    from dagster import materialize

    import transformation.definitions as transformation
    from transformation.assets import dbt_daily_models, dbt_models

    catalog = platform
    landing = landing_dir(load_settings())
    instance = DagsterInstance.ephemeral()
    for case in ("null_user_id", "dup_user_version", "dup_event_id", "null_event_id"):
        shutil.rmtree(landing, ignore_errors=True)
        write_batch(case, landing)
        _, run = run_landing(instance)
        assert run.success, failure_text(run)

    resources = transformation.defs.resources
    # dbt's artifacts and logs go to tmp, not into the project's dbt/ folder.
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt-target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt-logs"))
    daily = materialize(
        [dbt_daily_models],
        instance=instance,
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-02",
        },
        raise_on_error=False,
    )
    assert daily.success
    full = materialize([dbt_models], instance=instance, resources=resources, raise_on_error=False)
    assert full.success
    # dbt's own tests on the staging keys ran as asset checks, and passed.
    evaluations = daily.get_asset_check_evaluations() + full.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [
        e.check_name for e in evaluations if not e.passed
    ]

    users = iceberg.read_table(catalog, "staging.stg_users")
    ids = users["user_id"].to_pylist()
    assert None not in ids and len(ids) == len(set(ids))
    # The base users, plus 9001 and 9002 once each (the null id is left out of staging).
    assert set(ids) == set(range(1, BASE.users + 1)) | {9001, 9002}
    events = iceberg.read_table(catalog, "staging.stg_events")
    event_ids = events["event_id"].to_pylist()
    assert None not in event_ids and len(event_ids) == len(set(event_ids))
    assert {"bad-e-1", "bad-e-2", "bad-e-3"} <= set(event_ids)
    raw_events = iceberg.read_table(catalog, EVENTS.identifier, columns=["event_id"])
    distinct_raw = {e for e in raw_events["event_id"].to_pylist() if e is not None}
    assert set(event_ids) == distinct_raw


def test_the_whole_corpus_dropped_at_once(platform):
    """Every bad batch at once, as an outside tester would drop them: one run per batch, each
    with its own outcome, and the next tick requests nothing (quarantine is not a batch)."""
    catalog = platform
    landing = landing_dir(load_settings())
    before = {s.name: snapshot(catalog, s)[1] for s in STREAMS}
    for case in CASES:
        write_batch(case, landing)
    instance = DagsterInstance.ephemeral()
    context = build_sensor_context(
        cursor=None, resources={"object_store": ObjectStoreResource()}, instance=instance
    )
    requests = [r for r in landing_sensor(context) if isinstance(r, RunRequest)]
    assert sorted(r.tags["ingestion/landing_batch"] for r in requests) == sorted(CASES)
    job = defs.resolve_job_def("ingestion_job")
    outcomes = {}
    for request in requests:
        run = job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection,
            raise_on_error=False,
        )  # fmt: skip
        outcomes[request.tags["ingestion/landing_batch"]] = run.success
    assert outcomes == {case: isinstance(e, Accepted) for case, e in CASES.items()}
    expected_rows = {s.name: 0 for s in STREAMS}
    for e in CASES.values():
        if isinstance(e, Accepted):
            for name, rows in e.rows.items():
                expected_rows[name] += rows
    for stream in STREAMS:
        assert snapshot(catalog, stream)[1] == before[stream.name] + expected_rows[stream.name]
    rejected = {p.name for p in (landing / REJECTED_DIR).iterdir()}
    assert rejected == {case for case, e in CASES.items() if isinstance(e, Rejected)}
    context = build_sensor_context(
        cursor=context.cursor, resources={"object_store": ObjectStoreResource()},
        instance=instance,
    )  # fmt: skip
    assert not [r for r in (landing_sensor(context) or []) if isinstance(r, RunRequest)]
