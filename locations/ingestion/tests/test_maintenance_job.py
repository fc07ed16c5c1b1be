"""The ingestion location's table maintenance job: compacts the raw tables' small files, expires
old snapshots of the raw tables and their key indexes, keeps every row, and a later sync works on
the compacted and expired tables."""

import pytest
from dagster import DagsterInstance

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


def test_the_job_expires_old_snapshots_with_the_settings_retention(catalog, monkeypatch):
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
    output = next(
        e
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == "ingestion_expire_snapshots"
    )
    meta = output.event_specific_data.metadata
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
