"""Unit tests of the daily metric definitions on tiny hand-made frames, with exact values."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics.metrics import METRIC_SCHEMA, daily_metrics, days_in

D = dt.date
UTC = dt.UTC

EVENTS = pl.LazyFrame(
    [
        ("a", 1, "page_view", D(2026, 1, 1), None),
        ("a", 1, "page_view", D(2026, 1, 1), None),  # duplicate: once
        ("b", 1, "purchase", D(2026, 1, 1), 10.0),
        ("c", 2, "purchase", D(2026, 1, 1), 2.5),
        ("d", 2, "purchase", D(2026, 1, 1), None),  # purchase without amount
        ("e", None, "click", D(2026, 1, 1), None),  # no user: no event (staging's contract)
        ("f", 3, "add_to_cart", D(2026, 1, 2), None),
        ("g", 3, "click", D(2026, 1, 2), None),
        ("h", 4, "click", D(2026, 1, 5), None),  # outside the window
        ("i", 4, "page_view", D(2025, 12, 31), None),  # outside the window
    ],
    schema={
        "event_id": pl.String,
        "user_id": pl.Int64,
        "event_type": pl.String,
        "event_date": pl.Date,
        "amount": pl.Float64,
    },
    orient="row",
)
USERS = pl.LazyFrame(
    [
        (1, dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
        (2, dt.datetime(2026, 1, 3, 23, 59, tzinfo=UTC)),  # signup-only day
        (3, dt.datetime(2025, 12, 20, tzinfo=UTC)),
        (4, dt.datetime(2026, 1, 4, 0, 0, tzinfo=UTC)),  # end of window is exclusive
    ],
    schema={"user_id": pl.Int64, "signup_at": pl.Datetime("us", "UTC")},
    orient="row",
)
START, END = D(2026, 1, 1), D(2026, 1, 4)


def test_exact_values():
    out = daily_metrics(EVENTS, USERS, START, END).collect()
    assert out.columns == list(METRIC_SCHEMA)
    assert out.to_dicts() == [
        {
            "metric_date": D(2026, 1, 1),
            "active_users": 2,
            "events_total": 4,
            "page_views": 1,
            "clicks": 0,
            "add_to_carts": 0,
            "purchases": 3,
            "purchasers": 2,
            "revenue": 12.5,
            "signups": 1,
            "conversion_rate": 1.0,
            # d has no amount: a purchase, but not in the average (unknown, not zero).
            "avg_order_value": 12.5 / 2,
        },
        {
            "metric_date": D(2026, 1, 2),
            "active_users": 1,
            "events_total": 2,
            "page_views": 0,
            "clicks": 1,
            "add_to_carts": 1,
            "purchases": 0,
            "purchasers": 0,
            "revenue": 0.0,
            "signups": 0,
            "conversion_rate": 0.0,
            "avg_order_value": None,
        },
        {
            "metric_date": D(2026, 1, 3),
            "active_users": 0,
            "events_total": 0,
            "page_views": 0,
            "clicks": 0,
            "add_to_carts": 0,
            "purchases": 0,
            "purchasers": 0,
            "revenue": 0.0,
            "signups": 1,
            "conversion_rate": None,
            "avg_order_value": None,
        },
    ]


def test_days_computed_alone_equal_days_computed_in_a_range():
    whole = daily_metrics(EVENTS, USERS, START, END).collect()
    alone = pl.concat(
        [
            daily_metrics(EVENTS, USERS, d, d + dt.timedelta(days=1)).collect()
            for d in days_in(START, END)
        ]
    )
    assert alone.equals(whole)


def test_empty_window_rejected_and_empty_input_gives_no_rows():
    with pytest.raises(ValueError, match="empty window"):
        daily_metrics(EVENTS, USERS, START, START)
    out = daily_metrics(EVENTS.head(0), USERS.head(0), START, END).collect()
    assert out.height == 0 and out.columns == list(METRIC_SCHEMA)


def test_days_in():
    assert days_in(D(2026, 1, 30), D(2026, 2, 2)) == [D(2026, 1, 30), D(2026, 1, 31), D(2026, 2, 1)]


def test_event_day_is_the_utc_date_of_event_ts():
    """An upstream event_date computed in another time zone does not move events across days."""
    events = pl.LazyFrame(
        {
            "event_id": ["late", "early"],
            "user_id": [1, 2],
            "event_type": ["click", "click"],
            # 23:30 UTC on Jan 1 and 00:30 UTC on Jan 2, with event_date as UTC-5 / UTC+1 see them
            "event_ts": [
                dt.datetime(2026, 1, 1, 23, 30, tzinfo=UTC),
                dt.datetime(2026, 1, 2, 0, 30, tzinfo=UTC),
            ],
            "event_date": [D(2026, 1, 1), D(2026, 1, 1)],
            "amount": [None, None],
        },
        schema_overrides={"amount": pl.Float64},
    )
    out = daily_metrics(events, USERS.head(0), START, END).collect()
    assert out.select("metric_date", "events_total").rows() == [
        (D(2026, 1, 1), 1),
        (D(2026, 1, 2), 1),
    ]
