"""The asset graph the location exposes: keys, groups, owners, partitions, checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from dagster import AssetKey, BackfillPolicy

from shared.partitions import daily_partitions
from shared.settings import load_settings
from transformation.assets import build_args, dbt_daily_models, dbt_models, window_vars
from transformation.definitions import defs
from transformation.project import MANIFEST_PATH

MODELS = {
    AssetKey(["staging", "stg_users"]),
    AssetKey(["staging", "stg_user_versions"]),
    AssetKey(["staging", "stg_events"]),
    AssetKey(["marts", "dim_users"]),
    AssetKey(["marts", "fct_daily_events"]),
}


def test_models_are_assets_named_after_their_iceberg_tables():
    graph = defs.resolve_asset_graph()
    assert graph.materializable_asset_keys == MODELS
    # dbt sources are the ingestion location's raw/* assets.
    assert graph.get(AssetKey(["staging", "stg_users"])).parent_keys == {AssetKey(["raw", "users"])}
    assert graph.get(AssetKey(["staging", "stg_user_versions"])).parent_keys == {
        AssetKey(["raw", "users"])
    }
    assert graph.get(AssetKey(["staging", "stg_events"])).parent_keys == {
        AssetKey(["raw", "events"])
    }
    # dim_users' activity totals are sums over the daily fact, not over every event.
    assert graph.get(AssetKey(["marts", "dim_users"])).parent_keys == {
        AssetKey(["staging", "stg_users"]),
        AssetKey(["marts", "fct_daily_events"]),
    }
    for key in MODELS:
        node = graph.get(key)
        assert node.group_name == key.path[0]
        assert node.owners and all(o.startswith("team:") for o in node.owners)
        assert node.description and len(node.description) > 40


def test_every_model_is_in_exactly_one_dbt_assets_definition():
    daily, full = set(dbt_daily_models.keys), set(dbt_models.keys)
    assert daily == {AssetKey(["staging", "stg_events"]), AssetKey(["marts", "fct_daily_events"])}
    assert not daily & full
    assert daily | full == MODELS
    manifest = json.loads(MANIFEST_PATH.read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            assert len({"daily", "full"} & set(node["tags"])) == 1, node["name"]


def test_daily_models_are_daily_partitioned_with_single_run_backfills():
    assert dbt_daily_models.partitions_def == daily_partitions
    assert dbt_daily_models.backfill_policy == BackfillPolicy.single_run()
    assert dbt_models.partitions_def is None


def test_dbt_tests_are_asset_checks():
    checks = {(c.asset_key.path[-1], c.name) for c in defs.resolve_asset_graph().asset_check_keys}
    assert ("stg_events", "unique_stg_events_event_id") in checks
    assert ("dim_users", "relationships_dim_users_user_id__user_id__ref_stg_users_") in checks
    assert ("stg_users", "accepted_values_stg_users_plan__free__pro__enterprise") in checks
    # Singular tests attached through meta.dagster.ref, each in the step that can run it.
    assert ("fct_daily_events", "assert_fct_daily_events_reconciles_with_stg_events") in checks
    assert ("dim_users", "assert_event_users_exist_in_dim_users") in checks
    daily_checks = {c.name for c in dbt_daily_models.check_keys}
    assert "assert_event_users_exist_in_dim_users" not in daily_checks


def test_window_vars_cover_a_partition_range():
    window = daily_partitions.time_window_for_partition_key("2026-01-05")
    assert window_vars(window.start, window.end) == {
        "window_start": "2026-01-05",
        "window_end": "2026-01-06",
    }
    utc = dt.UTC
    assert window_vars(
        dt.datetime(2026, 1, 1, tzinfo=utc), dt.datetime(2026, 1, 15, tzinfo=utc)
    ) == {
        "window_start": "2026-01-01",
        "window_end": "2026-01-15",
    }
    with pytest.raises(ValueError, match="whole UTC days"):
        window_vars(dt.datetime(2026, 1, 1, 6, tzinfo=utc), dt.datetime(2026, 1, 2, tzinfo=utc))


WINDOW = (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))


def test_target_follows_the_mode():
    local = load_settings({"DATA_PLATFORM_ENV": "local", "DATA_PLATFORM_HOME": "/tmp/x"})
    prod = load_settings(
        {
            "DATA_PLATFORM_ENV": "prod",
            "ICEBERG_REST_URI": "http://iceberg-rest:8181",
            "GARAGE_S3_ENDPOINT": "http://garage:3900",
        }
    )
    assert build_args(local, {}) == ["build", "--target", "duckdb"]
    args = build_args(prod, {"data_platform_home": "/h"}, window_vars(*WINDOW))
    assert args[:3] == ["build", "--target", "trino"]
    assert json.loads(args[4]) == {"data_platform_home": "/h"}
    # The window goes in dbt's event-time flags, not --vars (which defeat partial parsing).
    assert args[5:] == [
        "--event-time-start",
        "2026-01-01",
        "--event-time-end",
        "2026-01-02",
    ]
