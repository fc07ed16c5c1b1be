"""Repository-wide pytest setup.

Tests run with ``--import-mode=importlib`` so that every location can have a ``tests/`` folder with
files of the same names. That mode names ``shared/tests/test_x.py`` ``shared.tests.test_x`` and
would register an empty placeholder module ``shared`` for it; importing the real package first
keeps ``shared`` the library.
"""

import pytest

import shared  # noqa: F401


def pytest_configure(config):
    # A test session started in the background with SIGINT ignored would ignore SIGTERM after the
    # first in-process Dagster run, and so would every process a later test starts (a compute-log
    # capture's `tail -F` then never stops): data_platform.processes.restore_default_interrupt.
    from data_platform.processes import restore_default_interrupt

    restore_default_interrupt()

    # Every catalog the platform opens installs pyiceberg's transaction-metadata cache
    # (shared.iceberg.open_catalog); so does the test session, up front, so that a test that
    # makes its own catalog runs as the platform does whatever ran before it.
    from shared import pyiceberg_fixes

    pyiceberg_fixes.install()

    # dagster-dbt needs dbt's manifest to load the transformation location; a fresh clone has
    # none (dbt/target is git-ignored), so parse the project once before any test imports it.
    from transformation.project import ensure_manifest

    ensure_manifest()


def _step_output_metadata(result, step_key: str) -> dict:
    """The output metadata of step ``step_key`` in an in-process run's ``result``."""
    output = next(
        e
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == step_key
    )
    return output.event_specific_data.metadata


@pytest.fixture
def step_output_metadata():
    """:func:`_step_output_metadata`, for tests that read what a job's step reported."""
    return _step_output_metadata


@pytest.fixture
def table_maintenance_job(monkeypatch):
    """The behaviour every location's ``<location>_table_maintenance`` job has (the jobs are
    built alike by ``shared.maintenance``), checked on one table the location owns:
    ``table_maintenance_job(defs, location, identifier, catalog)`` gives the checks, which the
    analytics and transformation tests call with their own definitions and table, one check per
    test (a fresh home each)."""
    return lambda defs, location, identifier, catalog: _TableMaintenanceJob(
        defs, location, identifier, catalog, monkeypatch
    )


class _TableMaintenanceJob:
    """The checks of :func:`table_maintenance_job` on one location's job and table."""

    def __init__(self, defs, location, identifier, catalog, monkeypatch):
        self.defs, self.location, self.identifier = defs, location, identifier
        self.catalog, self.monkeypatch = catalog, monkeypatch

    def replace_table(self, runs: int) -> list:
        """``runs`` writes, each replacing the table; the first one's data files."""
        import pyarrow as pa

        from shared.iceberg import write_table

        first = []
        for n in range(runs):
            write_table(self.catalog, self.identifier, pa.table({"user_id": list(range(n + 1))}))
            first = first or self.files()
        # Keep 2, with no minimum age: the job expires the rest at once.
        self.monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "2")
        self.monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
        return first

    def files(self) -> list:
        from pathlib import Path

        from shared import orphans

        table = self.catalog.load_table(self.identifier)
        return [Path(orphans.path_key(t.file.file_path)) for t in table.scan().plan_files()]

    def user_ids(self) -> list[int]:
        table = self.catalog.load_table(self.identifier)
        return sorted(table.scan().to_arrow()["user_id"].to_pylist())

    def run(self, run_config=None):
        from dagster import DagsterInstance

        job = self.defs.resolve_job_def(f"{self.location}_table_maintenance")
        result = job.execute_in_process(run_config=run_config, instance=DagsterInstance.ephemeral())
        assert result.success
        return result

    def step_metadata(self, result) -> dict:
        """The output metadata of the job's orphan-file step in ``result``."""
        return _step_output_metadata(result, f"{self.location}_remove_orphan_files")

    def expires_old_snapshots(self) -> None:
        """Old snapshots expire with the settings' retention; every row is kept."""
        self.replace_table(6)
        self.run()
        table = self.catalog.load_table(self.identifier)
        assert len(table.metadata.snapshots) == 2
        assert self.user_ids() == list(range(6))

    def removes_the_files_of_expired_snapshots_once_old_enough(self) -> None:
        """The daily schedule's run deletes the files only expired snapshots listed, once older
        than the age; the hourly one does not; rows stay."""
        import datetime as dt

        from dagster import build_schedule_context

        from shared import orphans

        first = self.replace_table(4)
        hourly = self.defs.resolve_schedule_def(f"{self.location}_table_maintenance_hourly")
        daily = self.defs.resolve_schedule_def(f"{self.location}_table_maintenance_daily")
        for schedule in (hourly, daily):  # now: the hourly run skips, the daily keeps young files
            config = schedule.evaluate_tick(build_schedule_context()).run_requests[0].run_config
            meta = self.step_metadata(self.run(config))
            if schedule is hourly:
                assert meta["skipped"].value is True and "tables" not in meta
            else:
                assert "skipped" not in meta and meta["deleted"].value == 0
            assert first[0].exists()

        later = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=4)).timestamp() * 1000)
        self.monkeypatch.setattr(orphans, "_now_ms", lambda now: later)
        result = self.run(config)
        assert not first[0].exists()
        assert self.step_metadata(result)["deleted"].value >= 1
        assert all(p.exists() for p in self.files())
        assert self.user_ids() == list(range(4))
