"""Reads project and filter at the scan, accept the upstream's column names, and fail clearly."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest

from analytics.io import day_range_filter, read_upstream
from analytics.sources import DIM_USERS, FCT_DAILY_EVENTS, STG_EVENTS
from shared.iceberg import IcebergError, write_table
from shared.resources import IcebergCatalogResource

D = dt.date


def test_day_range_filter_literals_follow_the_column_type():
    days = pl.DataFrame({"d": [D(2026, 1, 1), D(2026, 1, 2)]})
    assert days.filter(day_range_filter("d", D(2026, 1, 1), D(2026, 1, 2))).height == 1
    utc = [dt.datetime(2026, 1, 1, 0, tzinfo=dt.UTC), dt.datetime(2025, 12, 31, 23, tzinfo=dt.UTC)]
    tz = pl.DataFrame({"t": utc}, schema={"t": pl.Datetime("us", "UTC")})
    kept = tz.filter(day_range_filter("t", D(2026, 1, 1), None, pl.Datetime("us", "UTC")))
    assert kept.get_column("t").to_list() == utc[:1]
    naive = pl.DataFrame({"t": [dt.datetime(2026, 1, 1, 23), dt.datetime(2026, 1, 2)]})
    kept = naive.filter(day_range_filter("t", None, D(2026, 1, 2), pl.Datetime("us")))
    assert kept.height == 1
    with pytest.raises(ValueError):
        day_range_filter("d", None, None)


def test_window_read_returns_only_the_window(write_upstream, sample):
    events, users = sample
    write_upstream(events, users)
    read = read_upstream(
        IcebergCatalogResource(),
        STG_EVENTS,
        window_column="event_date",
        start=D(2026, 1, 2),
        end=D(2026, 1, 3),
    )
    frame = read.frame.collect()
    assert frame.columns == list(STG_EVENTS.names)
    assert set(frame.get_column("event_date").to_list()) == {D(2026, 1, 2)}
    assert read.rows == 3 and "event_date" in read.row_filter


def test_aliases_map_dbt_names_to_analytics_names(write_upstream, sample):
    events, users = sample
    write_upstream(events, users)
    read = read_upstream(
        IcebergCatalogResource(),
        DIM_USERS,
        window_column="signup_at",
        start=D(2026, 1, 2),
        end=D(2026, 1, 5),
    )
    assert read.columns == ("user_id", "country", "plan", "signed_up_at")
    assert read.frame.collect().columns == ["user_id", "country", "plan", "signup_at"]
    assert sorted(read.frame.collect().get_column("user_id").to_list()) == [2, 3]


def test_the_lead_contract_names_are_accepted_too(catalog):
    write_table(
        catalog,
        "marts.fct_daily_events",
        pa.table(
            {
                "event_date": [D(2026, 1, 1)],
                "event_type": ["click"],
                "events": [3],
                "revenue": [0.0],
            }
        ),
    )
    frame = read_upstream(IcebergCatalogResource(), FCT_DAILY_EVENTS).frame.collect()
    assert frame.rows() == [(D(2026, 1, 1), 3, 0.0)]


def test_missing_column_and_missing_table_are_named(catalog):
    write_table(catalog, "marts.dim_users", pa.table({"user_id": [1], "country": ["FR"]}))
    with pytest.raises(
        IcebergError, match=r"marts.dim_users lacks column.*plan.*signup_at or signed_up_at"
    ):
        read_upstream(IcebergCatalogResource(), DIM_USERS)
    with pytest.raises(IcebergError, match="staging.stg_events"):
        read_upstream(IcebergCatalogResource(), STG_EVENTS)
