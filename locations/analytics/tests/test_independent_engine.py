"""The documented formulas, written in SQL and run by DuckDB, agree with the polars assets.

This is how a reviewer recomputes the tables: from the upstream rows with another engine. The
data is random (seeded) with duplicate event_ids, null users, unknown users, purchases without
amount and users signing up after the as-of day.
"""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from analytics.assets import daily_metrics, user_features
from shared.iceberg import read_table
from shared.resources import IcebergCatalogResource

duckdb = pytest.importorskip("duckdb")
pytestmark = pytest.mark.filterwarnings("ignore")

UTC = dt.UTC
TYPES = ["page_view", "click", "add_to_cart", "purchase"]

FEATURES_SQL = """
with utc as (select * replace (cast(timezone('UTC', event_ts) as date) as event_date)
             from stg_events),
e as (select distinct on (event_id) * from utc
           where event_id is not null and user_id is not null and event_date <= $d
           order by event_id),
agg as (
  select user_id, min(event_date) f, max(event_date) l, count(*) n,
    count(*) filter (where event_date >= $d - 6) n7,
    count(*) filter (where event_date >= $d - 29) n30,
    count(distinct event_date) filter (where event_date >= $d - 6) a7,
    count(distinct event_date) filter (where event_date >= $d - 29) a30,
    count(*) filter (where event_date >= $d - 29 and event_type = 'page_view') pv30,
    count(*) filter (where event_date >= $d - 29 and event_type = 'click') c30,
    count(*) filter (where event_date >= $d - 29 and event_type = 'add_to_cart') atc30,
    count(*) filter (where event_date >= $d - 29 and event_type = 'purchase') p30,
    count(*) filter (where event_type = 'purchase') p,
    round(coalesce(sum(amount) filter (where event_date >= $d - 29 and event_type = 'purchase'), 0), 6) r30,
    round(coalesce(sum(amount) filter (where event_type = 'purchase'), 0), 6) r,
    count(amount) filter (where event_type = 'purchase') priced
  from e group by user_id)
select u.user_id, $d as as_of_date, v.country, v.plan,
  cast(timezone('UTC', u.signed_up_at) as date) as signup_date,
  $d - cast(timezone('UTC', u.signed_up_at) as date) as tenure_days,
  agg.f as first_event_date, agg.l as last_event_date,
  $d - agg.f as days_since_first_event, $d - agg.l as days_since_last_event,
  coalesce(n, 0) events_total, coalesce(n7, 0) events_7d, coalesce(n30, 0) events_30d,
  coalesce(a7, 0) active_days_7d, coalesce(a30, 0) active_days_30d,
  coalesce(pv30, 0) page_views_30d, coalesce(c30, 0) clicks_30d,
  coalesce(atc30, 0) add_to_carts_30d, coalesce(p30, 0) purchases_30d,
  coalesce(p, 0) purchases_total, coalesce(r30, 0.0) revenue_30d, coalesce(r, 0.0) revenue_total,
  case when coalesce(priced, 0) > 0 then r / priced end avg_order_value,
  coalesce(n7, 0) > 0 is_active_7d, coalesce(n30, 0) > 0 is_active_30d,
  coalesce(p, 0) > 0 has_purchased, coalesce(p30, 0) > 0 purchased_30d
from dim_users u left join agg using (user_id)
left join (
  select user_id, country, plan from stg_user_versions
  where cast(timezone('UTC', valid_from) as date) <= $d
  qualify row_number() over (partition by user_id order by valid_from desc) = 1
) v using (user_id)
where u.signed_up_at is null or cast(timezone('UTC', u.signed_up_at) as date) <= $d
order by u.user_id
"""

METRICS_SQL = """
with utc as (select * replace (cast(timezone('UTC', event_ts) as date) as event_date)
             from stg_events),
e as (select distinct on (event_id) * from utc
           where event_id is not null and user_id is not null
             and event_date >= $s and event_date < $t
           order by event_id),
ev as (
  select event_date metric_date, count(distinct user_id) active_users, count(*) events_total,
    count(*) filter (where event_type = 'page_view') page_views,
    count(*) filter (where event_type = 'click') clicks,
    count(*) filter (where event_type = 'add_to_cart') add_to_carts,
    count(*) filter (where event_type = 'purchase') purchases,
    count(distinct user_id) filter (where event_type = 'purchase') purchasers,
    round(coalesce(sum(amount) filter (where event_type = 'purchase'), 0), 6) revenue,
    count(amount) filter (where event_type = 'purchase') priced
  from e group by 1),
su as (
  select cast(timezone('UTC', signed_up_at) as date) metric_date, count(distinct user_id) signups
  from dim_users group by 1
  having metric_date >= $s and metric_date < $t)
select metric_date, coalesce(active_users, 0) active_users, coalesce(events_total, 0) events_total,
  coalesce(page_views, 0) page_views, coalesce(clicks, 0) clicks,
  coalesce(add_to_carts, 0) add_to_carts, coalesce(purchases, 0) purchases,
  coalesce(purchasers, 0) purchasers, coalesce(revenue, 0.0) revenue, coalesce(signups, 0) signups,
  case when active_users > 0 then purchasers / active_users end conversion_rate,
  case when priced > 0 then revenue / priced end avg_order_value
from ev full join su using (metric_date)
order by metric_date
"""


@pytest.fixture
def random_upstream(write_upstream, make):
    rng = random.Random(7)
    users = [
        make.user(
            uid,
            dt.datetime(2025, 12, 20, tzinfo=UTC) + dt.timedelta(minutes=rng.randrange(40 * 1440)),
            rng.choice(["FR", "DE", "US"]),
            rng.choice(["free", "pro", "enterprise"]),
        )
        for uid in range(1, 61)
    ]
    # Point in time: a third of the users change plan or country during the month; dim_users
    # holds the latest version, stg_user_versions every one.
    versions = [make.version(u["user_id"], u["updated_at"], u["country"], u["plan"]) for u in users]
    for u in users[::3]:
        changed = u["updated_at"] + dt.timedelta(minutes=rng.randrange(1, 40 * 1440))
        later = make.version(
            u["user_id"], changed, rng.choice(["FR", "DE", "US"]), rng.choice(["pro", "enterprise"])
        )
        versions.append(later)
        u.update(country=later["country"], plan=later["plan"], updated_at=changed)
    events = []
    for i in range(1500):
        ts = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=rng.randrange(25 * 1440))
        etype = rng.choice(TYPES)
        amount = (
            round(rng.uniform(1, 200), 2) if etype == "purchase" and rng.random() > 0.05 else None
        )
        uid = rng.choice([*range(1, 61), None, 999])
        events.append(make.event(f"e{i}", uid, etype, ts, amount))
    events += rng.sample(events, 100)  # duplicates
    write_upstream(events, users, versions=versions)


def _assert_same(ours: pl.DataFrame, theirs: pl.DataFrame) -> None:
    assert ours.columns == theirs.columns
    assert ours.height == theirs.height
    for name in ours.columns:
        a, b = ours.get_column(name), theirs.get_column(name).cast(ours.schema[name])
        if name.startswith("revenue"):  # rounded sums: equal whatever the summation order
            assert a.to_list() == b.to_list(), name
        elif ours.schema[name] == pl.Float64:
            diff = (a - b).abs().fill_null(0.0)
            assert (a.is_null() == b.is_null()).all(), name
            assert diff.max() <= 1e-9 * max(1.0, a.abs().max() or 0.0), name
        else:
            assert a.to_list() == b.to_list(), name


def _duck(catalog) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.register("stg_events", read_table(catalog, "staging.stg_events"))
    con.register("dim_users", read_table(catalog, "marts.dim_users"))
    con.register("stg_user_versions", read_table(catalog, "staging.stg_user_versions"))
    return con


def test_user_features_agree_with_duckdb(random_upstream, catalog):
    result = materialize(
        [user_features],
        resources={"iceberg": IcebergCatalogResource()},
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    ours = pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id")
    as_of = ours.get_column("as_of_date")[0]
    assert as_of == dt.date(2026, 1, 25)
    theirs = pl.from_arrow(_duck(catalog).execute(FEATURES_SQL, {"d": as_of}).to_arrow_table())
    _assert_same(ours, theirs)


def test_user_features_as_of_a_past_day_agree_with_duckdb(random_upstream, catalog):
    """Issue 12 item 11: as of a past day, plan and country are the versions valid then."""
    as_of = dt.date(2026, 1, 10)
    result = materialize(
        [user_features],
        resources={"iceberg": IcebergCatalogResource()},
        instance=DagsterInstance.ephemeral(),
        run_config={"ops": {"ml__user_features": {"config": {"as_of_date": as_of.isoformat()}}}},
    )
    assert result.success
    ours = pl.from_arrow(read_table(catalog, "ml.user_features")).sort("user_id")
    theirs = pl.from_arrow(_duck(catalog).execute(FEATURES_SQL, {"d": as_of}).to_arrow_table())
    _assert_same(ours, theirs)
    # The data has versions that became valid after the as-of day: none of them shows.
    today = pl.from_arrow(read_table(catalog, "marts.dim_users")).select("user_id", "plan")
    changed = ours.join(today, on="user_id", suffix="_now").filter(
        pl.col("plan") != pl.col("plan_now")
    )
    assert changed.height > 0


def test_daily_metrics_agree_with_duckdb(random_upstream, catalog):
    result = materialize(
        [daily_metrics],
        resources={"iceberg": IcebergCatalogResource()},
        instance=DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-25",
        },
    )
    assert result.success
    ours = pl.from_arrow(read_table(catalog, "analytics.daily_metrics")).sort("metric_date")
    theirs = pl.from_arrow(
        _duck(catalog)
        .execute(METRICS_SQL, {"s": dt.date(2026, 1, 1), "t": dt.date(2026, 1, 26)})
        .to_arrow_table()
    )
    _assert_same(ours, theirs)
