"""Compaction of small data files: one ``replace`` snapshot, rows and schema unchanged, and a
concurrent commit either survives it or makes it give up cleanly."""

import datetime as dt
import os
from urllib.parse import urlparse

import pyarrow as pa
import pytest

from shared import compaction
from shared.compaction import (
    MIN_INPUT_FILES,
    SUMMARY_PROPERTY,
    CompactionConflict,
    compact_small_files,
    is_replace,
)
from shared.iceberg import open_catalog, write_table
from shared.settings import load_settings

UTC = dt.UTC


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


def rows(start: int, n: int = 3, day: int = 1, extra: bool = False) -> pa.Table:
    data = {
        "id": pa.array(range(start, start + n), pa.int64()),
        "name": [f"n{i}" for i in range(start, start + n)],
        "ts": pa.array([dt.datetime(2026, 1, day, 12, tzinfo=UTC)] * n, pa.timestamp("us", "UTC")),
    }
    if extra:
        data["added_later"] = [f"x{i}" for i in range(start, start + n)]
    return pa.table(data)


def append_many(catalog, count: int, identifier: str = "raw.users", **kwargs) -> None:
    for k in range(count):
        write_table(catalog, identifier, rows(k * 10, **kwargs), mode="append")


def content(table, snapshot_id: int | None = None) -> list[tuple]:
    data = table.scan(snapshot_id=snapshot_id).to_arrow()
    names = sorted(data.column_names)
    return sorted(zip(*(data[c].to_pylist() for c in names), strict=True), key=repr)


def data_files(table) -> list:
    return [task.file for task in table.scan().plan_files()]


def exists(path: str) -> bool:
    return os.path.exists(urlparse(path).path if path.startswith("file:") else path)


def test_small_files_are_rewritten_as_one_replace_snapshot(catalog):
    append_many(catalog, 10)
    table = catalog.load_table("raw.users")
    before, schema, snapshots = content(table), table.schema(), len(table.metadata.snapshots)
    total = table.current_snapshot().summary["total-records"]
    old_files = data_files(table)

    done = compact_small_files(catalog, "raw.users")

    table = catalog.load_table("raw.users")
    snapshot = table.current_snapshot()
    assert done.snapshot_id == snapshot.snapshot_id
    assert (done.files_replaced, done.files_written, done.rows) == (10, 1, 30)
    assert is_replace(snapshot) and snapshot.summary.operation.value == "replace"
    assert len(table.metadata.snapshots) == snapshots + 1  # ONE snapshot
    assert snapshot.summary["total-records"] == total
    assert snapshot.summary["deleted-data-files"] == "10"
    assert snapshot.summary["added-data-files"] == "1"
    assert snapshot.summary[SUMMARY_PROPERTY] == "10"
    assert len(data_files(table)) == 1
    assert content(table) == before
    assert table.schema() == schema
    # The replaced files stay on storage: earlier snapshots (read by raw-history readers) list
    # them, and every one of those still reads the same.
    assert all(exists(f.file_path) for f in old_files)
    assert content(table, snapshot.parent_snapshot_id) == before


def test_too_few_small_files_or_large_files_are_left_alone(catalog):
    append_many(catalog, MIN_INPUT_FILES - 1)
    current = catalog.load_table("raw.users").current_snapshot().snapshot_id
    assert compact_small_files(catalog, "raw.users").snapshot_id is None
    append_many(catalog, 1)
    assert compact_small_files(catalog, "raw.users", small_file_bytes=1).snapshot_id is None
    table = catalog.load_table("raw.users")
    assert table.current_snapshot().parent_snapshot_id == current  # only the append since
    assert compact_small_files(catalog, "raw.users").files_replaced == MIN_INPUT_FILES


def test_files_of_an_older_schema_get_the_new_columns_as_nulls(catalog):
    append_many(catalog, 5)
    for k in range(5):
        write_table(catalog, "raw.users", rows(100 + k * 10, extra=True), mode="append")
    table = catalog.load_table("raw.users")
    before = content(table)
    compact_small_files(catalog, "raw.users")
    table = catalog.load_table("raw.users")
    assert content(table) == before
    assert sum(v is None for v in table.scan().to_arrow()["added_later"].to_pylist()) == 15


def test_only_partitions_with_enough_small_files_are_compacted(catalog):
    for k in range(MIN_INPUT_FILES):
        write_table(catalog, "staging.t", rows(k * 10, day=1), mode="append", partition_by_day="ts")
    for k in range(3):
        write_table(
            catalog, "staging.t", rows(500 + k, day=2), mode="append", partition_by_day="ts"
        )
    table = catalog.load_table("staging.t")
    before = content(table)
    done = compact_small_files(catalog, "staging.t")
    assert (done.files_replaced, done.partitions) == (MIN_INPUT_FILES, 1)
    table = catalog.load_table("staging.t")
    assert content(table) == before
    by_day: dict = {}
    for f in data_files(table):
        by_day.setdefault(f.partition[0], []).append(f)
    assert sorted(len(v) for v in by_day.values()) == [1, 3]


def test_a_concurrent_append_between_plan_and_commit_survives(catalog, monkeypatch):
    append_many(catalog, 10)
    real = compaction._commit_replace
    calls = []

    def append_first(table, replaced, written):
        if not calls:  # another writer commits after the compaction planned and wrote
            write_table(catalog, "raw.users", rows(1000), mode="append")
        calls.append(table.current_snapshot().snapshot_id)
        return real(table, replaced, written)

    monkeypatch.setattr(compaction, "_commit_replace", append_first)
    done = compact_small_files(catalog, "raw.users")

    assert done.attempts == 2 and len(set(calls)) == 2  # built again on the new snapshot
    table = catalog.load_table("raw.users")
    ids = sorted(table.scan().to_arrow()["id"].to_pylist())
    assert ids == sorted([*range(1000, 1003), *(k * 10 + i for k in range(10) for i in range(3))])
    assert len(data_files(table)) == 2  # the compacted file and the concurrent append's
    assert table.current_snapshot().summary["total-records"] == "33"


def test_a_concurrent_commit_that_removed_a_file_makes_it_give_up_cleanly(catalog, monkeypatch):
    append_many(catalog, 10)
    real = compaction._commit_replace
    written = []

    def overwrite_first(table, replaced, new_files):
        written.extend(new_files)
        write_table(catalog, "raw.users", rows(2000), mode="overwrite")  # a full refresh
        return real(table, replaced, new_files)

    monkeypatch.setattr(compaction, "_commit_replace", overwrite_first)
    with pytest.raises(CompactionConflict, match="nothing committed"):
        compact_small_files(catalog, "raw.users")
    table = catalog.load_table("raw.users")
    assert sorted(table.scan().to_arrow()["id"].to_pylist()) == [2000, 2001, 2002]
    assert not is_replace(table.current_snapshot())
    assert written and not any(exists(f.file_path) for f in written)  # no orphans left


def test_manifests_stay_merged_across_compactions(catalog):
    for _ in range(3):
        append_many(catalog, 20)
        compact_small_files(catalog, "raw.users")
    append_many(catalog, 20)
    table = catalog.load_table("raw.users")
    assert len(table.current_snapshot().manifests(table.io)) < 16
    assert len(data_files(table)) <= 20 + 3


def test_compact_tables_compacts_each_table_with_enough_small_files(catalog):
    append_many(catalog, MIN_INPUT_FILES, "raw.users")
    append_many(catalog, 2, "raw.events")
    done = compaction.compact_tables(catalog, ["raw.users", "raw.events"])
    assert [(d.identifier, d.files_replaced) for d in done] == [
        ("raw.users", MIN_INPUT_FILES),
        ("raw.events", 0),
    ]
    assert is_replace(catalog.load_table("raw.users").current_snapshot())
    assert not is_replace(catalog.load_table("raw.events").current_snapshot())


def test_a_table_not_created_yet_is_nothing_to_compact(catalog):
    """A stream never synced (a new deployment's first maintenance run): no error, no commit."""
    [done] = compaction.compact_tables(catalog, ["raw.never_synced"])
    assert done.snapshot_id is None and done.files_replaced == 0


def test_rows_are_rewritten_in_commit_order(catalog):
    append_many(catalog, 12)
    planned = compaction.plan_compaction(catalog.load_table("raw.users"))
    compact_small_files(catalog, "raw.users")
    table = catalog.load_table("raw.users")
    assert len(planned) == 12
    ids = table.scan().to_arrow()["id"].to_pylist()
    assert ids == [k * 10 + i for k in range(12) for i in range(3)]  # the appends' order


def test_compactions_racing_real_appends_lose_and_double_no_row(catalog):
    """Writers appending in threads while compactions run again and again: every appended row
    is in the table exactly once; a compaction either committed or gave up cleanly."""
    import threading

    append_many(catalog, 2)
    expected = [k * 10 + i for k in range(2) for i in range(3)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        try:
            for k in range(6):
                write_table(catalog, "raw.users", rows(10_000 * (w + 1) + k * 10), mode="append")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    outcomes = {"committed": 0, "gave_up": 0}

    def compactor() -> None:
        while not stop.is_set():
            try:
                done = compact_small_files(catalog, "raw.users", min_files=2)
                outcomes["committed"] += done.snapshot_id is not None
            except CompactionConflict:
                outcomes["gave_up"] += 1
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    compacting = threading.Thread(target=compactor)
    compacting.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    compacting.join()
    assert not errors, errors
    for w in range(3):
        expected += [10_000 * (w + 1) + k * 10 + i for k in range(6) for i in range(3)]
    compact_small_files(catalog, "raw.users", min_files=2)  # once more, alone
    table = catalog.load_table("raw.users")
    assert sorted(table.scan().to_arrow()["id"].to_pylist()) == sorted(expected)
    assert table.current_snapshot().summary["total-records"] == str(len(expected))
    assert outcomes["committed"] >= 1


def _paths(files) -> set[str]:
    return {f.file_path for f in files}


def test_two_overlapping_compactions_one_commits_the_other_gives_up_cleanly(catalog, monkeypatch):
    """Both plan and write before either commits (the second runs whole inside the first's
    commit): the second commits, the first gives up (its files were replaced under it) and
    deletes what it wrote; rows unchanged, never doubled."""
    append_many(catalog, 10)
    table = catalog.load_table("raw.users")
    before, snapshots = content(table), len(table.metadata.snapshots)
    old_files = _paths(data_files(table))
    real = compaction._commit_replace
    written: list[list] = []  # the files each compaction wrote, first (outer) one first

    def other_first(table, replaced, new_files):
        if not written:
            written.append(list(new_files))
            monkeypatch.setattr(compaction, "_commit_replace", real)
            try:  # the other maintenance run: plans, writes and commits first
                other = compact_small_files(catalog, "raw.users")
            finally:
                monkeypatch.setattr(compaction, "_commit_replace", other_first)
            assert other.snapshot_id is not None and other.files_replaced == 10
        return real(table, replaced, new_files)

    monkeypatch.setattr(compaction, "_commit_replace", other_first)
    with pytest.raises(CompactionConflict, match="nothing committed"):
        compact_small_files(catalog, "raw.users")

    table = catalog.load_table("raw.users")
    assert content(table) == before
    assert table.current_snapshot().summary["total-records"] == "30"
    assert len(table.metadata.snapshots) == snapshots + 1  # the winner's replace only
    assert is_replace(table.current_snapshot())
    files = _paths(data_files(table))
    assert len(files) == 1 and not files & old_files  # the winner's file
    loser = _paths(written[0])
    assert loser and not loser & files  # the loser's files are not listed by the table...
    assert not any(exists(p) for p in loser)  # ...nor left on storage
    assert all(exists(p) for p in files)


def test_two_compactions_committing_at_once_replace_the_files_once(catalog, monkeypatch):
    """Two threads compact the same table; both have planned and written when both commit at
    once: exactly one replace lands, the other gives up cleanly; rows never doubled."""
    import threading

    append_many(catalog, 10)
    before = content(catalog.load_table("raw.users"))
    real = compaction._commit_replace
    both_wrote = threading.Barrier(2, timeout=60)
    written: dict[str, list] = {}

    def together(table, replaced, new_files):
        name = threading.current_thread().name
        if name not in written:  # first commit of this compaction: wait for the other
            written[name] = list(new_files)
            both_wrote.wait()
        return real(table, replaced, new_files)

    monkeypatch.setattr(compaction, "_commit_replace", together)
    outcomes: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            outcomes[name] = compact_small_files(catalog, "raw.users")
        except BaseException as exc:  # noqa: BLE001 (asserted below)
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    won = [n for n, o in outcomes.items() if isinstance(o, compaction.Compaction)]
    lost = [n for n, o in outcomes.items() if isinstance(o, CompactionConflict)]
    assert (len(won), len(lost)) == (1, 1), outcomes
    table = catalog.load_table("raw.users")
    assert content(table) == before
    assert table.current_snapshot().summary["total-records"] == "30"
    assert sum(is_replace(s) for s in table.metadata.snapshots) == 1
    files = _paths(data_files(table))
    assert files == _paths(written[won[0]])
    loser = _paths(written[lost[0]])
    assert loser and not loser & files and not any(exists(p) for p in loser)


def test_rewritten_files_keep_about_one_sync_per_row_group(catalog, monkeypatch):
    """A reader filtering on a sync's time skips the other syncs' row groups of a compacted
    file: each input file's rows stay a row group of their own (same row counts, in commit
    order), not one row group for the whole file."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(compaction, "MIN_ROW_GROUP_ROWS", 1)
    for k in range(MIN_INPUT_FILES):
        write_table(catalog, "raw.users", rows(k * 10, n=4, day=k + 1), mode="append")
    compact_small_files(catalog, "raw.users")
    (written,) = data_files(catalog.load_table("raw.users"))
    metadata = pq.ParquetFile(urlparse(written.file_path).path).metadata
    ts = metadata.schema.names.index("ts")
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    assert [g.num_rows for g in groups] == [4] * MIN_INPUT_FILES
    days = [(g.column(ts).statistics.min.day, g.column(ts).statistics.max.day) for g in groups]
    assert days == [(k + 1, k + 1) for k in range(MIN_INPUT_FILES)]
    # The table's own writes keep the table's setting: the limit was never committed.
    assert "write.parquet.row-group-limit" not in catalog.load_table("raw.users").properties


def test_row_groups_are_the_median_sync_and_never_tiny():
    class F:
        def __init__(self, n):
            self.record_count = n

    assert compaction.row_group_rows([F(20_000)] * 7 + [F(900_000)]) == 20_000
    assert compaction.row_group_rows([F(100)] * 9) == compaction.MIN_ROW_GROUP_ROWS
    assert compaction.row_group_rows([]) == compaction.MIN_ROW_GROUP_ROWS
