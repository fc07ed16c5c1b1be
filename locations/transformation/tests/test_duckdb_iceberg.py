"""The dbt-duckdb Iceberg plugin's write path, without dbt."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.types import StringType

from shared.iceberg import read_table
from transformation import duckdb_iceberg
from transformation.duckdb_iceberg import (
    IcebergStoreError,
    Plugin,
    day_chunks,
    local_path,
    scan_sql,
    settings_for,
    store_batch,
)


def batch(tmp_path, days: list[int], value: int):
    path = tmp_path / f"batch-{value}.parquet"
    table = pa.table(
        {
            "event_date": pa.array([dt.date(2026, 1, d) for d in days], pa.date32()),
            "n": pa.array([value] * len(days), pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


def rows(catalog):
    t = read_table(catalog, "staging.t").sort_by("event_date")
    return list(zip(t["event_date"].to_pylist(), t["n"].to_pylist(), strict=True))


def test_window_overwrite_replaces_only_its_days(catalog, tmp_path):
    store_batch(
        catalog, "staging.t", batch(tmp_path, [1, 2, 3], 1), day_partition_column="event_date"
    )
    window = {"window_start": "2026-01-02", "window_end": "2026-01-03"}
    for _ in range(2):  # a re-run replaces the day, never duplicates it
        store_batch(
            catalog,
            "staging.t",
            batch(tmp_path, [2, 2], 2),
            day_partition_column="event_date",
            **window,
        )
        d = dt.date
        assert rows(catalog) == [
            (d(2026, 1, 1), 1),
            (d(2026, 1, 2), 2),
            (d(2026, 1, 2), 2),
            (d(2026, 1, 3), 1),
        ]
    # An empty batch empties its window.
    store_batch(
        catalog, "staging.t", batch(tmp_path, [], 3), day_partition_column="event_date", **window
    )
    assert [r[0].day for r in rows(catalog)] == [1, 3]
    assert catalog.load_table("staging.t").spec().fields[0].name == "event_date_day"


def test_rows_outside_the_window_are_refused(catalog, tmp_path):
    with pytest.raises(IcebergStoreError, match="outside the window"):
        store_batch(
            catalog,
            "staging.t",
            batch(tmp_path, [1, 5], 1),
            day_partition_column="event_date",
            window_start="2026-01-01",
            window_end="2026-01-02",
        )


def _days_batches(days: list[int | None], size: int) -> list[pa.RecordBatch]:
    dates = [dt.date(2026, 1, d) if d else None for d in days]
    table = pa.table({"event_date": pa.array(dates, pa.date32()), "i": range(len(days))})
    return table.to_batches(max_chunksize=size)


def test_day_chunks_end_where_a_day_ends_and_lose_no_row():
    # Days 1..6 of 3 rows each plus 2 null days, in batches of 2 rows, chunks of about 5 rows.
    days = [d for d in range(1, 7) for _ in range(3)] + [None, None]
    chunks = list(day_chunks(_days_batches(days, 2), "event_date", 5))
    assert pa.concat_tables(chunks)["i"].to_pylist() == list(range(len(days)))
    by_chunk = [set(c["event_date"].to_pylist()) for c in chunks]
    for i, a in enumerate(by_chunk):  # no day in two chunks
        for b in by_chunk[i + 1 :]:
            assert not a & b
    assert all(c.num_rows <= 5 + 2 for c in chunks)  # max_rows plus one batch
    # One day larger than max_rows is cut anyway (memory stays bounded).
    big = list(day_chunks(_days_batches([1] * 12, 2), "event_date", 4))
    assert [c.num_rows for c in big] == [4, 4, 4]
    # Rows out of day order: all written once, only in more chunks.
    shuffled = [3, 1, 2, 1, 3, 2, 1]
    got = pa.concat_tables(day_chunks(_days_batches(shuffled, 2), "event_date", 3))
    assert got["i"].to_pylist() == list(range(len(shuffled)))


def test_a_many_day_write_makes_one_file_per_day_in_one_snapshot(catalog, tmp_path, monkeypatch):
    # 8 days of 5 rows in day order (as the materialization copies them), read in batches of 3
    # and written in chunks of about 12 rows: a fixed-size split would cut days across chunks.
    monkeypatch.setattr(duckdb_iceberg, "READ_ROWS", 3)
    monkeypatch.setattr(duckdb_iceberg, "BATCH_ROWS", 12)
    path = tmp_path / "days.parquet"
    days = [dt.date(2026, 1, d) for d in range(1, 9) for _ in range(5)]
    pq.write_table(pa.table({"event_date": pa.array(days, pa.date32()), "n": range(40)}), path)
    store_batch(catalog, "staging.t", path, day_partition_column="event_date")
    table = catalog.load_table("staging.t")
    files = [task.file for task in table.scan().plan_files()]
    assert sorted(f.partition[0] for f in files) == sorted({d.toordinal() - 719163 for d in days})
    assert len(table.snapshots()) == 1  # one write, one snapshot (and one manifest)
    assert len(table.current_snapshot().manifests(table.io)) == 1
    assert sorted(read_table(catalog, "staging.t")["n"].to_pylist()) == list(range(40))


def test_scan_sql_reads_data_files_in_place_or_copies(catalog, tmp_path):
    store_batch(catalog, "staging.t", batch(tmp_path, [1], 1))
    sql = scan_sql(catalog.load_table("staging.t"), tmp_path / "scratch")
    assert sql.startswith("read_parquet([") and "schema = map {" in sql
    store_batch(catalog, "staging.t", batch(tmp_path, [], 1))  # empty table: a scratch copy
    assert str(tmp_path / "scratch") in scan_sql(
        catalog.load_table("staging.t"), tmp_path / "scratch"
    )


def duck_rows(sql: str, query: str = "select * from v order by all") -> list[tuple]:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"create view v as select * from {sql}")
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_columns_are_read_by_field_id_as_iceberg_does(catalog, tmp_path):
    """A column added later reads as null in the older files; a renamed column keeps its data
    (matching by name, union_by_name, would read it as null)."""
    store_batch(catalog, "staging.t", batch(tmp_path, [1], 1))
    table = catalog.load_table("staging.t")
    with table.update_schema() as update:
        update.rename_column("n", "amount")
        update.add_column("note", StringType())
    table = catalog.load_table("staging.t")
    table.append(
        pa.table(
            {
                "event_date": pa.array([dt.date(2026, 1, 2)], pa.date32()),
                "amount": pa.array([5], pa.int64()),
                "note": pa.array(["new"], pa.string()),
            }
        )
    )
    sql = scan_sql(catalog.load_table("staging.t"), tmp_path / "scratch")
    assert duck_rows(sql) == [(dt.date(2026, 1, 1), 1, None), (dt.date(2026, 1, 2), 5, "new")]


def test_a_table_that_may_hold_files_without_field_ids_is_read_by_name(catalog, tmp_path):
    """Files imported with add_files may carry no field ids (the table then has a name mapping):
    DuckDB would read them as nulls under a field-id schema, so they are matched by name."""
    path = tmp_path / "imported.parquet"
    pq.write_table(
        pa.table({"event_date": pa.array([dt.date(2026, 1, 1)], pa.date32()), "n": [7]}), path
    )
    schema = pa.schema([("event_date", pa.date32()), ("n", pa.int64())])
    catalog.create_namespace_if_not_exists("staging")
    table = catalog.create_table("staging.imported", schema=schema)
    table.add_files([str(path)])
    table = catalog.load_table("staging.imported")
    assert duckdb_iceberg.NAME_MAPPING_PROPERTY in table.properties
    sql = scan_sql(table, tmp_path / "scratch")
    assert "union_by_name" in sql
    assert duck_rows(sql) == [(dt.date(2026, 1, 1), 7)]


def test_a_windowed_view_is_the_whole_table_and_a_window_query_opens_only_its_files(
    catalog, tmp_path
):
    """With the run's window, a day-partitioned table's view is its window's files plus the
    other days' under predicates their partitions make true: every query reads the same rows
    as without a window, and a query of the window does not even open the other files."""
    days = list(range(1, 11))
    store_batch(catalog, "staging.t", batch(tmp_path, days, 1), day_partition_column="event_date")
    table = catalog.load_table("staging.t")
    window = (dt.date(2026, 1, 4), dt.date(2026, 1, 6))
    plain = scan_sql(table, tmp_path / "scratch")
    grouped = scan_sql(table, tmp_path / "scratch", window)
    assert "union all" in grouped and "union all" not in plain
    queries = [
        "select * from v order by all",
        "select * from v where event_date >= DATE '2026-01-04' and event_date < DATE '2026-01-06'"
        " order by all",
        "select * from v where event_date < DATE '2026-01-05' order by all",
        "select count(*), max(event_date) from v where event_date >= DATE '2026-01-08'",
    ]
    for query in queries:
        assert duck_rows(grouped, query) == duck_rows(plain, query), query
    # The files of the other days made unreadable: the window's query still reads (it never
    # opens them, not even their footers); a query of every day now fails (it needs them).
    others = [
        local_path(t.file.file_path)
        for t in table.scan().plan_files()
        if not 20457 <= t.file.partition[0] < 20459  # 2026-01-04 and -05, days since 1970
    ]
    assert len(others) == 8
    for path in others:
        Path(path).write_bytes(b"not parquet")
    assert duck_rows(grouped, queries[1]) == [
        (dt.date(2026, 1, 4), 1),
        (dt.date(2026, 1, 5), 1),
    ]
    with pytest.raises(Exception, match="parquet"):
        duck_rows(grouped, queries[0])


def test_no_grouping_without_a_window_or_a_day_partition(catalog, tmp_path):
    store_batch(catalog, "staging.t", batch(tmp_path, [1, 2], 1))  # unpartitioned
    window = (dt.date(2026, 1, 1), dt.date(2026, 1, 2))
    assert "union all" not in scan_sql(catalog.load_table("staging.t"), tmp_path, window)
    store_batch(catalog, "staging.d", batch(tmp_path, [1, 2], 1), day_partition_column="event_date")
    assert "union all" not in scan_sql(catalog.load_table("staging.d"), tmp_path)


def test_run_window_reads_the_invocation_window_as_day_window_sql_does(monkeypatch):
    import types

    import dbt.flags

    def flags(**values):
        monkeypatch.setattr(dbt.flags, "get_flags", lambda: types.SimpleNamespace(**values))

    d = dt.date
    flags(VARS={}, EVENT_TIME_START=dt.datetime(2026, 1, 2), EVENT_TIME_END=dt.datetime(2026, 1, 4))
    assert duckdb_iceberg.run_window() == (d(2026, 1, 2), d(2026, 1, 4))
    # An end inside a day covers that day.
    flags(
        VARS={},
        EVENT_TIME_START=dt.datetime(2026, 1, 2, 5),
        EVENT_TIME_END=dt.datetime(2026, 1, 3, 1),
    )
    assert duckdb_iceberg.run_window() == (d(2026, 1, 2), d(2026, 1, 4))
    # The vars win (manual runs), as in day_window.sql.
    flags(
        VARS={"window_start": "2026-02-01", "window_end": "2026-02-02"},
        EVENT_TIME_START=dt.datetime(2026, 1, 2),
        EVENT_TIME_END=dt.datetime(2026, 1, 4),
    )
    assert duckdb_iceberg.run_window() == (d(2026, 2, 1), d(2026, 2, 2))
    flags(VARS={})
    assert duckdb_iceberg.run_window() is None
    flags(VARS={"window_start": "not a date", "window_end": "2026-02-02"})
    assert duckdb_iceberg.run_window() is None


def test_helpers(tmp_path):
    assert local_path("file:///a/b%20c.parquet") == "/a/b c.parquet"
    assert local_path("s3://bucket/key") is None
    assert settings_for(str(tmp_path), {}).home == tmp_path.resolve()


def test_connecting_opens_no_table_and_a_read_registers_it_once(catalog, home, tmp_path):
    """Views are created for the tables a run resolves (ref/source), once each, not at connect."""
    import duckdb

    store_batch(catalog, "staging.t", batch(tmp_path, [1, 2], 1), day_partition_column="event_date")
    store_batch(catalog, "staging.u", batch(tmp_path, [3], 2))
    plugin = Plugin("iceberg", {"home": str(home)})
    loads: list[str] = []
    real_load = plugin.catalog().load_table
    plugin.catalog().load_table = lambda name: loads.append(name) or real_load(name)
    conn = duckdb.connect()
    plugin.configure_connection(conn)
    views = "select table_schema || '.' || table_name from information_schema.tables order by 1"
    assert conn.execute(views).fetchall() == []
    assert loads == []

    assert plugin.register("staging.t") is True
    assert plugin.register("staging.t") is True  # once per process
    assert loads == ["staging.t"]
    assert conn.execute("select count(*), sum(n) from staging.t").fetchone() == (2, 2)
    # Another cursor of the database (another dbt thread) sees the view.
    assert conn.cursor().execute("select count(*) from staging.t").fetchone() == (2,)
    # Not yet built (the materialization exposes it), or a namespace dbt does not read.
    assert plugin.register("staging.missing") is False
    assert plugin.register("analytics.t") is False
    assert conn.execute(views).fetchall() == [("staging.t",)]


def test_plugins_of_one_process_share_one_scratch_folder_emptied_between_invocations(
    catalog, home, tmp_path
):
    """dbt in the step's process builds a plugin per invocation: they share the process's
    scratch folder (no folder and exit handler per invocation), emptied after each one."""
    from transformation.duckdb_iceberg import clear_scratch

    store_batch(catalog, "staging.empty", batch(tmp_path, [], 1))  # read through a scratch copy
    first = Plugin("iceberg", {"home": str(home)})
    second = Plugin("iceberg", {"home": str(home)})
    assert first._scratch == second._scratch
    sql = scan_sql(catalog.load_table("staging.empty"), first._scratch)
    copies = list(first._scratch.iterdir())
    assert len(copies) == 1 and str(copies[0]) in sql
    clear_scratch()
    assert first._scratch.is_dir() and not any(first._scratch.iterdir())
