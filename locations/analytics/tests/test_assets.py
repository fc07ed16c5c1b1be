"""The assets on a real local Iceberg catalog: partition overwrite, reruns, metadata, pushdown."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize

from analytics.assets import daily_metrics, user_features
from analytics.sources import STG_EVENTS
from shared.iceberg import read_table, write_table
from shared.resources import IcebergCatalogResource

pytestmark = pytest.mark.filterwarnings("ignore")


def run(assets, partition_key=None, tags=None, run_config=None, raise_on_error=True):
    return materialize(
        assets,
        resources={"iceberg": IcebergCatalogResource()},
        partition_key=partition_key,
        tags=tags or {},
        run_config=run_config,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def run_range(first: str, last: str):
    return run(
        [daily_metrics],
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )


def metrics_table(catalog) -> pl.DataFrame:
    return pl.from_arrow(read_table(catalog, "analytics.daily_metrics")).sort("metric_date")


def test_daily_metrics_range_in_one_run(write_upstream, sample, catalog):
    events, users = sample
    write_upstream(events, users)
    result = run_range("2026-01-01", "2026-01-04")
    assert result.success
    table = metrics_table(catalog)
    assert table.columns[0] == "metric_date"
    iceberg_table = catalog.load_table("analytics.daily_metrics")
    (field,) = iceberg_table.spec().fields  # partitioned by day(metric_date)
    assert str(field.transform) == "day"
    assert iceberg_table.schema().find_field(field.source_id).name == "metric_date"
    assert table.select(
        "metric_date", "events_total", "active_users", "revenue", "signups"
    ).rows() == [
        (dt.date(2026, 1, 1), 2, 1, 20.0, 1),
        (dt.date(2026, 1, 2), 3, 1, 12.5, 1),
        (dt.date(2026, 1, 3), 2, 2, 7.5, 0),
        (dt.date(2026, 1, 4), 0, 0, 0.0, 1),  # signup only
    ]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "row_count_in_bounds": True,
        "keys_not_null_unique": True,
        "metrics_in_valid_ranges": True,
        "reconciles_with_fct_daily_events": True,
    }
    mats = result.get_asset_materialization_events()
    assert len(mats) == 4  # one materialization per partition of the range
    md = mats[0].materialization.metadata
    assert md["partition_window"].value == "2026-01-01..2026-01-04"
    assert (
        int(md["snapshot_id"].value)
        == catalog.load_table("analytics.daily_metrics").current_snapshot().snapshot_id
    )
    assert md["dagster/row_count"].value == 4
    assert [c.name for c in md["dagster/column_schema"].value.columns][0] == "metric_date"
    inputs = md["inputs"].value
    stg = next(i for i in inputs if i["table"] == "staging.stg_events")
    assert "event_ts" in stg["row_filter"] and "event_date" in stg["row_filter"]
    assert stg["columns"] == list(STG_EVENTS.names)


def test_rerun_of_a_day_replaces_only_that_day(write_upstream, sample, catalog, make):
    events, users = sample
    write_upstream(events, users)
    assert run_range("2026-01-01", "2026-01-04").success
    before = metrics_table(catalog)

    # Re-running a day with unchanged upstream leaves identical contents.
    assert run([daily_metrics], partition_key="2026-01-02").success
    assert metrics_table(catalog).equals(before)

    # The upstream day changes: only that day's row changes, the others are untouched.
    changed = events + [make.event("e9", 1, "purchase", make.ts(2, 13), 100.0)]
    write_upstream(changed, users)
    result = run([daily_metrics], partition_key="2026-01-02")
    assert result.success
    after = metrics_table(catalog)
    assert after.height == before.height
    assert after.filter(pl.col("metric_date") != dt.date(2026, 1, 2)).equals(
        before.filter(pl.col("metric_date") != dt.date(2026, 1, 2))
    )
    day2 = after.filter(pl.col("metric_date") == dt.date(2026, 1, 2)).row(0, named=True)
    assert (day2["events_total"], day2["revenue"], day2["active_users"]) == (4, 112.5, 2)

    # The partition read pushed its filter down: only the day's events were read.
    md = result.get_asset_materialization_events()[0].materialization.metadata
    stg = next(i for i in md["inputs"].value if i["table"] == "staging.stg_events")
    assert stg["rows_read"] == 4


def test_rerun_of_the_whole_range_is_identical(write_upstream, sample, catalog):
    events, users = sample
    write_upstream(events, users)
    assert run_range("2026-01-01", "2026-01-04").success
    first = metrics_table(catalog)
    assert run_range("2026-01-01", "2026-01-04").success
    assert metrics_table(catalog).equals(first)


def test_user_features_materialize_and_rerun(write_upstream, sample, catalog):
    events, users = sample
    write_upstream(events, users)
    result = run([user_features])
    assert result.success
    table = pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id")
    # As of the latest event day (2026-01-03): user 3 signed up on 2026-01-04, so is excluded.
    assert table.select("user_id", "as_of_date", "events_total", "revenue_total").rows() == [
        (1, dt.date(2026, 1, 3), 3, 20.0),
        (2, dt.date(2026, 1, 3), 4, 20.0),
    ]
    md = result.get_asset_materialization_events()[0].materialization.metadata
    assert md["as_of_date"].value == "2026-01-03"
    assert md["dagster/row_count"].value == 2
    assert all(e.passed for e in result.get_asset_check_evaluations())

    assert run([user_features]).success
    again = pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id")
    assert again.equals(table)


def test_user_features_as_of_config_pushes_the_filter_down(write_upstream, sample, catalog):
    events, users = sample
    write_upstream(events, users)
    result = run(
        [user_features],
        run_config={"ops": {"ml__user_features": {"config": {"as_of_date": "2026-01-01"}}}},
    )
    assert result.success
    table = pl.from_arrow(read_table(catalog, "ml.user_features"))
    assert table.select("user_id", "events_total", "tenure_days").rows() == [(1, 2, 0)]
    md = result.get_asset_materialization_events()[0].materialization.metadata
    stg = next(i for i in md["inputs"].value if i["table"] == "staging.stg_events")
    assert stg["rows_read"] == 3  # e1 twice + e2: later days were never read
    assert "event_ts" in stg["row_filter"]


def _long_history(make, days=60):
    """Two users, one event a day each for ``days`` days from 2026-01-01, a purchase every 10th
    day (user 2's without an amount), and a user without events."""
    users = [make.user(1, make.ts(1, 0)), make.user(2, make.ts(1, 0)), make.user(3, make.ts(1, 0))]
    events = []
    for i in range(days):
        day = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=i)
        purchase = i % 10 == 0
        events.append(
            make.event(
                f"a{i}", 1, "purchase" if purchase else "click", day, 10.0 if purchase else None
            )
        )
        events.append(make.event(f"b{i}", 2, "purchase" if purchase else "page_view", day))
    return events, users


def _inputs(result):
    md = result.get_asset_materialization_events()[0].materialization.metadata
    return md, {i["table"]: i for i in md["inputs"].value}


def test_user_features_as_of_the_latest_day_read_only_30_days_of_events(
    write_upstream, catalog, make
):
    """Issue 11: after 60 days, the features read 30 days of stg_events (the all-time totals come
    from dim_users) and equal the features computed from every event (an explicit as-of date on
    the same day)."""
    events, users = _long_history(make)
    write_upstream(events, users)
    result = run([user_features])
    assert result.success
    md, inputs = _inputs(result)
    assert md["as_of_date"].value == "2026-03-01"
    assert md["features_from"].value.startswith("last 30 days")
    assert inputs["staging.stg_events"]["rows_read"] == 2 * 30
    assert "marts.dim_users" in inputs
    fast = pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id")
    assert fast.select("user_id", "events_total", "events_30d", "purchases_total").rows() == [
        (1, 60, 30, 6),
        (2, 60, 30, 6),
        (3, 0, 0, 0),
    ]
    assert fast.get_column("avg_order_value").to_list() == [10.0, None, None]
    assert all(e.passed for e in result.get_asset_check_evaluations())

    # The same day given explicitly, from a mart that does not cover it (rebuilt with a later
    # event of user 3): every event up to the day is read, and the rows are the same.
    later = [make.event("late", 3, "click", make.ts(2, 12, month=3))]
    write_upstream(events + later, users)
    past = run(
        [user_features],
        run_config={"ops": {"ml__user_features": {"config": {"as_of_date": "2026-03-01"}}}},
    )
    assert past.success
    md, inputs = _inputs(past)
    assert md["features_from"].value == "every event up to as_of_date"
    assert inputs["staging.stg_events"]["rows_read"] == 2 * 60
    assert pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id").equals(fast)


def test_user_features_count_from_the_events_while_dim_users_lacks_priced_purchases(
    write_upstream, catalog, make
):
    """An upgraded deployment: dim_users leaves priced_purchase_count null for a user whose
    purchase days were built before fct_daily_events counted priced purchases. The features do
    not take a count that would be too low (0): they read every event, and the average order
    value is the one the events give."""
    events, users = _long_history(make)
    dim = make.with_activity(users, events)
    for row in dim:
        if row["user_id"] == 1:
            row["priced_purchase_count"] = None
    write_upstream(events, dim)
    result = run([user_features])
    assert result.success
    md, inputs = _inputs(result)
    assert md["features_from"].value == "every event up to as_of_date"
    assert inputs["staging.stg_events"]["rows_read"] == 2 * 60
    table = pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id")
    assert table.get_column("avg_order_value").to_list() == [10.0, None, None]


def test_user_features_read_every_event_while_dim_users_is_older_than_the_events(
    write_upstream, catalog, make
):
    """A mart not yet rebuilt after new events (its snapshot older than stg_events') does not
    hold their totals: the features are computed from every event, and are right."""
    events, users = _long_history(make)
    write_upstream(events, users)
    new_day = [make.event("n1", 1, "click", make.ts(2, 9, month=3))]
    write_table(
        catalog,
        "staging.stg_events",
        pa.Table.from_pylist(new_day, schema=make.stg_events_schema),
        mode="append",
    )
    result = run([user_features])
    assert result.success
    md, inputs = _inputs(result)
    assert md["as_of_date"].value == "2026-03-02"
    assert md["features_from"].value == "every event up to as_of_date"
    assert inputs["staging.stg_events"]["rows_read"] == 2 * 60 + 1
    table = pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id")
    assert table.get_column("events_total").to_list() == [61, 60, 0]
    # Computed from every event, the totals now differ from the stale mart's: reported.
    recon = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert recon["reconciles_with_dim_users"].passed is False
    assert "user 1" in recon["reconciles_with_dim_users"].description
