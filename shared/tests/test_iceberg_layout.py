"""Daily tables whose metadata does not grow with history: one snapshot per write, merged
manifests, and one-fact reads (a column's max) from the manifests instead of the data."""

import datetime as dt

import pyarrow as pa
import pytest

from shared import iceberg
from shared.iceberg import column_max, open_catalog, read_table, write_table
from shared.settings import load_settings


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


def day(n: int) -> dt.date:
    return dt.date(2026, 1, 1) + dt.timedelta(days=n)


def rows(days: list[dt.date | None], label: str = "a") -> pa.Table:
    return pa.table(
        {
            "event_date": pa.array(days, pa.date32()),
            "n": pa.array(range(len(days)), pa.int64()),
            "label": pa.array([label] * len(days), pa.string()),
            "ts": pa.array(
                [
                    dt.datetime(d.year, d.month, d.day, 12, tzinfo=dt.UTC) if d else None
                    for d in days
                ],
                pa.timestamp("us", "UTC"),
            ),
        }
    )


def overwrite_day(catalog, d: dt.date, label: str = "a", identifier: str = "staging.ev"):
    return write_table(
        catalog,
        identifier,
        rows([d, d], label),
        mode="overwrite",
        overwrite_filter=f"event_date = '{d}'",
        partition_by_day="event_date",
    )


def manifests(table) -> int:
    return len(table.current_snapshot().manifests(table.io))


def test_chunks_of_a_partitioned_write_are_one_snapshot(catalog):
    schema = rows([day(0)]).schema

    def chunks():  # three chunks, each of two days
        for k in range(3):
            yield rows([day(2 * k), day(2 * k + 1), day(2 * k + 1)])

    write_table(catalog, "staging.ev", chunks, schema=schema, partition_by_day="event_date")
    table = catalog.load_table("staging.ev")
    assert len(table.snapshots()) == 1
    assert manifests(table) == 1
    assert len(list(table.scan().plan_files())) == 6  # one file per (chunk, day)
    assert read_table(catalog, "staging.ev").num_rows == 9


def test_daily_manifests_stay_below_the_merge_count(catalog, monkeypatch):
    monkeypatch.setitem(iceberg.DAILY_TABLE_PROPERTIES, "commit.manifest.min-count-to-merge", "4")
    counts = []
    for n in range(12):  # a new day and a re-run of the day before, as daily runs write
        overwrite_day(catalog, day(n))
        if n:
            overwrite_day(catalog, day(n - 1), label="b")
        counts.append(manifests(catalog.load_table("staging.ev")))
    assert max(counts) <= 4
    table = catalog.load_table("staging.ev")
    assert table.properties["commit.manifest-merge.enabled"] == "true"
    got = read_table(catalog, "staging.ev").sort_by(
        [("event_date", "ascending"), ("n", "ascending")]
    )
    assert got["event_date"].to_pylist() == [day(n) for n in range(12) for _ in range(2)]
    assert got["label"].to_pylist() == ["b"] * 22 + ["a"] * 2  # merged entries still read


def test_an_existing_daily_table_gets_the_properties_once(catalog, monkeypatch):
    monkeypatch.setattr(iceberg, "DAILY_TABLE_PROPERTIES", {})  # made before they existed
    for n in range(3):
        overwrite_day(catalog, day(n))
    assert "commit.manifest-merge.enabled" not in catalog.load_table("staging.ev").properties
    monkeypatch.undo()
    overwrite_day(catalog, day(3))
    table = catalog.load_table("staging.ev")
    for key, value in iceberg.DAILY_TABLE_PROPERTIES.items():
        assert table.properties[key] == value
    metadata = table.metadata_location
    overwrite_day(catalog, day(4))  # set once: the next write makes no property commit
    log = [e.metadata_file for e in catalog.load_table("staging.ev").metadata.metadata_log]
    assert log[-1] == metadata
    # Unpartitioned tables (raw tables) merge manifests too, and keep their snapshots.
    write_table(catalog, "raw.r", rows([day(0)]))
    props = catalog.load_table("raw.r").properties
    assert props["commit.manifest-merge.enabled"] == "true"
    assert "history.expire.min-snapshots-to-keep" not in props


def test_raw_appends_merge_manifests_and_each_commit_still_knows_what_it_added(
    catalog, monkeypatch
):
    """A raw table synced hourly gets a commit per sync: its manifests must stay bounded (every
    scan plan and every append reads them), while each commit's added files stay readable for
    the changed days, the key index and the checks of the latest commit (shared.changes)."""
    from shared.changes import added_data_files

    monkeypatch.setitem(iceberg.MERGE_TABLE_PROPERTIES, "commit.manifest.min-count-to-merge", "4")
    counts = []
    for n in range(20):
        write_table(catalog, "raw.r", rows([day(n)] * (n + 1), label=str(n)), mode="append")
        counts.append(manifests(catalog.load_table("raw.r")))
    assert max(counts) <= 4  # 20 with fast appends
    table = catalog.load_table("raw.r")
    assert len(table.snapshots()) == 20  # no expiry: raw history is read
    for n, snapshot in enumerate(sorted(table.snapshots(), key=lambda s: s.sequence_number)):
        added = added_data_files(table, snapshot)
        assert sum(f.record_count for f in added) == n + 1
        got = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()
        assert got.num_rows == (n + 1) * (n + 2) // 2  # merged entries still read
        assert snapshot.summary.operation.value == "append"
    # The current snapshot's merged manifests keep, per file, the snapshot that added it (what
    # the key index's live files and the checks' earlier range read).
    added_by = {
        f.file_path: s.snapshot_id for s in table.snapshots() for f in added_data_files(table, s)
    }
    live = {
        e.data_file.file_path: e.snapshot_id
        for m in table.current_snapshot().manifests(table.io)
        for e in m.fetch_manifest_entry(table.io, discard_deleted=True)
    }
    assert live == added_by


def test_column_max_reads_the_manifests_only(catalog, monkeypatch):
    for n in range(5):
        overwrite_day(catalog, day(n))
    table = catalog.load_table("staging.ev")
    first = table.current_snapshot().snapshot_id
    assert column_max(table, "event_date") == day(4)
    assert column_max(table, "n") == 1
    assert column_max(table, "ts") == dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)
    # The latest day emptied: a deleted file's bound no longer counts; an all-null file neither.
    write_table(
        catalog,
        "staging.ev",
        rows([None]),
        mode="overwrite",
        overwrite_filter=f"event_date = '{day(4)}'",
        partition_by_day="event_date",
    )
    table = catalog.load_table("staging.ev")
    assert column_max(table, "event_date") == day(3)
    assert column_max(table, "event_date", snapshot_id=first) == day(4)
    with pytest.raises(LookupError, match="inexact"):
        column_max(table, "label")

    # Agrees with the data, and opens no data file.
    want = max(d for d in read_table(catalog, "staging.ev")["event_date"].to_pylist() if d)
    opened = []
    real_new_input = table.io.new_input

    def new_input(location):
        opened.append(location)
        return real_new_input(location)

    monkeypatch.setattr(table.io, "new_input", new_input)
    assert column_max(table, "event_date") == want
    assert opened and not [p for p in opened if p.endswith(".parquet")]

    write_table(catalog, "staging.empty", rows([None]).slice(0, 0), partition_by_day="event_date")
    assert column_max(catalog.load_table("staging.empty"), "event_date") is None


def test_daily_writes_expire_old_snapshots_in_their_commit(catalog, monkeypatch):
    for n in range(3):  # with the default age (an hour), a quick series expires nothing
        overwrite_day(catalog, day(n))
    assert len(catalog.load_table("staging.ev").snapshots()) == 3  # one append per new day
    # The larger of the table's values and the platform's retention (shared.settings) applies.
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "2")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    with catalog.load_table("staging.ev").transaction() as tx:
        tx.set_properties(
            {"history.expire.max-snapshot-age-ms": "0", "history.expire.min-snapshots-to-keep": "3"}
        )
    counts = []
    for n in range(3, 12):
        overwrite_day(catalog, day(n))
        overwrite_day(catalog, day(n), label="b")  # a re-run: a delete and an append
        table = catalog.load_table("staging.ev")
        counts.append(len(table.snapshots()))
        assert table.metadata.snapshot_by_id(table.current_snapshot().parent_snapshot_id)
    assert max(counts[1:]) <= 3 + 2  # those kept plus the write's delete and append
    got = read_table(catalog, "staging.ev")
    assert sorted(got["event_date"].to_pylist()) == [day(n) for n in range(12) for _ in range(2)]
    assert got["label"].to_pylist().count("b") == 18
    # An operator who keeps more than the table's value gets more: one retention policy.
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "8")
    for n in range(12, 18):
        overwrite_day(catalog, day(n))
        overwrite_day(catalog, day(n), label="b")
    assert len(catalog.load_table("staging.ev").snapshots()) >= 8
    assert len(catalog.load_table("staging.ev").snapshots()) <= 8 + 2
    # Unpartitioned (raw) tables keep their history: shared.changes reads it.
    for _ in range(4):
        write_table(catalog, "raw.r", rows([day(0)]), mode="append")
    assert len(catalog.load_table("raw.r").snapshots()) == 4
