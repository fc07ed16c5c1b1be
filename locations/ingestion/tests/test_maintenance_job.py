"""The ingestion location's table maintenance job: compacts the raw tables' small files, expires
old snapshots of the raw tables and their key indexes, keeps every row, and a later sync works on
the compacted and expired tables."""

import pytest
from dagster import DagsterInstance, build_schedule_context

from ingestion import standin
from ingestion.definitions import defs
from ingestion.maintenance import owned_tables
from ingestion.settings import StandInSettings
from ingestion.streams import EVENTS, USERS, key_index_spec
from shared import iceberg, key_index
from shared.settings import load_settings

SMALL = StandInSettings(users=20, events_per_day=100, days=3, seed=5)


@pytest.fixture
def catalog(home):
    return iceberg.open_catalog(load_settings())


def test_the_location_maintains_the_tables_it_owns():
    assert owned_tables() == [
        USERS.identifier,
        EVENTS.identifier,
        key_index_spec(EVENTS).identifier,
    ]


def snapshots(catalog, identifier) -> int:
    return len(catalog.load_table(identifier).metadata.snapshots)


def test_the_job_expires_old_snapshots_with_the_settings_retention(
    catalog, monkeypatch, step_output_metadata
):
    index = key_index_spec(EVENTS)
    for d in range(8):
        iceberg.write_table(
            catalog, EVENTS.identifier, standin.generate_events(SMALL, d), mode="append"
        )
        key_index.catch_up(catalog, index)
    rows = iceberg.read_table(catalog, EVENTS.identifier).num_rows
    job = defs.resolve_job_def("ingestion_table_maintenance")

    # Defaults: every snapshot is younger than the minimum age, nothing expires; the eight
    # small files of the eight syncs are rewritten as one (a replace snapshot, rows unchanged).
    result = job.execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    assert snapshots(catalog, EVENTS.identifier) == 9
    table = catalog.load_table(EVENTS.identifier)
    assert table.current_snapshot().summary.operation.value == "replace"
    assert len(table.scan().plan_files()) == 1
    assert iceberg.read_table(catalog, EVENTS.identifier).num_rows == rows

    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "3")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    meta = step_output_metadata(result, "ingestion_expire_snapshots")
    tables = {t["table"]: t for t in meta["tables"].value}
    assert tables[EVENTS.identifier]["expired"] == 6
    assert tables[USERS.identifier]["exists"] is False  # never synced: nothing to do
    assert snapshots(catalog, EVENTS.identifier) == 3
    assert snapshots(catalog, index.identifier) <= 3
    assert iceberg.read_table(catalog, EVENTS.identifier).num_rows == rows

    # The next sync and its index catch-up work on the expired tables, incrementally.
    iceberg.write_table(
        catalog, EVENTS.identifier, standin.generate_events(SMALL, 8), mode="append"
    )
    caught = key_index.catch_up(catalog, index)
    assert not caught.rebuilt and caught.rows_indexed > 0
    total = iceberg.read_table(catalog, EVENTS.identifier).num_rows
    indexed = catalog.load_table(index.identifier).scan().to_arrow().num_rows
    assert indexed == total


def test_a_bad_retention_setting_fails_the_run_naming_the_variable(catalog, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "1")
    job = defs.resolve_job_def("ingestion_table_maintenance")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "DATA_PLATFORM_SNAPSHOT_KEEP_LAST" in failure.step_failure_data.error.message


def test_the_job_removes_orphan_files_daily_never_the_tables_rows(
    catalog, monkeypatch, step_output_metadata
):
    """The daily run deletes what the expiry stopped referencing (the compaction's inputs) and a
    killed write's file, once older than the age; the hourly run does not clean; rows stay."""
    import datetime as dt
    import os
    from pathlib import Path

    from shared import orphans

    for d in range(8):
        iceberg.write_table(
            catalog, EVENTS.identifier, standin.generate_events(SMALL, d), mode="append"
        )
    table = catalog.load_table(EVENTS.identifier)
    inputs = [Path(orphans.path_key(t.file.file_path)) for t in table.scan().plan_files()]
    killed = Path(orphans.path_key(table.metadata.location)) / "data" / "killed-write.parquet"
    killed.write_bytes(b"a sync killed before its commit")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "2")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    job = defs.resolve_job_def("ingestion_table_maintenance")
    hourly = defs.resolve_schedule_def("ingestion_table_maintenance_hourly")
    daily = defs.resolve_schedule_def("ingestion_table_maintenance_daily")
    assert daily.default_status.value == "RUNNING"
    assert (hourly.cron_schedule, daily.cron_schedule) == ("45 0-2,4-23 * * *", "45 3 * * *")

    # The hourly run compacts and expires; it does not list storage.
    config = hourly.evaluate_tick(build_schedule_context()).run_requests[0].run_config
    result = job.execute_in_process(run_config=config, instance=DagsterInstance.ephemeral())
    assert result.success
    assert step_output_metadata(result, "ingestion_remove_orphan_files")["skipped"].value is True
    assert all(p.exists() for p in inputs) and killed.exists()
    # The next sync: the snapshots listing the compaction's inputs are no longer the latest.
    iceberg.write_table(
        catalog, EVENTS.identifier, standin.generate_events(SMALL, 8), mode="append"
    )
    before = iceberg.read_table(catalog, EVENTS.identifier).sort_by("_airbyte_raw_id")

    # The daily run, now: every unreferenced file is younger than the age (72 h): kept.
    config = daily.evaluate_tick(build_schedule_context()).run_requests[0].run_config
    result = job.execute_in_process(run_config=config, instance=DagsterInstance.ephemeral())
    assert result.success
    meta = step_output_metadata(result, "ingestion_remove_orphan_files")
    assert meta["deleted"].value == 0 and meta["min_age_hours"].value == 72
    assert all(p.exists() for p in inputs) and killed.exists()

    # The daily run four days later: the compaction's inputs and the killed write go.
    later = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=4)).timestamp() * 1000)
    monkeypatch.setattr(orphans, "_now_ms", lambda now: later)
    result = job.execute_in_process(run_config=config, instance=DagsterInstance.ephemeral())
    assert result.success
    meta = step_output_metadata(result, "ingestion_remove_orphan_files")
    tables = {t["table"]: t for t in meta["tables"].value}
    assert tables[EVENTS.identifier]["deleted"] >= len(inputs) + 1
    assert tables[USERS.identifier]["exists"] is False  # never synced: nothing to do
    assert meta["deleted_bytes"].value == sum(t["deleted_bytes"] for t in tables.values())
    assert not killed.exists() and not any(p.exists() for p in inputs)
    after = iceberg.read_table(catalog, EVENTS.identifier).sort_by("_airbyte_raw_id")
    assert after.equals(before)
    os.stat(orphans.path_key(catalog.load_table(EVENTS.identifier).metadata_location))


def test_a_bad_orphan_age_setting_fails_the_run_naming_the_variable(catalog, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS", "0")
    job = defs.resolve_job_def("ingestion_table_maintenance")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "ingestion_remove_orphan_files"
    assert "DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS" in failure.step_failure_data.error.message


def test_a_failed_expiry_does_not_skip_the_orphan_clean_up(
    catalog, monkeypatch, step_output_metadata
):
    """One table's expiry fails (the run fails, naming it): the clean-up still runs for every
    table of the location that day."""
    import datetime as dt
    from pathlib import Path

    from shared import maintenance, orphans

    iceberg.write_table(catalog, EVENTS.identifier, standin.generate_events(SMALL, 0))
    table = catalog.load_table(EVENTS.identifier)
    killed = Path(orphans.path_key(table.metadata.location)) / "data" / "killed-write.parquet"
    killed.write_bytes(b"a sync killed before its commit")

    def expire_fails(catalog, identifier, *args, **kwargs):
        raise RuntimeError(f"{identifier}: the catalog said no")

    monkeypatch.setattr(maintenance, "expire_snapshots", expire_fails)
    later = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=4)).timestamp() * 1000)
    monkeypatch.setattr(orphans, "_now_ms", lambda now: later)
    daily = defs.resolve_schedule_def("ingestion_table_maintenance_daily")
    config = daily.evaluate_tick(build_schedule_context()).run_requests[0].run_config
    job = defs.resolve_job_def("ingestion_table_maintenance")
    result = job.execute_in_process(
        run_config=config, instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["ingestion_expire_snapshots"]
    assert "snapshots not expired" in failures[0].step_failure_data.error.message
    meta = step_output_metadata(result, "ingestion_remove_orphan_files")
    tables = {t["table"]: t for t in meta["tables"].value}
    assert tables[EVENTS.identifier]["deleted"] == 1 and not killed.exists()
    assert iceberg.read_table(catalog, EVENTS.identifier).num_rows > 0
