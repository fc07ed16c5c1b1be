"""Changed event days: computed from the snapshots a sync committed, reading the day column."""

import datetime as dt

import pyarrow as pa
import pytest

from shared.changes import (
    CHANGED_EVENT_DAYS,
    CHANGED_EVENT_DAYS_COUNT,
    MOVED_FROM_DAYS,
    MOVED_KEYS,
    REDELIVERED_KEYS,
    UNKNOWN,
    changed_days,
    changed_days_metadata,
    current_snapshot_id,
    days_in_metadata,
    read_files,
    read_files_table,
    sync_changes,
    utc_days,
    with_lookback,
)
from shared.iceberg import open_catalog, write_table
from shared.settings import SettingsError, late_data_lookback_days, load_settings

UTC = dt.UTC


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


def events(*stamps: dt.datetime, ids: list[str | None] | None = None) -> pa.Table:
    return pa.table(
        {
            "event_id": ids if ids is not None else [f"e{i}" for i in range(len(stamps))],
            "event_ts": pa.array(list(stamps), pa.timestamp("us", "UTC")),
        }
    )


def at(day: int, month: int = 1, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=UTC)


def d(day: int, month: int = 1) -> dt.date:
    return dt.date(2026, month, day)


def append(catalog, table: pa.Table):
    write_table(catalog, "raw.events", table, mode="append")
    return catalog.load_table("raw.events")


def test_utc_day_of_a_zoned_timestamp_is_its_utc_date():
    # 23:30 at UTC-2 on Jan 1 is 01:30 UTC on Jan 2; 00:30 at UTC+2 on Jan 3 is Jan 2 in UTC.
    stamps = pa.array(
        [
            dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
            dt.datetime(2026, 1, 3, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            None,
        ],
        pa.timestamp("us", "Europe/Berlin"),
    )
    assert utc_days(stamps) == {dt.date(2026, 1, 2)}


def test_days_come_from_the_snapshots_added_since_the_marker(catalog):
    first = write_table(
        catalog,
        "raw.events",
        events(dt.datetime(2026, 1, 1, 5, tzinfo=UTC), dt.datetime(2026, 1, 2, 23, 59, tzinfo=UTC)),
        mode="append",
    )
    table = catalog.load_table("raw.events")
    assert changed_days(table, None, "event_ts") == [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]
    marker = current_snapshot_id(table)
    assert marker is not None and str(marker) == str(first.snapshot_id)

    # Two commits after the marker (e.g. a sync and a concurrent writer): both are counted.
    write_table(catalog, "raw.events", events(dt.datetime(2026, 3, 5, tzinfo=UTC)), mode="append")
    write_table(catalog, "raw.events", events(dt.datetime(2025, 12, 31, tzinfo=UTC)), mode="append")
    table = catalog.load_table("raw.events")
    assert changed_days(table, marker, "event_ts") == [dt.date(2025, 12, 31), dt.date(2026, 3, 5)]
    # Nothing since the current snapshot; a column the table lacks has no days.
    assert changed_days(table, current_snapshot_id(table), "event_ts") == []
    assert changed_days(table, None, "no_such_column") == []


def test_metadata_round_trip_and_unknown():
    meta = changed_days_metadata([dt.date(2026, 1, 3), dt.date(2026, 1, 1), dt.date(2026, 1, 3)])
    assert meta[CHANGED_EVENT_DAYS].value == ["2026-01-01", "2026-01-03"]
    assert meta[CHANGED_EVENT_DAYS_COUNT] == 2
    assert days_in_metadata(meta) == [dt.date(2026, 1, 1), dt.date(2026, 1, 3)]
    assert days_in_metadata(changed_days_metadata(UNKNOWN)) is UNKNOWN
    assert days_in_metadata({"rows_written": 3}) is None
    with pytest.raises(ValueError, match=CHANGED_EVENT_DAYS):
        days_in_metadata({CHANGED_EVENT_DAYS: "2026-01-01"})


def test_lookback_adds_the_days_before_each_changed_day():
    d = dt.date(2026, 4, 10)
    assert with_lookback([d], 0) == {d}
    assert with_lookback([d], 1) == {d, dt.date(2026, 4, 9)}
    assert len(with_lookback([d, dt.date(2026, 1, 1)], 2)) == 6
    with pytest.raises(ValueError):
        with_lookback([d], -1)


def test_lookback_setting_is_validated():
    assert late_data_lookback_days({}) == 1
    assert late_data_lookback_days({"DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS": "0"}) == 0
    with pytest.raises(SettingsError, match="DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS"):
        late_data_lookback_days({"DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS": "soon"})


def test_a_key_redelivered_on_another_day_changes_the_day_it_left_too(catalog):
    """Event a moves from Jan 1 to Mar 5: both days changed (Jan 1 still holds its old version
    downstream); b is re-delivered on its own day (not moved); c is new."""
    history = append(catalog, events(at(1), at(2), at(3), ids=["a", "b", "x"]))
    marker = current_snapshot_id(history)
    # A second history commit: earlier versions are found in every file before the sync.
    table = append(catalog, events(at(4), ids=["y"]))
    marker = current_snapshot_id(table)
    table = append(catalog, events(at(5, 3), at(2, hour=20), at(6, 3), ids=["a", "b", "c"]))

    changes = sync_changes(table, marker, "event_ts", ("event_id",))
    assert changes.added_days == (d(2), d(5, 3), d(6, 3))
    assert changes.days == (d(1), d(2), d(5, 3), d(6, 3))
    assert (changes.added_keys, changes.redelivered_keys, changes.moved_keys) == (3, 2, 1)
    assert changed_days(table, marker, "event_ts", ("event_id",)) == list(changes.days)
    # Without a key column, only the added rows' days (what was recorded before).
    assert changed_days(table, marker, "event_ts") == [d(2), d(5, 3), d(6, 3)]

    meta = changed_days_metadata(changes)
    assert days_in_metadata(meta) == list(changes.days)
    assert (meta[REDELIVERED_KEYS], meta[MOVED_KEYS]) == (2, 1)
    assert meta[MOVED_FROM_DAYS].value == ["2026-01-01"]


def test_a_commit_of_only_new_keys_changes_its_own_days(catalog):
    table = append(catalog, events(at(1), at(2), ids=["a", "b"]))
    marker = current_snapshot_id(table)
    # A new key, a row without key (no version of anything) and one without a day.
    table = append(catalog, events(at(9), at(10), None, ids=["c", None, "d"]))
    changes = sync_changes(table, marker, "event_ts", ("event_id",))
    assert changes.days == changes.added_days == (d(9), d(10))
    assert (changes.added_keys, changes.redelivered_keys, changes.moved_keys) == (2, 0, 0)
    assert MOVED_FROM_DAYS in changed_days_metadata(changes)
    assert changed_days_metadata(changes)[MOVED_FROM_DAYS].value == []


def test_a_tables_first_commit_looks_up_nothing_earlier(catalog):
    # One commit holding two versions of a on two days: both are added rows, both days counted.
    table = append(catalog, events(at(1), at(3), ids=["a", "a"]))
    changes = sync_changes(table, None, "event_ts", ("event_id",))
    assert changes.days == (d(1), d(3))
    assert changes.added_keys == 1
    assert changes.redelivered_keys is None and changes.moved_keys is None  # not looked up
    assert REDELIVERED_KEYS not in changed_days_metadata(changes)


def test_an_earlier_version_without_a_day_moved_from_no_day(catalog):
    table = append(catalog, events(None, ids=["a"]))
    marker = current_snapshot_id(table)
    table = append(catalog, events(at(7), ids=["a"]))
    changes = sync_changes(table, marker, "event_ts", ("event_id",))
    assert changes.days == (d(7),)
    assert (changes.redelivered_keys, changes.moved_keys) == (1, 0)


def test_a_composite_key_matches_on_every_column(catalog):
    rows = pa.table(
        {
            "tenant": ["t1", "t2"],
            "event_id": ["a", "a"],
            "event_ts": pa.array([at(1), at(2)], pa.timestamp("us", "UTC")),
        }
    )
    write_table(catalog, "raw.multi", rows, mode="append")
    table = catalog.load_table("raw.multi")
    marker = current_snapshot_id(table)
    moved = rows.slice(0, 1).set_column(2, "event_ts", pa.array([at(9)], pa.timestamp("us", "UTC")))
    write_table(catalog, "raw.multi", moved, mode="append")  # (t1, a) moves; (t2, a) does not
    table = catalog.load_table("raw.multi")
    changes = sync_changes(table, marker, "event_ts", ("tenant", "event_id"))
    assert changes.days == (d(1), d(9))
    assert (changes.redelivered_keys, changes.moved_keys) == (1, 1)
    # A key column the table lacks: the added days only, no look-up.
    assert sync_changes(table, marker, "event_ts", ("no_such",)).days == (d(9),)


def test_read_files_reads_exactly_the_files_given_by_field_id(catalog):
    """The one reader of chosen data files: only those files; a renamed column found by its
    field id; a column added after the file was written read as nulls of the table's type."""
    from pyiceberg.types import StringType

    from shared.changes import added_data_files

    first = append(catalog, events(at(1), at(2), ids=["a", "b"]))
    first_files = added_data_files(first, first.current_snapshot())
    table = append(catalog, events(at(3), ids=["c"]))
    with table.update_schema() as update:
        update.rename_column("event_id", "id")
        update.add_column("note", StringType())
    table = catalog.load_table("raw.events")

    batches = list(read_files(table, first_files, ["id", "note"]))
    rows = pa.Table.from_batches(batches)
    assert sorted(rows["id"].to_pylist()) == ["a", "b"]  # the second commit's file is not read
    assert rows["note"].to_pylist() == [None, None]
    assert rows.schema.field("note").type in (pa.string(), pa.large_string())  # Iceberg's string
    one_by_one = pa.Table.from_batches(list(read_files(table, first_files, ["id"], parallel=False)))
    assert one_by_one.sort_by("id") == rows.select(["id"]).sort_by("id")
    assert read_files_table(table, first_files, ["id", "note"]).sort_by("id") == rows.sort_by("id")

    empty = read_files_table(table, [], ["id", "event_ts"])
    assert empty.num_rows == 0
    assert empty.schema.field("event_ts").type == pa.timestamp("us", "UTC")
    with pytest.raises(ValueError):
        list(read_files(table, first_files, ["event_id"]))  # the old name is no column now


# ---- compaction: a replace snapshot adds no row -------------------------------------------------


def compact(catalog):
    from shared.compaction import compact_small_files

    done = compact_small_files(catalog, "raw.events", min_files=2)
    assert done.snapshot_id is not None
    return catalog.load_table("raw.events")


def test_a_compaction_changes_no_day_and_a_later_sync_only_its_own(catalog):
    """The same answers with and without a compaction in the history: a compaction alone
    changes nothing; a sync after it (or with it in between) reports only its own days."""
    table = append(catalog, events(at(1), at(2), at(3), ids=["a", "b", "x"]))
    table = append(catalog, events(at(4), ids=["y"]))
    marker = current_snapshot_id(table)
    table = append(catalog, events(at(5, 3), at(2, hour=20), at(6, 3), ids=["a", "b", "c"]))
    expected = sync_changes(table, marker, "event_ts", ("event_id",))
    synced = current_snapshot_id(table)

    table = compact(catalog)  # rewrites the three commits' files into one
    assert sync_changes(table, synced, "event_ts", ("event_id",)).days == ()
    assert changed_days(table, synced, "event_ts") == []
    # The sync's answer read again with the compaction after it: unchanged.
    assert sync_changes(table, marker, "event_ts", ("event_id",)) == expected

    # A sync after the compaction: its own days, its earlier versions found in compacted files.
    table = append(catalog, events(at(7, 3), at(8, 3), ids=["c", "z"]))
    # Since the last sync (the compaction in between): the compaction adds nothing.
    after = sync_changes(table, synced, "event_ts", ("event_id",))
    assert after.added_days == (d(7, 3), d(8, 3))
    assert after.days == (d(6, 3), d(7, 3), d(8, 3))  # c left Mar 6
    assert (after.added_keys, after.redelivered_keys, after.moved_keys) == (2, 1, 1)
    # Since the snapshot right before the sync (the compaction) the same.
    parent = table.current_snapshot().parent_snapshot_id
    assert sync_changes(table, parent, "event_ts", ("event_id",)) == after


def test_latest_data_snapshot_skips_compactions(catalog):
    from shared.changes import is_replace, latest_data_snapshot

    table = append(catalog, events(at(1), ids=["a"]))
    table = append(catalog, events(at(2), ids=["b"]))
    synced = current_snapshot_id(table)
    table = compact(catalog)
    assert is_replace(table.current_snapshot())
    assert latest_data_snapshot(table).snapshot_id == synced
    table = append(catalog, events(at(3), ids=["c"]))
    assert latest_data_snapshot(table).snapshot_id == current_snapshot_id(table)
