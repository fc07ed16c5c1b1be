"""Reads through polars' own Iceberg reader (``pl.scan_iceberg``).

Every test compares with pyiceberg's own Arrow read of the same table, projection and filter, so
"same results" is checked against Iceberg's semantics, not against hand-written expectations.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest
from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThan

from analytics.io import read_upstream
from analytics.sources import DIM_USERS, STG_EVENTS
from shared.iceberg import write_table
from shared.resources import IcebergCatalogResource

D = dt.date
UTC = dt.UTC


def _events(make, days: range, per_day: int = 5) -> list[dict]:
    rows = []
    for day in days:
        for i in range(per_day):
            # Hours 0 and 23 put events on the window's edges.
            hour = (0, 23, 6, 12, 18)[i % 5]
            amount = float(day * 10 + i) if i % 2 else None
            rows.append(make.event(f"e{day}-{i}", i % 3 or None, "purchase", make.ts(day, hour)))
            rows[-1]["amount"] = amount
    return rows


def _stg(catalog, make, rows: list[dict], mode: str = "append") -> None:
    """Append ``rows`` to staging.stg_events (the schema of the location's test tables)."""
    write_table(
        catalog,
        "staging.stg_events",
        pa.Table.from_pylist(rows, schema=make.stg_events_schema),
        mode=mode,
        partition_by_day="event_date",
    )


def _literal(column: str, day: D) -> str:
    return f"{day.isoformat()}T00:00:00+00:00" if column == "event_ts" else day.isoformat()


def _reference(catalog, identifier: str, columns, window: dict) -> pl.DataFrame:
    """pyiceberg's own read of the same projection and window (the pruning twin changes no row)."""
    column = window.get("window_column")
    parts = []
    if column and window.get("start"):
        parts.append(GreaterThanOrEqual(column, _literal(column, window["start"])))
    if column and window.get("end"):
        parts.append(LessThan(column, _literal(column, window["end"])))
    row_filter = AlwaysTrue() if not parts else parts[0] if len(parts) == 1 else And(*parts)
    scan = catalog.load_table(identifier).scan(row_filter=row_filter, selected_fields=columns)
    return pl.from_arrow(scan.to_arrow())


WINDOWS = [
    {},
    {"window_column": "event_ts", "start": D(2026, 1, 3), "end": D(2026, 1, 4)},
    {
        "window_column": "event_ts",
        "start": D(2026, 1, 2),
        "end": D(2026, 1, 5),
        "pruning_column": "event_date",
    },
    {"window_column": "event_ts", "end": D(2026, 1, 3), "pruning_column": "event_date"},
    {"window_column": "event_date", "start": D(2026, 1, 4)},
    {"window_column": "event_date", "start": D(2026, 3, 1)},  # nothing in the window
]


@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_reads_equal_pyiceberg(catalog, make, window):
    for day in range(1, 7):  # one commit per day: six data files, six manifests
        _stg(catalog, make, _events(make, range(day, day + 1)))
    null_ts = make.event("late", 1, "click", make.ts(6, 1))
    null_ts["event_ts"] = None  # a null never matches a window, on either side
    _stg(catalog, make, [null_ts])

    read = read_upstream(IcebergCatalogResource(), STG_EVENTS, **window)
    got = read.frame.collect()
    want = _reference(catalog, "staging.stg_events", read.columns, window)
    want = want.select(
        [pl.col(p).alias(n) for n, p in zip(STG_EVENTS.names, read.columns, strict=True)]
    )
    assert got.schema == want.schema
    assert got.sort("event_id").equals(want.sort("event_id"))
    assert read.rows == want.height
    assert (
        read.snapshot_id == catalog.load_table("staging.stg_events").current_snapshot().snapshot_id
    )
    assert read.reader == "polars.scan_iceberg"


def test_window_is_pushed_into_the_scan_and_prunes_files(catalog, make):
    for day in range(1, 4):
        _stg(catalog, make, _events(make, range(day, day + 1)))
    read = read_upstream(
        IcebergCatalogResource(),
        STG_EVENTS,
        window_column="event_ts",
        start=D(2026, 1, 2),
        end=D(2026, 1, 3),
        pruning_column="event_date",
    )
    plan = read.frame.explain()
    # Of three daily files, only day 2's is scanned (partition and statistics pruning), by
    # polars' native Parquet reader, with the window evaluated in the scan.
    scan = plan[plan.index("Parquet SCAN") :]
    assert scan.count(".parquet") == 1 and "event_date_day=2026-01-02" in scan
    assert "SELECTION" in scan and "event_ts" in scan.split("SELECTION", 1)[1]
    assert read.rows == 5


def test_column_added_later_reads_nulls_in_older_files(catalog):
    old = pa.table({"user_id": [1], "country": ["FR"], "plan": ["free"]})
    write_table(catalog, "marts.dim_users", old)
    new = pa.table(
        {
            "user_id": [2],
            "country": ["DE"],
            "plan": ["pro"],
            "signed_up_at": pa.array(
                [dt.datetime(2026, 1, 2, tzinfo=UTC)], pa.timestamp("us", "UTC")
            ),
        }
    )
    write_table(catalog, "marts.dim_users", new, mode="append")
    read = read_upstream(IcebergCatalogResource(), DIM_USERS)
    got = read.frame.collect().sort("user_id")
    want = _reference(catalog, "marts.dim_users", read.columns, {}).sort("user_id")
    assert got.get_column("signup_at").null_count() == 1
    assert got.rename(dict(zip(got.columns, want.columns, strict=True))).equals(want)


def test_renamed_column_reads_the_old_files_by_field_id(catalog):
    """Iceberg matches columns by field id: after a rename the old files still carry the old
    name, and polars' reader must still return their values."""
    ts = dt.datetime(2026, 1, 2, 5, tzinfo=UTC)
    users = pa.table(
        {
            "user_id": [1],
            "country": ["FR"],
            "plan": ["free"],
            "joined": pa.array([ts], pa.timestamp("us", "UTC")),
        }
    )
    write_table(catalog, "marts.dim_users", users)
    with catalog.load_table("marts.dim_users").update_schema() as update:
        update.rename_column("joined", "signed_up_at")
    read = read_upstream(IcebergCatalogResource(), DIM_USERS)
    assert read.frame.collect().get_column("signup_at").to_list() == [ts]


def test_every_type_reads_as_pyiceberg_reads_it(catalog):
    from analytics.sources import Column, Upstream
    from shared.keys import table_key

    naive = [dt.datetime(2026, 1, d, 12) for d in (1, 2, 3)]
    data = pa.table(
        {
            "b": pa.array([True, None, False]),
            "i": pa.array([1, 2, None], pa.int32()),
            "l": pa.array([1, None, 3], pa.int64()),
            "f": pa.array([1.5, None, 2.5], pa.float32()),
            "d": pa.array([1.5, 2.5, None], pa.float64()),
            "s": pa.array(["a", None, "c"]),
            "bin": pa.array([b"x", b"y", None]),
            "day": pa.array([D(2026, 1, 1), None, D(2026, 1, 3)], pa.date32()),
            "ts": pa.array(naive, pa.timestamp("us")),
            "tstz": pa.array([None, *naive[1:]], pa.timestamp("us", "UTC")),
        }
    )
    write_table(catalog, "marts.all_types", data)
    upstream = Upstream(
        key=table_key("marts", "all_types"), columns=tuple(Column(n) for n in data.column_names)
    )
    for window in ({}, {"window_column": "day", "start": D(2026, 1, 2)}):
        read = read_upstream(IcebergCatalogResource(), upstream, **window)
        got = read.frame.collect()
        want = _reference(catalog, "marts.all_types", read.columns, window)
        assert got.schema == want.schema
        assert got.sort("l", nulls_last=True).equals(want.sort("l", nulls_last=True))
        assert got.height > 0


def test_daily_commits_with_merged_manifests_read_the_same(catalog, make):
    """With manifest merging on, merged manifests hold EXISTING entries, which the scan must
    still return."""
    _stg(catalog, make, _events(make, range(1, 2)))
    table = catalog.load_table("staging.stg_events")
    with table.transaction() as tx:  # merge from 2 manifests on (default 100), to see it here
        tx.set_properties(
            **{"commit.manifest-merge.enabled": "true", "commit.manifest.min-count-to-merge": "2"}
        )
    for day in range(2, 6):  # one overwrite of its day per commit, as daily runs write
        write_table(
            catalog,
            "staging.stg_events",
            pa.Table.from_pylist(_events(make, range(day, day + 1)), schema=make.stg_events_schema),
            mode="overwrite",
            overwrite_filter=f"event_date = '{D(2026, 1, day)}'",
            partition_by_day="event_date",
        )
    table = catalog.load_table("staging.stg_events")
    assert len(table.current_snapshot().manifests(table.io)) == 1
    window = {"window_column": "event_ts", "start": D(2026, 1, 2), "pruning_column": "event_date"}
    read = read_upstream(IcebergCatalogResource(), STG_EVENTS, **window)
    want = _reference(catalog, "staging.stg_events", read.columns, window)
    assert (
        read.frame.collect()
        .sort("event_id")
        .equals(
            want.rename(dict(zip(read.columns, STG_EVENTS.names, strict=True))).sort("event_id")
        )
    )
    assert read.rows == 20
