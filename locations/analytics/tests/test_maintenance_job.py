"""The analytics location's table maintenance job: its tables' old snapshots expire with the
settings' retention (shared.maintenance), every row kept."""

import pytest

from analytics.definitions import defs
from analytics.maintenance import owned_tables

pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_location_maintains_the_tables_of_its_assets():
    assert owned_tables() == ["analytics.daily_metrics", "ml.user_features"]
    schedule = defs.resolve_schedule_def("analytics_table_maintenance_hourly")
    assert schedule.default_status.value == "RUNNING"


def test_the_job_expires_old_snapshots_of_its_tables(table_maintenance_job, catalog):
    """Old snapshots of ml.user_features expire with the settings' retention; every row is kept."""
    table_maintenance_job(defs, "analytics", "ml.user_features", catalog).expires_old_snapshots()


def test_the_job_removes_the_files_of_expired_snapshots_once_old_enough(
    table_maintenance_job, catalog
):
    """The daily schedule's run deletes the files only expired snapshots listed, once older than
    the age; the hourly one does not; rows stay."""
    job = table_maintenance_job(defs, "analytics", "ml.user_features", catalog)
    job.removes_the_files_of_expired_snapshots_once_old_enough()
