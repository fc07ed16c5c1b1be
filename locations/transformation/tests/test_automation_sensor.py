"""The location's automation sensor, evaluated as the code server does (``use_user_code_server``):
a raw sync's recorded days become a backfill of exactly those days (plus the lookback)."""

import datetime as dt

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, build_sensor_context

from shared.changes import changed_days_metadata
from transformation.definitions import defs

pytestmark = pytest.mark.filterwarnings("ignore")


def requested(result) -> dict[str, list | None]:
    """Asset -> requested partition keys (None: unpartitioned), over every run request.

    The sensor returns a request either as a backfill (``asset_graph_subset``) or as a run of
    one partition (``asset_selection`` + ``partition_key``); both are read here."""
    out: dict[str, list | None] = {}

    def add(key: AssetKey, partitions: list[str] | None) -> None:
        name = key.to_user_string()
        if partitions is None:
            out[name] = None
        else:
            out[name] = sorted({*(out.get(name) or []), *partitions})

    for request in result.run_requests or []:
        subset = request.asset_graph_subset
        if subset is not None:
            for key in subset.asset_keys:
                partitions = subset.partitions_subsets_by_asset_key.get(key)
                add(key, list(partitions.get_partition_keys()) if partitions is not None else None)
        else:
            for key in request.asset_selection or []:
                add(key, [request.partition_key] if request.partition_key is not None else None)
    return out


def test_a_raw_sync_requests_its_days_through_the_real_sensor():
    sensor = defs.resolve_sensor_def("transformation_automation_sensor")
    repo = defs.get_repository_def()
    instance = DagsterInstance.ephemeral()
    first = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repo))
    assert not first.run_requests  # the first tick sets the cursor

    days = changed_days_metadata([dt.date(2026, 3, 10)])
    instance.report_runless_asset_event(
        AssetMaterialization(AssetKey(["raw", "events"]), metadata=days)
    )
    instance.report_runless_asset_event(AssetMaterialization(AssetKey(["raw", "users"])))
    second = sensor.evaluate_tick(
        build_sensor_context(instance=instance, repository_def=repo, cursor=first.cursor)
    )
    assert requested(second) == {
        "staging/stg_events": ["2026-03-09", "2026-03-10"],
        "marts/fct_daily_events": ["2026-03-09", "2026-03-10"],
        "staging/stg_users": None,
        "staging/stg_user_versions": None,
        "marts/dim_users": None,
    }
