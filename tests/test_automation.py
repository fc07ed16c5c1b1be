"""Cross-location automation: one ingestion run flows through dbt to analytics on its own.

Evaluates the automation conditions of all three locations on the workspace-wide asset graph
(as the daemon does), reporting materializations as the runs would.
"""

from __future__ import annotations

import datetime as dt

from dagster import AssetKey, AssetMaterialization, DagsterInstance, Definitions
from dagster import evaluate_automation_conditions as evaluate

from data_platform.graph import load_location_defs

NOW = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


def workspace_assets() -> Definitions:
    """Every location's assets in one graph, as the daemon sees the workspace (nothing runs).

    The locations' resources are equal but distinct objects under the same keys (``iceberg``),
    which Definitions.merge refuses; one of each key is enough to evaluate conditions.
    """
    assets, resources = [], {}
    for defs in load_location_defs().values():
        assets.extend(defs.assets or [])
        for key, resource in (defs.resources or {}).items():
            resources.setdefault(key, resource)
    return Definitions(assets=assets, resources=resources)


def requested(result) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in result.results:
        if r.true_subset.size:
            out[r.key.to_user_string()] = r.true_subset.size
    return out


def materialize(instance, key: str, partitions=None):
    for p in partitions or [None]:
        instance.report_runless_asset_event(
            AssetMaterialization(AssetKey(key.split("/")), partition=p)
        )


def test_an_ingestion_run_flows_through_the_whole_graph():
    defs = workspace_assets()
    instance = DagsterInstance.ephemeral()
    first = evaluate(defs=defs, instance=instance, evaluation_time=NOW)
    assert requested(first) == {}

    materialize(instance, "raw/users")
    materialize(instance, "raw/events")
    hop1 = evaluate(defs=defs, instance=instance, cursor=first.cursor, evaluation_time=NOW)
    got = requested(hop1)
    # One tick requests the whole chain downstream of the raw tables, across both locations.
    assert {
        "staging/stg_users",
        "staging/stg_events",
        "marts/fct_daily_events",
        "marts/dim_users",
        "ml/user_features",
    } <= set(got), got
    # Every day up to the evaluation time, as one request (one single-run backfill).
    assert got["staging/stg_events"] == got["marts/fct_daily_events"] == 4  # complete days

    # The runs land; the daily analytics follow on the next tick.
    days = [f"2026-01-0{d}" for d in range(1, 5)]
    for key in ("staging/stg_users", "marts/dim_users", "ml/user_features"):
        materialize(instance, key)
    materialize(instance, "staging/stg_events", days)
    materialize(instance, "marts/fct_daily_events", days)
    hop2 = evaluate(defs=defs, instance=instance, cursor=hop1.cursor, evaluation_time=NOW)
    got = requested(hop2)
    assert got.get("analytics/daily_metrics") == 4, got

    # Nothing new upstream: nothing more is requested.
    materialize(instance, "analytics/daily_metrics", days)
    hop3 = evaluate(defs=defs, instance=instance, cursor=hop2.cursor, evaluation_time=NOW)
    assert requested(hop3) == {}
