"""A small hand-made raw dataset (raw.users, raw.events) with known answers.

Written with shared.iceberg.write_table, as the ingestion location would write it (the tests
never import another location). Every tricky case the staging layer must handle is here:

* user 1 has two versions (plan free -> pro); the latest by updated_at wins;
* user 2 was delivered twice with the same updated_at; the later extraction wins;
* user 3 has no events; user 4 exists only in events (a late-arriving user);
* event e2 is delivered twice (at-least-once); e5 arrives late (extracted two days after it
  happened, in a later sync) and must land on its own day;
* events sit on 2026-01-01, 2026-01-02 and 2026-01-03 (UTC; e4 is 23:30 UTC, still Jan 2).
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

UTC = dt.UTC


def ts(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=UTC)


USERS_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("email", pa.string()),
        ("name", pa.string()),
        ("country", pa.string()),
        ("plan", pa.string()),
        ("signup_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("_airbyte_raw_id", pa.string()),
        ("_airbyte_extracted_at", pa.timestamp("us", tz="UTC")),
        ("_airbyte_meta", pa.string()),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int64()),
        ("event_type", pa.string()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("amount", pa.float64()),
        ("_airbyte_raw_id", pa.string()),
        ("_airbyte_extracted_at", pa.timestamp("us", tz="UTC")),
        ("_airbyte_meta", pa.string()),
    ]
)

#: (id, email, name, country, plan, signup_at, updated_at, raw_id, extracted_at)
USERS = [
    (1, "ann@example.com", "Ann", "FR", "free", ts(1), ts(1), "u-1a", ts(1, 6)),
    (1, "ann@example.com", "Ann", "FR", "pro", ts(1), ts(2, 12), "u-1b", ts(3, 6)),
    (2, "bob@old.example", "Bob", "DE", "free", ts(1), ts(1, 1), "u-2a", ts(1, 6)),
    (2, "bob@example.com", "Bob", "DE", "enterprise", ts(1), ts(1, 1), "u-2b", ts(2, 6)),
    (3, "cy@example.com", "Cy", "US", "free", ts(2), ts(2), "u-3", ts(2, 6)),
]

#: (event_id, user_id, event_type, event_ts, amount, raw_id, extracted_at)
EVENTS_SYNC_1 = [
    ("e1", 1, "page_view", ts(1, 9), None, "r1", ts(2, 1)),
    ("e2", 1, "purchase", ts(1, 10), 20.0, "r2", ts(2, 1)),
    ("e2", 1, "purchase", ts(1, 10), 20.0, "r2b", ts(2, 2)),  # duplicate delivery
    ("e3", 2, "click", ts(1, 11), None, "r3", ts(2, 1)),
    ("e4", 2, "purchase", ts(2, 23, 30), 5.5, "r4", ts(3, 1)),
    ("e6", 4, "add_to_cart", ts(3, 8), None, "r6", ts(4, 1)),
]
#: A later sync: e5 happened on Jan 2 but arrives late; e2 is delivered a third time; e7 is a
#: purchase whose amount is unknown (null).
EVENTS_SYNC_2 = [
    ("e5", 1, "purchase", ts(2, 8), 7.25, "r5", ts(5, 1)),
    ("e7", 2, "purchase", ts(3, 9), None, "r7", ts(5, 1)),
    ("e2", 1, "purchase", ts(1, 10), 20.0, "r2c", ts(5, 1)),
]


def users_table() -> pa.Table:
    rows = [(*u, "{}") for u in USERS]
    return pa.Table.from_pylist(
        [dict(zip(USERS_SCHEMA.names, r, strict=True)) for r in rows], schema=USERS_SCHEMA
    )


def events_table(rows: list[tuple]) -> pa.Table:
    full = [(*r, "{}") for r in rows]
    return pa.Table.from_pylist(
        [dict(zip(EVENTS_SCHEMA.names, r, strict=True)) for r in full], schema=EVENTS_SCHEMA
    )


def write_raw(catalog, *, events: list[tuple] | None = None, users: bool = True) -> None:
    """Write raw.users (full) and append ``events`` (default: the first sync) to raw.events."""
    from shared.iceberg import write_table

    if users:
        write_table(catalog, "raw.users", users_table(), mode="overwrite")
    write_table(
        catalog,
        "raw.events",
        events_table(EVENTS_SYNC_1 if events is None else events),
        mode="append",
    )
