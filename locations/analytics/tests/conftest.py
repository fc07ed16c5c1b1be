"""Fixtures: a throwaway local lakehouse (SQLite catalog + warehouse in tmp_path) with hand-made
upstream tables shaped like the dbt models (no dbt needed)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from types import SimpleNamespace

import pyarrow as pa
import pytest

from shared.iceberg import open_catalog, write_table
from shared.settings import load_settings

UTC = dt.UTC

STG_EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int64()),
        ("event_type", pa.string()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.date32()),
        ("amount", pa.float64()),
    ]
)
# Column names as the dbt models in dbt/models write them (marts.dim_users: signed_up_at;
# marts.fct_daily_events: grain (event_date, user_id, event_type) with event_count).
DIM_USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("email", pa.string()),
        ("full_name", pa.string()),
        ("country", pa.string()),
        ("plan", pa.string()),
        ("signed_up_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("event_count", pa.int64()),
        ("purchase_count", pa.int64()),
        ("priced_purchase_count", pa.int64()),
        ("total_revenue", pa.float64()),
        ("first_event_at", pa.timestamp("us", tz="UTC")),
        ("last_event_at", pa.timestamp("us", tz="UTC")),
    ]
)
STG_USER_VERSIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("country", pa.string()),
        ("plan", pa.string()),
        ("valid_from", pa.timestamp("us", tz="UTC")),
    ]
)
FCT_SCHEMA = pa.schema(
    [
        ("event_date", pa.date32()),
        ("user_id", pa.int64()),
        ("event_type", pa.string()),
        ("event_count", pa.int64()),
        ("revenue", pa.float64()),
    ]
)


def event(event_id, user_id, event_type, ts: dt.datetime, amount=None) -> dict:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "event_type": event_type,
        "event_ts": ts,
        "event_date": ts.astimezone(UTC).date(),
        "amount": amount,
    }


def version(user_id, valid_from: dt.datetime, country="FR", plan="free") -> dict:
    """A row of staging.stg_user_versions: the user's attributes from ``valid_from`` on."""
    return {"user_id": user_id, "country": country, "plan": plan, "valid_from": valid_from}


def user(user_id, signup_at: dt.datetime, country="FR", plan="free") -> dict:
    return {
        "user_id": user_id,
        "email": f"user{user_id}@example.com",
        "country": country,
        "plan": plan,
        "full_name": f"User {user_id}",
        "signed_up_at": signup_at,
        "updated_at": signup_at,
    }


def fct_rows(events: list[dict]) -> list[dict]:
    """What the dbt mart holds for these events: per (day, user, type), distinct events and
    revenue."""
    seen, groups = set(), defaultdict(lambda: [0, 0.0])
    for e in events:
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        g = groups[(e["event_date"], e["user_id"], e["event_type"])]
        g[0] += 1
        g[1] += e["amount"] or 0.0
    return [
        {"event_date": d, "user_id": u, "event_type": t, "event_count": n, "revenue": r}
        for (d, u, t), (n, r) in sorted(groups.items(), key=lambda kv: str(kv[0]))
    ]


def with_activity(users: list[dict], events: list[dict]) -> list[dict]:
    """dim_users rows with the mart's activity totals over the (deduplicated) events, as
    dbt/models/marts/dim_users.sql computes them (revenue of purchases rounded to 6 decimals)."""
    seen, totals = set(), {}
    for e in events:
        if e["event_id"] in seen or e["event_id"] is None or e["user_id"] is None:
            continue
        seen.add(e["event_id"])
        t = totals.setdefault(e["user_id"], [0, 0, 0, 0.0, e["event_ts"], e["event_ts"]])
        purchase = e["event_type"] == "purchase"
        t[0] += 1
        t[1] += purchase
        t[2] += purchase and e["amount"] is not None
        t[3] += (e["amount"] or 0.0) if purchase else 0.0
        t[4], t[5] = min(t[4], e["event_ts"]), max(t[5], e["event_ts"])
    out = []
    for u in users:
        n, p, priced, r, first, last = totals.get(u["user_id"], (0, 0, 0, 0.0, None, None))
        out.append(
            {
                **u,
                "event_count": n,
                "purchase_count": p,
                "priced_purchase_count": priced,
                "total_revenue": round(r, 6),
                "first_event_at": first,
                "last_event_at": last,
            }
        )
    return out


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DATA_PLATFORM_HOME in local mode."""
    monkeypatch.setenv("DATA_PLATFORM_ENV", "local")
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def catalog(home):
    return open_catalog(load_settings())


@pytest.fixture
def write_upstream(catalog):
    """Write hand-made stg_events / dim_users / stg_user_versions / fct_daily_events tables (fct
    derived from events unless given; versions: each user's dim_users row, valid from its
    updated_at, unless given)."""

    def _write(
        events: list[dict],
        users: list[dict],
        fct: list[dict] | None = None,
        versions: list[dict] | None = None,
    ) -> None:
        write_table(
            catalog,
            "staging.stg_events",
            pa.Table.from_pylist(events, schema=STG_EVENTS_SCHEMA),
            partition_by_day="event_date",
        )
        dim = with_activity(users, events) if "event_count" not in users[0] else users
        write_table(catalog, "marts.dim_users", pa.Table.from_pylist(dim, schema=DIM_USERS_SCHEMA))
        if versions is None:
            versions = [
                version(u["user_id"], u["updated_at"], u["country"], u["plan"]) for u in users
            ]
        write_table(
            catalog,
            "staging.stg_user_versions",
            pa.Table.from_pylist(versions, schema=STG_USER_VERSIONS_SCHEMA),
        )
        write_table(
            catalog,
            "marts.fct_daily_events",
            pa.Table.from_pylist(fct_rows(events) if fct is None else fct, schema=FCT_SCHEMA),
            partition_by_day="event_date",
        )

    return _write


def ts(day: int, hour: int = 12, month: int = 1) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
def make():
    """Row builders for tests (conftest is not importable under --import-mode=importlib)."""
    return SimpleNamespace(
        event=event,
        user=user,
        version=version,
        ts=ts,
        fct_rows=fct_rows,
        with_activity=with_activity,
        dim_users_schema=DIM_USERS_SCHEMA,
        stg_events_schema=STG_EVENTS_SCHEMA,
    )


@pytest.fixture
def sample():
    """A small, hand-checkable dataset over 2026-01-01..2026-01-04 (see test_assets)."""
    users = [user(1, ts(1, 8)), user(2, ts(2, 9), "DE", "pro"), user(3, ts(4, 23), "US")]
    events = [
        event("e1", 1, "page_view", ts(1, 10)),
        event("e1", 1, "page_view", ts(1, 10)),  # at-least-once duplicate (deduplicated)
        event("e2", 1, "purchase", ts(1, 11), 20.0),
        event("e3", 2, "click", ts(2, 0)),
        event("e4", 2, "add_to_cart", ts(2, 23)),
        event("e5", 2, "purchase", ts(2, 23), 12.5),
        event("e6", 1, "click", ts(3, 5)),
        event("e7", 2, "purchase", ts(3, 6), 7.5),
    ]
    return events, users
