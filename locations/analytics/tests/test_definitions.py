"""The code location loads cheaply and wires what the platform expects."""

from __future__ import annotations

import pytest
from dagster import BackfillPolicy, DefaultSensorStatus, Definitions

from analytics.definitions import defs
from analytics.sources import (
    DAILY_METRICS_KEY,
    DIM_USERS,
    FCT_DAILY_EVENTS,
    STG_EVENTS,
    STG_USER_VERSIONS,
    USER_FEATURES_KEY,
)
from shared.partitions import daily_partitions

pytestmark = pytest.mark.filterwarnings("ignore")


def test_loads_without_touching_the_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "never"))
    Definitions.validate_loadable(defs)
    assert not (tmp_path / "never").exists()


def test_assets_keys_partitions_and_deps():
    graph = defs.resolve_asset_graph()
    metrics = graph.get(DAILY_METRICS_KEY)
    features = graph.get(USER_FEATURES_KEY)
    assert metrics.partitions_def == daily_partitions
    assert metrics.backfill_policy == BackfillPolicy.single_run()
    assert features.partitions_def is None
    assert set(metrics.parent_keys) == {STG_EVENTS.key, FCT_DAILY_EVENTS.key, DIM_USERS.key}
    assert set(features.parent_keys) == {STG_EVENTS.key, DIM_USERS.key, STG_USER_VERSIONS.key}
    assert metrics.automation_condition is not None and features.automation_condition is not None
    assert {c.name for c in graph.asset_check_keys if c.asset_key == DAILY_METRICS_KEY} >= {
        "row_count_in_bounds",
        "reconciles_with_fct_daily_events",
    }


def test_automation_sensor_runs_by_default_and_job_and_schedule_exist():
    sensor = defs.resolve_sensor_def("analytics_automation_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert defs.resolve_job_def("daily_metrics_job").partitions_def == daily_partitions
    assert defs.resolve_schedule_def("daily_metrics_schedule").cron_schedule == "0 6 * * *"
