"""Concurrent writers on one table: nothing doubled, nothing lost, no half-made table.

Each test makes a second writer commit *between* the first writer's planning and its commit
(deterministically, from inside the first writer's data callback), which is what several runs
at once on one lakehouse do (issue 16 items 1 and 9).
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.exceptions import NoSuchTableError

from shared.iceberg import TABLE_PROPERTIES, append_new, open_catalog, read_table, write_table
from shared.settings import load_settings

SCHEMA = pa.schema([("id", pa.int64()), ("day", pa.date32())])
D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


@pytest.fixture
def catalog(tmp_path):
    return open_catalog(load_settings({"DATA_PLATFORM_HOME": str(tmp_path)}))


@pytest.fixture
def other(tmp_path):
    """A second writer: its own catalog connection, as another process would have."""
    return open_catalog(load_settings({"DATA_PLATFORM_HOME": str(tmp_path)}))


def rows(ids, day=D1):
    return pa.table({"id": pa.array(ids, pa.int64()), "day": pa.array([day] * len(ids))}, SCHEMA)


def cursor_sync(catalog, total: int, before_commit=None, calls=None):
    """A sync in the stand-in's shape: append ids ``max(id)+1 .. total`` read from the table."""

    def new_data(table):
        held = 0
        if table is not None:
            ids = table.scan(selected_fields=("id",)).to_arrow()["id"]
            held = pc.max(ids).as_py() or 0 if len(ids) else 0
        if calls is not None:
            calls.append(held)
        if held >= total:
            return None

        def batches():
            if before_commit:
                before_commit.pop()()  # once: the concurrent writer commits now
            yield rows(list(range(held + 1, total + 1)))

        return batches

    return append_new(catalog, "raw.items", new_data, schema=SCHEMA)


def test_a_cursor_append_skips_what_a_concurrent_sync_committed(catalog, other):
    """Two syncs read the same cursor; the second to commit re-reads it and appends nothing.

    Before: both appended (pyiceberg re-based the second fast append onto the first), so every
    row was there twice.
    """
    calls: list[int] = []
    result = cursor_sync(catalog, 10, before_commit=[lambda: cursor_sync(other, 10)], calls=calls)
    ids = read_table(catalog, "raw.items")["id"].to_pylist()
    assert sorted(ids) == list(range(1, 11))
    assert calls == [0, 10]  # planned from an empty table, then again after the conflict
    assert result.rows_written == 0 and result.row_count == 10


def test_a_cursor_append_adds_only_what_is_still_missing(catalog, other):
    cursor_sync(catalog, 4)
    result = cursor_sync(catalog, 10, before_commit=[lambda: cursor_sync(other, 6)])
    ids = read_table(catalog, "raw.items")["id"].to_pylist()
    assert sorted(ids) == list(range(1, 11))
    assert result.rows_written == 4


def test_a_partition_overwrite_is_replanned_after_a_concurrent_one(catalog, other):
    """Two runs overwrite the same day at once: the day holds one copy, no ValidationException.

    Before: pyiceberg's own retry re-validated the overwrite and failed with "Added data files
    were found matching the filter".
    """
    write_table(catalog, "marts.days", rows([1, 2, 3]), partition_by_day="day")
    concurrent = [
        lambda: write_table(
            other,
            "marts.days",
            rows([1, 2, 3]),
            overwrite_filter=f"day = '{D1}'",
            partition_by_day="day",
        )  # fmt: skip
    ]

    def data():
        if concurrent:
            concurrent.pop()()
        yield rows([1, 2, 3])

    write_table(
        catalog, "marts.days", data, schema=SCHEMA, overwrite_filter=f"day = '{D1}'",
        partition_by_day="day",
    )  # fmt: skip
    assert sorted(read_table(catalog, "marts.days")["id"].to_pylist()) == [1, 2, 3]


def test_tables_are_created_with_the_platforms_retry_policy(catalog):
    write_table(catalog, "marts.t", rows([1]))
    props = catalog.load_table("marts.t").properties
    assert {k: props.get(k) for k in TABLE_PROPERTIES} == TABLE_PROPERTIES


def test_a_table_made_before_gets_the_retry_policy_on_its_next_write(catalog):
    catalog.create_namespace("raw")
    catalog.create_table("raw.old", schema=SCHEMA)
    write_table(catalog, "raw.old", rows([1]), mode="append")
    assert catalog.load_table("raw.old").properties.get("commit.retry.num-retries") == "0"


def test_a_first_write_that_fails_leaves_no_table(catalog):
    """Disk full during a table's first write: no table registered with no snapshot.

    Before: the table was created, then the write failed, and readers saw an empty table.
    """

    def failing():
        yield rows([1, 2])
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_table(catalog, "marts.fct", failing, schema=SCHEMA, partition_by_day="day")
    with pytest.raises(NoSuchTableError):
        catalog.load_table("marts.fct")
    # A later write creates it with its first snapshot.
    write_table(catalog, "marts.fct", rows([1, 2]), partition_by_day="day")
    table = catalog.load_table("marts.fct")
    assert table.current_snapshot() is not None
    assert table.spec().fields[0].name == "day_day"


def test_two_first_writes_at_once_create_one_table(catalog, other):
    """Both writers see no table; the second to commit finds it created and appends onto it."""
    calls: list[int] = []
    cursor_sync(catalog, 5, before_commit=[lambda: cursor_sync(other, 5)], calls=calls)
    assert sorted(read_table(catalog, "raw.items")["id"].to_pylist()) == [1, 2, 3, 4, 5]
    assert calls == [0, 5]


@pytest.mark.parametrize("name", ["qhome?x", "pct%41x", "sp ace#frag"])
def test_a_home_with_url_characters_keeps_everything_inside_it(tmp_path, name):
    """Issue 16 item 8: `…/qhome?x` wrote `…/qhome`, `…/pct%41x` wrote `…/pctAx/catalog.db`."""
    home = tmp_path / name
    catalog = open_catalog(load_settings({"DATA_PLATFORM_HOME": str(home)}))
    write_table(catalog, "raw.items", rows([1, 2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing beside the home
    assert (home / "catalog.db").is_file()
    files = [p for p in (home / "warehouse").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    again = open_catalog(load_settings({"DATA_PLATFORM_HOME": str(home)}))
    assert read_table(again, "raw.items")["id"].to_pylist() == [1, 2]
