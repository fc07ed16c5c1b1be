"""The dbt-duckdb Iceberg plugin's write path, without dbt."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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
    assert sql.startswith("read_parquet([") and "union_by_name" in sql
    store_batch(catalog, "staging.t", batch(tmp_path, [], 1))  # empty table: a scratch copy
    assert str(tmp_path / "scratch") in scan_sql(
        catalog.load_table("staging.t"), tmp_path / "scratch"
    )


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
