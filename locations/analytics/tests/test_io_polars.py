"""The polars read path: pyiceberg plans (pruned), polars reads the planned files lazily.

Every test compares with pyiceberg's own Arrow read of the same scan (the path read_upstream
falls back to), so "same results" is checked against Iceberg's semantics, not hand-written.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest
from pyiceberg.expressions import (
    And,
    EqualTo,
    GreaterThan,
    In,
    IsNull,
    LessThanOrEqual,
    Not,
    NotEqualTo,
    NotIn,
    NotNull,
    Or,
    StartsWith,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import FileScanTask

from analytics import io
from analytics.io import polars_scan, read_upstream
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


_STG_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int64()),
        ("event_type", pa.string()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.date32()),
        ("amount", pa.float64()),
    ]
)


def _stg(catalog, rows: list[dict], mode: str = "append") -> None:
    write_table(
        catalog,
        "staging.stg_events",
        pa.Table.from_pylist(rows, schema=_STG_SCHEMA),
        mode=mode,
        partition_by_day="event_date",
    )


def _read_both(monkeypatch, upstream, **window):
    fast = read_upstream(IcebergCatalogResource(), upstream, **window)
    with monkeypatch.context() as m:
        m.setattr(io, "polars_scan", lambda *a, **k: (None, "forced by the test"))
        ref = read_upstream(IcebergCatalogResource(), upstream, **window)
    return fast, ref


@pytest.mark.parametrize(
    "window",
    [
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
    ],
)
def test_polars_path_equals_pyiceberg_and_prunes_files(catalog, make, monkeypatch, window):
    for day in range(1, 7):  # one commit per day: six data files, six manifests
        _stg(catalog, _events(make, range(day, day + 1)))
    null_ts = make.event("late", 1, "click", make.ts(6, 1))
    null_ts["event_ts"] = None  # a null never matches a window, on either path
    _stg(catalog, [null_ts])

    fast, ref = _read_both(monkeypatch, STG_EVENTS, **window)
    assert fast.reader == "polars" and ref.reader.startswith("pyiceberg")
    got, want = fast.frame.collect(), ref.frame.collect()
    assert got.schema == want.schema
    assert got.sort("event_id").equals(want.sort("event_id"))
    assert fast.rows == ref.rows == want.height > 0
    assert fast.snapshot_id == ref.snapshot_id
    if "pruning_column" in window:
        # Partition pruning still happens in the plan: fewer files than the table has.
        assert fast.data_files < 7


def test_filter_and_projection_are_pushed_into_the_parquet_scan(catalog, make):
    for day in range(1, 4):
        _stg(catalog, _events(make, range(day, day + 1)))
    read = read_upstream(
        IcebergCatalogResource(),
        STG_EVENTS,
        window_column="event_ts",
        start=D(2026, 1, 2),
        end=D(2026, 1, 3),
        pruning_column="event_date",
    )
    # Of three daily files, only day 2's is planned (partition and event_ts statistics).
    assert read.reader == "polars" and read.data_files == 1
    plan = read.frame.explain()
    scan = plan[plan.index("Parquet SCAN") :]
    # The filter is evaluated by the Parquet reader (row groups skipped by statistics), and
    # only the projected columns are read.
    assert "SELECTION" in scan and "event_ts" in scan.split("SELECTION", 1)[1]
    assert read.rows == 5


def test_column_added_later_reads_nulls_in_older_files(catalog, make, monkeypatch):
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
    fast, ref = _read_both(monkeypatch, DIM_USERS)
    assert fast.reader == "polars"
    got, want = fast.frame.collect().sort("user_id"), ref.frame.collect().sort("user_id")
    assert got.equals(want) and got.schema == want.schema
    assert got.get_column("signup_at").null_count() == 1
    assert fast.rows == 2


def test_renamed_column_falls_back_to_pyiceberg(catalog, monkeypatch):
    """Polars matches columns by name, Iceberg by field id: after a rename the old files still
    carry the old name, so the read must go through pyiceberg to get their values."""
    ts = dt.datetime(2026, 1, 2, 5, tzinfo=UTC)
    users = pa.table(
        {
            "user_id": [1],
            "country": ["FR"],
            "plan": ["free"],
            "joined": pa.array([ts], pa.timestamp("us", "UTC")),
        }
    )
    table = write_table(catalog, "marts.dim_users", users)
    assert table.row_count == 1
    with catalog.load_table("marts.dim_users").update_schema() as update:
        update.rename_column("joined", "signed_up_at")
    fast, ref = _read_both(monkeypatch, DIM_USERS)
    assert fast.reader.startswith("pyiceberg (column signed_up_at was joined")
    assert fast.frame.collect().get_column("signup_at").to_list() == [ts]
    assert fast.frame.collect().equals(ref.frame.collect())


def test_delete_files_and_remote_files_fall_back(catalog, make):
    _stg(catalog, _events(make, range(1, 3)))
    table = catalog.load_table("staging.stg_events")
    tasks = list(table.scan().plan_files())
    columns = ("event_id", "event_ts")
    assert polars_scan(table, columns, tasks, None)[1] == ""

    deletes = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=tasks[0].file.file_path + ".deletes.parquet",
        file_format=FileFormat.PARQUET,
        partition=tasks[0].file.partition,
        record_count=1,
        file_size_in_bytes=1,
    )
    with_deletes = [FileScanTask(tasks[0].file, delete_files={deletes}), *tasks[1:]]
    frame, why = polars_scan(table, columns, with_deletes, None)
    assert frame is None and "has delete files" in why

    remote = DataFile.from_args(
        content=DataFileContent.DATA,
        file_path="s3://bucket/warehouse/stg_events/data/x.parquet",
        file_format=FileFormat.PARQUET,
        partition=tasks[0].file.partition,
        record_count=1,
        file_size_in_bytes=1,
    )
    frame, why = polars_scan(table, columns, [FileScanTask(remote)], None)
    assert frame is None and "not on the local disk" in why


@pytest.mark.parametrize(
    "row_filter",
    [
        EqualTo("event_type", "click"),
        NotEqualTo("event_type", "click"),
        In("user_id", {1, 2}),
        NotIn("user_id", {1}),
        IsNull("amount"),
        NotNull("user_id"),
        Or(GreaterThan("amount", 20.0), LessThanOrEqual("event_date", "2026-01-01")),
        Not(And(EqualTo("event_type", "purchase"), NotNull("amount"))),
        GreaterThan("event_ts", "2026-01-02T06:00:00+00:00"),
    ],
    ids=str,
)
def test_predicate_translation_keeps_the_rows_pyiceberg_keeps(catalog, make, row_filter):
    rows = _events(make, range(1, 4))
    for i, r in enumerate(rows):
        r["event_type"] = ("click", "purchase", "page_view")[i % 3]
    _stg(catalog, rows)
    table = catalog.load_table("staging.stg_events")
    columns = ("event_id", "user_id", "event_type", "event_ts", "event_date", "amount")
    scan = table.scan(row_filter=row_filter, selected_fields=columns)
    frame, why = polars_scan(table, columns, list(scan.plan_files()), row_filter)
    assert why == "" and frame is not None
    want = pl.from_arrow(scan.to_arrow()).sort("event_id")
    got = frame.collect().sort("event_id")
    assert got.equals(want) and 0 < got.height < len(rows)


def test_untranslatable_filter_falls_back(catalog, make):
    _stg(catalog, _events(make, range(1, 2)))
    table = catalog.load_table("staging.stg_events")
    frame, why = polars_scan(table, ("event_id",), [], StartsWith("event_id", "e1"))
    assert frame is None and "not expressible" in why


def test_empty_plan_gives_an_empty_frame_with_the_same_schema(catalog, make, monkeypatch):
    _stg(catalog, _events(make, range(1, 2)))
    window = {"window_column": "event_date", "start": D(2026, 3, 1)}
    fast, ref = _read_both(monkeypatch, STG_EVENTS, **window)
    assert fast.reader == "polars" and fast.data_files == 0
    assert fast.frame.collect().equals(ref.frame.collect())
    assert fast.frame.collect().schema == ref.frame.collect().schema


def test_every_polars_safe_type_reads_as_pyiceberg_reads_it(catalog):
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
    table = catalog.load_table("marts.all_types")
    for row_filter in (None, GreaterThan("ts", "2026-01-01T12:00:00"), In("day", {"2026-01-03"})):
        scan = table.scan(**({"row_filter": row_filter} if row_filter is not None else {}))
        frame, why = polars_scan(
            table, tuple(data.column_names), list(scan.plan_files()), row_filter
        )
        assert why == "" and frame is not None
        want = pl.from_arrow(scan.to_arrow())
        got = frame.collect()
        assert got.schema == want.schema
        assert got.sort("ts").equals(want.sort("ts")) and got.height > 0


def test_daily_commits_with_merged_manifests_read_the_same(catalog, make, monkeypatch):
    """With manifest merging on (considered for daily writers, docs/benchmarks.md), merged
    manifests hold EXISTING entries, which planning must still return, on both paths."""
    _stg(catalog, _events(make, range(1, 2)))
    table = catalog.load_table("staging.stg_events")
    with table.transaction() as tx:  # merge from 2 manifests on (default 100), to see it here
        tx.set_properties(
            **{"commit.manifest-merge.enabled": "true", "commit.manifest.min-count-to-merge": "2"}
        )
    for day in range(2, 6):  # one overwrite of its day per commit, as daily runs write
        write_table(
            catalog,
            "staging.stg_events",
            pa.Table.from_pylist(_events(make, range(day, day + 1)), schema=_STG_SCHEMA),
            mode="overwrite",
            overwrite_filter=f"event_date = '{D(2026, 1, day)}'",
            partition_by_day="event_date",
        )
    table = catalog.load_table("staging.stg_events")
    assert len(table.current_snapshot().manifests(table.io)) == 1
    window = {"window_column": "event_ts", "start": D(2026, 1, 2), "pruning_column": "event_date"}
    fast, ref = _read_both(monkeypatch, STG_EVENTS, **window)
    assert fast.reader == "polars" and fast.data_files == 4
    assert fast.frame.collect().sort("event_id").equals(ref.frame.collect().sort("event_id"))
    assert fast.rows == 20
