"""Cross-location automation: upstream dbt materializations request the analytics assets.

The upstream keys are declared here as plain AssetSpecs (what the transformation location
provides), and their materializations are reported to an instance as they would be by a dbt run.
"""

from __future__ import annotations

import pytest
from dagster import (
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
)

from analytics.definitions import defs as analytics_defs
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

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def _defs() -> Definitions:
    upstream = [
        AssetSpec(STG_EVENTS.key, partitions_def=daily_partitions),
        AssetSpec(FCT_DAILY_EVENTS.key, partitions_def=daily_partitions),
        AssetSpec(DIM_USERS.key),
        AssetSpec(STG_USER_VERSIONS.key),
    ]
    return Definitions.merge(analytics_defs, Definitions(assets=upstream))


def _report(instance, key, partitions=(None,)):
    for p in partitions:
        instance.report_runless_asset_event(AssetMaterialization(asset_key=key, partition=p))


def _requested(result, key):
    subset = next((r for r in result.results if r.key == key), None)
    if subset is None:
        return set()
    requested = subset.true_subset
    if requested.is_partitioned:
        return set(requested.expensively_compute_partition_keys())
    return {None} if requested.size else set()


def test_dbt_run_requests_the_updated_days_and_the_features():
    defs = _defs()
    instance = DagsterInstance.ephemeral()
    result = evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0  # nothing upstream yet

    # One transformation run materializes three days of staging/marts and dim_users.
    _report(instance, STG_EVENTS.key, DAYS)
    _report(instance, FCT_DAILY_EVENTS.key, DAYS)
    _report(instance, DIM_USERS.key)
    _report(instance, STG_USER_VERSIONS.key)
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, DAILY_METRICS_KEY) == set(DAYS)
    assert _requested(result, USER_FEATURES_KEY) == {None}


def test_users_refresh_alone_does_not_recompute_every_day():
    defs = _defs()
    instance = DagsterInstance.ephemeral()
    _report(instance, STG_EVENTS.key, DAYS)
    _report(instance, FCT_DAILY_EVENTS.key, DAYS)
    _report(instance, DIM_USERS.key)
    _report(instance, STG_USER_VERSIONS.key)
    result = evaluate_automation_conditions(defs=defs, instance=instance)
    # Pretend the requested runs happened: the analytics assets are now up to date.
    _report(instance, DAILY_METRICS_KEY, DAYS)
    _report(instance, USER_FEATURES_KEY)
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0

    _report(instance, DIM_USERS.key)
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, DAILY_METRICS_KEY) == set()
    assert _requested(result, USER_FEATURES_KEY) == {None}

    # A later day arrives: only that day is requested.
    _report(instance, STG_EVENTS.key, ["2026-01-04"])
    _report(instance, FCT_DAILY_EVENTS.key, ["2026-01-04"])
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, DAILY_METRICS_KEY) == {"2026-01-04"}
    # The features wait for dim_users' rebuild (their all-time totals), which follows the day.
    assert _requested(result, USER_FEATURES_KEY) == set()
    _report(instance, DAILY_METRICS_KEY, ["2026-01-04"])
    _report(instance, DIM_USERS.key)
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, USER_FEATURES_KEY) == {None}
    assert _requested(result, DAILY_METRICS_KEY) == set()
