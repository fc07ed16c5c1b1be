"""The analytics location's table maintenance job: its tables' old snapshots expire with the
settings' retention (shared.maintenance), every row kept."""

import pyarrow as pa
import pytest
from dagster import DagsterInstance

from analytics.definitions import defs
from analytics.maintenance import owned_tables
from shared.iceberg import write_table

pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_location_maintains_the_tables_of_its_assets():
    assert owned_tables() == ["analytics.daily_metrics", "ml.user_features"]
    schedule = defs.resolve_schedule_def("analytics_table_maintenance_hourly")
    assert schedule.default_status.value == "RUNNING"


def test_the_job_expires_old_snapshots_of_its_tables(catalog, monkeypatch):
    for n in range(6):  # six runs, each replacing the table
        write_table(catalog, "ml.user_features", pa.table({"user_id": list(range(n + 1))}))
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "2")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    job = defs.resolve_job_def("analytics_table_maintenance")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    table = catalog.load_table("ml.user_features")
    assert len(table.metadata.snapshots) == 2
    assert sorted(table.scan().to_arrow()["user_id"].to_pylist()) == list(range(6))


def test_the_job_removes_the_files_of_expired_snapshots_once_old_enough(catalog, monkeypatch):
    """The daily schedule's run deletes the files only expired snapshots listed (each run
    replaced the table), once older than the age; the hourly one does not; rows stay."""
    import datetime as dt
    from pathlib import Path

    from dagster import build_schedule_context

    from shared import orphans

    def files(table) -> list[Path]:
        return [Path(orphans.path_key(t.file.file_path)) for t in table.scan().plan_files()]

    first = []
    for n in range(4):  # four runs, each replacing the table
        write_table(catalog, "ml.user_features", pa.table({"user_id": list(range(n + 1))}))
        first = first or files(catalog.load_table("ml.user_features"))
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "2")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    job = defs.resolve_job_def("analytics_table_maintenance")
    hourly = defs.resolve_schedule_def("analytics_table_maintenance_hourly")
    daily = defs.resolve_schedule_def("analytics_table_maintenance_daily")
    step = "analytics_remove_orphan_files"
    for schedule in (hourly, daily):  # now: the hourly run skips, the daily keeps young files
        config = schedule.evaluate_tick(build_schedule_context()).run_requests[0].run_config
        result = job.execute_in_process(run_config=config, instance=DagsterInstance.ephemeral())
        assert result.success
        meta = step_metadata(result, step)
        if schedule is hourly:
            assert meta["skipped"].value is True and "tables" not in meta
        else:
            assert "skipped" not in meta and meta["deleted"].value == 0
        assert first[0].exists()

    later = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=4)).timestamp() * 1000)
    monkeypatch.setattr(orphans, "_now_ms", lambda now: later)
    result = job.execute_in_process(run_config=config, instance=DagsterInstance.ephemeral())
    assert result.success
    assert not first[0].exists()
    assert step_metadata(result, step)["deleted"].value >= 1
    table = catalog.load_table("ml.user_features")
    assert all(p.exists() for p in files(table))
    assert sorted(table.scan().to_arrow()["user_id"].to_pylist()) == list(range(4))


def step_metadata(result, step_key: str) -> dict:
    """The output metadata of ``step_key`` in ``result``."""
    output = next(
        e
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == step_key
    )
    return output.event_specific_data.metadata
