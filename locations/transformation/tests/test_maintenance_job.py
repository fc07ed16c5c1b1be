"""The transformation location's table maintenance job: its tables' old snapshots expire with the
settings' retention (shared.maintenance), every row kept."""

import pyarrow as pa
import pytest
from dagster import DagsterInstance

from shared.iceberg import write_table
from transformation.definitions import defs
from transformation.maintenance import owned_tables

pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_location_maintains_the_tables_of_its_assets():
    assert owned_tables() == [
        "marts.dim_users",
        "marts.fct_daily_events",
        "staging.stg_events",
        "staging.stg_user_versions",
        "staging.stg_users",
    ]
    schedule = defs.resolve_schedule_def("transformation_table_maintenance_hourly")
    assert schedule.default_status.value == "RUNNING"


def test_the_job_expires_old_snapshots_of_its_tables(catalog, monkeypatch):
    for n in range(6):  # six runs, each replacing the table
        write_table(catalog, "marts.dim_users", pa.table({"user_id": list(range(n + 1))}))
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "2")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    job = defs.resolve_job_def("transformation_table_maintenance")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral())
    assert result.success
    table = catalog.load_table("marts.dim_users")
    assert len(table.metadata.snapshots) == 2
    assert sorted(table.scan().to_arrow()["user_id"].to_pylist()) == list(range(6))
