"""The one write path: atomic, idempotent, schema-evolving, safe under concurrency and crashes."""

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest
from pyiceberg.table import StaticTable

from shared.iceberg import list_tables, open_catalog, read_table, write_table
from shared.settings import load_settings


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


def days_table(days, per_day=3):
    rows = [(d, i) for d in days for i in range(per_day)]
    return pa.table(
        {
            "day": pa.array([r[0] for r in rows], pa.date32()),
            "n": pa.array([r[1] for r in rows], pa.int64()),
            "ts": pa.array(
                [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * len(rows), pa.timestamp("ns", "UTC")
            ),
        }
    )


D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)


def test_overwrite_twice_is_idempotent(catalog):
    data = days_table([D1, D2])
    first = write_table(catalog, "raw.t", data)
    second = write_table(catalog, "raw.t", data)
    assert first.row_count == second.row_count == 6
    assert second.snapshot_id != first.snapshot_id
    assert (
        read_table(catalog, "raw.t").sort_by("n").equals(read_table(catalog, "raw.t").sort_by("n"))
    )


def test_overwrite_filter_replaces_only_that_day(catalog):
    write_table(catalog, "analytics.p", days_table([D1, D2, D3]), partition_by_day="day")
    rerun = days_table([D2], per_day=1)
    write_table(catalog, "analytics.p", rerun, overwrite_filter=f"day = '{D2}'")
    write_table(catalog, "analytics.p", rerun, overwrite_filter=f"day = '{D2}'")
    got = read_table(catalog, "analytics.p").to_pydict()
    assert sorted(zip(got["day"], got["n"], strict=True)) == [
        (D1, 0),
        (D1, 1),
        (D1, 2),
        (D2, 0),
        (D3, 0),
        (D3, 1),
        (D3, 2),
    ]
    table = catalog.load_table("analytics.p")
    assert [f.name for f in table.spec().fields] == ["day_day"]


def test_ns_timestamps_are_stored_as_us(catalog):
    write_table(catalog, "raw.t", days_table([D1]))
    field = catalog.load_table("raw.t").schema().find_field("ts")
    assert str(field.field_type) == "timestamptz"


def test_added_column_is_kept_and_dropped_column_becomes_null(catalog):
    write_table(catalog, "raw.t", days_table([D1], per_day=1))
    wider = days_table([D2], per_day=1).append_column("extra", pa.array(["x"]))
    write_table(catalog, "raw.t", wider, mode="append")
    narrower = days_table([D3], per_day=1).drop(["ts"])
    write_table(catalog, "raw.t", narrower, mode="append")
    got = read_table(catalog, "raw.t").sort_by("day").to_pydict()
    assert got["extra"] == [None, "x", None]
    assert got["ts"][2] is None and got["ts"][1] is not None


def test_batches_commit_once(catalog):
    schema = days_table([D1]).schema

    def batches():
        for d in (D1, D2, D3):
            yield from days_table([d]).to_batches()

    result = write_table(catalog, "raw.t", batches, schema=schema)
    assert result.rows_written == 9 and result.row_count == 9
    assert len(catalog.load_table("raw.t").snapshots()) == 1


def test_projection_and_filter_are_pushed_down(catalog):
    write_table(catalog, "raw.t", days_table([D1, D2]))
    got = read_table(catalog, "raw.t", columns=["n"], row_filter=f"day = '{D2}'")
    assert got.column_names == ["n"] and got.num_rows == 3


def test_list_tables_gives_current_metadata(catalog):
    write_table(catalog, "raw.t", days_table([D1]))
    write_table(catalog, "raw.t", days_table([D1, D2]))
    (entry,) = list_tables(catalog)
    assert entry["identifier"] == "raw.t" and entry["row_count"] == 6
    # An independent reader needs only the metadata location.
    static = StaticTable.from_metadata(entry["metadata_location"])
    assert static.scan().to_arrow().num_rows == 6
    assert static.current_snapshot().snapshot_id == entry["snapshot_id"]


WRITER = textwrap.dedent(
    """
    import sys, datetime as dt, pyarrow as pa, time
    from shared.iceberg import open_catalog, write_table
    from shared.settings import load_settings
    worker, rounds, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    catalog = open_catalog(load_settings())
    for r in range(rounds):
        if mode == "append":
            t = pa.table({"worker": [worker] * 50, "round": [r] * 50, "i": list(range(50))})
            write_table(catalog, "raw.shared", t, mode="append")
        else:
            day = dt.date(2026, 1, 1) + dt.timedelta(days=worker)
            t = pa.table({"day": pa.array([day] * 10, pa.date32()), "round": [r] * 10})
            write_table(catalog, "raw.daily", t, overwrite_filter=f"day = '{day}'")
    print("ok")
    """
)


@pytest.mark.parametrize("mode", ["append", "overwrite-day", "append-to-new-table"])
def test_concurrent_writers_lose_no_commit(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    catalog = open_catalog(load_settings())
    if mode == "append-to-new-table":
        # Every writer races to create the namespace and the table too.
        mode = "append"
    elif mode == "append":
        write_table(catalog, "raw.shared", pa.table({"worker": [-1], "round": [0], "i": [0]}))
    else:
        write_table(
            catalog, "raw.daily", pa.table({"day": pa.array([D1], pa.date32()), "round": [-1]})
        )
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    workers, rounds = 4, 5
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(w), str(rounds), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for w in range(workers)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "database is locked" not in err
    if mode == "append":
        got = read_table(catalog, "raw.shared")
        seeded = int(-1 in got["worker"].to_pylist())
        assert got.num_rows == seeded + workers * rounds * 50
        pairs = set(zip(got["worker"].to_pylist(), got["round"].to_pylist(), strict=True))
        assert len(pairs) == seeded + workers * rounds  # every commit of every worker is there
    else:
        got = read_table(catalog, "raw.daily").to_pydict()
        assert len(got["day"]) == workers * 10  # each day holds exactly its last overwrite
        assert set(got["round"]) == {rounds - 1}


CRASHER = textwrap.dedent(
    """
    import sys, time, pyarrow as pa
    from shared.iceberg import open_catalog, write_table
    from shared.settings import load_settings
    catalog = open_catalog(load_settings())
    schema = pa.schema([("i", pa.int64())])
    def batches():
        for b in range(1000):
            yield pa.table({"i": list(range(b * 1000, (b + 1) * 1000))})
            print(f"batch {b}", flush=True)
            time.sleep(0.05)
    write_table(catalog, "raw.crash", batches, schema=schema)
    print("committed", flush=True)
    """
)


def test_sigkill_mid_write_leaves_previous_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    catalog = open_catalog(load_settings())
    before = write_table(catalog, "raw.crash", pa.table({"i": pa.array([1, 2, 3], pa.int64())}))
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    seen = 0
    deadline = time.monotonic() + 120
    while seen < 5 and time.monotonic() < deadline:
        if proc.stdout.readline().startswith("batch"):
            seen += 1
    assert seen == 5, "the writer never got going"
    # The writer is inside write_table, streaming batches; its commit has not happened.
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    table = open_catalog(load_settings()).load_table("raw.crash")
    assert table.current_snapshot().snapshot_id == before.snapshot_id
    assert sorted(table.scan().to_arrow()["i"].to_pylist()) == [1, 2, 3]
    # The next run completes.
    after = write_table(catalog, "raw.crash", pa.table({"i": pa.array([4], pa.int64())}))
    assert after.row_count == 1


def test_columns_are_optional_so_later_nulls_fit(catalog):
    """A source whose first batch had no nulls (Arrow non-nullable) may send nulls later."""
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False), ("v", pa.string())])
    write_table(catalog, "marts.t", pa.table({"id": [1], "v": ["a"]}, schema=strict))
    assert all(f.optional for f in catalog.load_table("marts.t").schema().fields)
    write_table(
        catalog, "marts.t", pa.table({"id": pa.array([None, 2], pa.int64()), "v": ["b", None]})
    )
    assert read_table(catalog, "marts.t").num_rows == 2
