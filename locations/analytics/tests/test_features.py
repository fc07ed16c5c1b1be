"""Unit tests of the feature definitions on tiny hand-made frames, with exact expected values."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pyarrow as pa
import pytest

from analytics.features import (
    FEATURE_SCHEMA,
    latest_event_date,
    totals_cover,
    totals_from_dim_users,
    totals_latest_day,
    user_features,
    window_start,
)

D = dt.date
UTC = dt.UTC
AS_OF = D(2026, 1, 31)


def _events(rows):
    return pl.LazyFrame(
        rows,
        schema={
            "event_id": pl.String,
            "user_id": pl.Int64,
            "event_type": pl.String,
            "event_date": pl.Date,
            "amount": pl.Float64,
        },
        orient="row",
    )


def _users(rows):
    return pl.LazyFrame(
        rows,
        schema={
            "user_id": pl.Int64,
            "country": pl.String,
            "plan": pl.String,
            "signup_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )


USERS = _users(
    [
        (1, "FR", "free", dt.datetime(2025, 12, 31, 23, 30, tzinfo=UTC)),  # tenure 31
        (2, "DE", "pro", dt.datetime(2026, 1, 31, 0, 0, tzinfo=UTC)),  # signed up on D
        (3, "US", "free", dt.datetime(2026, 1, 10, tzinfo=UTC)),  # no events
        (4, "US", "free", dt.datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),  # after D: excluded
    ]
)
EVENTS = _events(
    [
        ("a", 1, "page_view", D(2025, 12, 31), None),  # outside 30d (D-31)
        ("b", 1, "page_view", D(2026, 1, 2), None),  # D-29: first day of 30d
        ("b", 1, "page_view", D(2026, 1, 2), None),  # duplicate event_id: counted once
        ("c", 1, "click", D(2026, 1, 24), None),  # D-7: outside 7d
        ("d", 1, "add_to_cart", D(2026, 1, 25), None),  # D-6: first day of 7d
        ("e", 1, "purchase", D(2026, 1, 25), 30.0),
        ("f", 1, "purchase", D(2025, 12, 31), 10.0),  # purchase outside 30d
        ("g", 1, "click", D(2026, 2, 1), None),  # after D: ignored
        ("h", 2, "click", D(2026, 1, 31), None),
        ("i", None, "click", D(2026, 1, 31), None),  # no user: ignored
        ("j", 99, "purchase", D(2026, 1, 31), 5.0),  # unknown user: ignored
    ]
)


def _features(as_of=AS_OF):
    return {r["user_id"]: r for r in user_features(USERS, EVENTS, as_of).collect().to_dicts()}


def test_population_and_schema():
    out = user_features(USERS, EVENTS, AS_OF).collect()
    assert out.columns == list(FEATURE_SCHEMA)
    assert out.get_column("user_id").to_list() == [1, 2, 3]  # sorted; user 4 after D


def test_user_with_history_exact_values():
    u = _features()[1]
    assert u == {
        "user_id": 1,
        "as_of_date": AS_OF,
        "country": "FR",
        "plan": "free",
        "signup_date": D(2025, 12, 31),
        "tenure_days": 31,
        "first_event_date": D(2025, 12, 31),
        "last_event_date": D(2026, 1, 25),
        "days_since_first_event": 31,
        "days_since_last_event": 6,
        "events_total": 6,  # a b c d e f (b deduplicated, g after D)
        "events_7d": 2,  # d e
        "events_30d": 4,  # b c d e
        "active_days_7d": 1,
        "active_days_30d": 3,
        "page_views_30d": 1,
        "clicks_30d": 1,
        "add_to_carts_30d": 1,
        "purchases_30d": 1,
        "purchases_total": 2,
        "revenue_30d": 30.0,
        "revenue_total": 40.0,
        "avg_order_value": 20.0,
        "is_active_7d": True,
        "is_active_30d": True,
        "has_purchased": True,
        "purchased_30d": True,
    }


def test_user_signed_up_on_as_of_day():
    u = _features()[2]
    assert (u["tenure_days"], u["events_total"], u["events_7d"], u["days_since_last_event"]) == (
        0,
        1,
        1,
        0,
    )
    assert (u["has_purchased"], u["avg_order_value"], u["revenue_total"]) == (False, None, 0.0)


def test_user_without_events_gets_zeros_and_null_dates():
    u = _features()[3]
    assert u["tenure_days"] == 21
    assert all(u[c] == 0 for c in ("events_total", "events_7d", "events_30d", "purchases_total"))
    assert (u["revenue_total"], u["revenue_30d"]) == (0.0, 0.0)
    assert (u["first_event_date"], u["last_event_date"], u["days_since_last_event"]) == (
        None,
        None,
        None,
    )
    assert (u["is_active_30d"], u["has_purchased"], u["avg_order_value"]) == (False, False, None)


def test_earlier_as_of_date_moves_windows():
    u = _features(D(2026, 1, 2))[1]
    assert (u["events_total"], u["events_7d"], u["events_30d"], u["active_days_7d"]) == (3, 3, 3, 2)
    assert (u["tenure_days"], u["revenue_total"], u["revenue_30d"]) == (2, 10.0, 10.0)
    assert 2 not in _features(D(2026, 1, 2))  # signed up later


def test_naive_signup_timestamp_is_taken_as_utc():
    users = USERS.with_columns(pl.col("signup_at").dt.replace_time_zone(None))
    out = user_features(users, EVENTS, AS_OF).collect()
    assert out.get_column("tenure_days").to_list() == [31, 0, 21]


def test_latest_event_date():
    assert latest_event_date(EVENTS) == D(2026, 2, 1)
    assert latest_event_date(EVENTS.head(0)) is None


def test_rejects_non_temporal_signup():
    with pytest.raises(TypeError, match="signup_at"):
        user_features(USERS.with_columns(signup_at=pl.lit("x")), EVENTS, AS_OF)


def test_plan_and_country_are_those_of_the_version_valid_at_the_as_of_day():
    """Issue 12 item 11: no future leaks into past features: each user's attributes are the
    version valid at the end of D (UTC), null when the first version we know came later."""
    versions = pl.LazyFrame(
        [
            (1, "FR", "free", dt.datetime(2025, 12, 31, 23, 30, tzinfo=UTC)),
            (1, "DE", "pro", dt.datetime(2026, 1, 20, 10, 0, tzinfo=UTC)),
            (1, "US", "enterprise", dt.datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),  # after D
            (2, "DE", "pro", dt.datetime(2026, 1, 31, 23, 59, tzinfo=UTC)),  # on D: valid
            (3, "US", "pro", dt.datetime(2026, 2, 3, tzinfo=UTC)),  # only a later version
        ],
        schema={
            "user_id": pl.Int64,
            "country": pl.String,
            "plan": pl.String,
            "valid_from": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )

    def attributes(as_of):
        out = user_features(USERS, EVENTS, as_of, versions).collect()
        return {r["user_id"]: (r["country"], r["plan"]) for r in out.to_dicts()}

    assert attributes(AS_OF) == {1: ("DE", "pro"), 2: ("DE", "pro"), 3: (None, None)}
    assert attributes(D(2026, 1, 19))[1] == ("FR", "free")
    assert attributes(D(2026, 1, 20))[1] == ("DE", "pro")


# --- The two paths: all-time totals from every event, or from marts.dim_users -----------------


def _history(make, days=120, seed=11):
    """Users and events over ``days`` days from 2026-01-01: users without events, users who
    sign up late (after many as-of days), purchases without an amount, duplicated event_ids,
    events without a user or of an unknown user, events near midnight, and late events (events
    of old days, listed last as a late sync would deliver them)."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    users = [
        make.user(uid, start + dt.timedelta(minutes=rng.randrange((days + 10) * 1440)))
        for uid in range(1, 41)
    ]
    users.append(make.user(41, start))  # never has an event
    events = []
    for i in range(3000):
        ts = start + dt.timedelta(minutes=rng.randrange(days * 1440))
        etype = rng.choice(["page_view", "click", "add_to_cart", "purchase"])
        amount = round(rng.uniform(1, 300), 2) if etype == "purchase" else None
        if etype == "purchase" and rng.random() < 0.1:
            amount = None  # a purchase whose amount is unknown
        uid = rng.choice([*range(1, 41), None, 999])
        events.append(make.event(f"e{i}", uid, etype, ts, amount))
    events += rng.sample(events, 200)  # at-least-once duplicates
    late_day = start + dt.timedelta(days=days - 100, hours=23, minutes=59)
    events += [make.event(f"late{i}", i % 40 + 1, "purchase", late_day, 9.99) for i in range(20)]
    return users, events


def _frame(rows, schema) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schema))


@pytest.mark.parametrize("days_back", [0, 1, 6, 29, 30, 45, 90, 119])
def test_totals_from_dim_users_give_the_same_features_as_every_event(make, days_back):
    """Issue 11: features as of D from the 30-day window + dim_users' totals (as the mart stood
    on D: built from the events up to D) equal the features from every event up to D, row for
    row, for D from the latest day back to the first days of the history."""
    users, events = _history(make)
    latest = max(e["event_date"] for e in events)
    as_of = latest - dt.timedelta(days=days_back)
    upto = [e for e in events if e["event_date"] <= as_of]
    dim = _frame(make.with_activity(users, upto), make.dim_users_schema)
    population = dim.lazy().rename({"signed_up_at": "signup_at"})
    totals = totals_from_dim_users(dim.lazy().rename({"total_revenue": "revenue"}))
    assert totals_latest_day(totals) <= as_of
    window = [e for e in upto if e["event_date"] >= window_start(as_of)]
    assert len(window) < len(upto) or days_back >= 90  # the window path reads fewer events

    every_event = _frame(events, make.stg_events_schema).lazy()
    window_only = _frame(window, make.stg_events_schema).lazy()
    full = user_features(population, every_event, as_of).collect()
    fast = user_features(population, window_only, as_of, totals=totals).collect()
    assert fast.equals(full)
    # What the data must exercise, so the equality means something.
    assert full.filter(pl.col("events_total") == 0).height > 0  # users without events
    if days_back <= 90:
        assert any(e["event_type"] == "purchase" and e["amount"] is None for e in upto)
    assert full.height < len(users) or days_back == 0  # users signed up after D left out
    if days_back <= 30:
        assert full.filter(pl.col("events_total") > pl.col("events_30d")).height > 0


def test_totals_cover_only_an_up_to_date_mart_without_later_events():
    d = D(2026, 3, 1)
    assert totals_cover(d, d, up_to_date=True)
    assert totals_cover(d, None, up_to_date=True)  # no events at all
    assert totals_cover(d + dt.timedelta(days=3), d, up_to_date=True)
    assert not totals_cover(d - dt.timedelta(days=1), d, up_to_date=True)  # a past day
    assert not totals_cover(d, d, up_to_date=False)  # mart older than the events
