"""The hashed key index of a raw table: the same answers as reading raw in full, fewer bytes."""

import datetime as dt
import os
import random
import threading
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shared import changes, key_index
from shared.iceberg import open_catalog, write_table
from shared.key_index import (
    KEY_HASH,
    MARKER,
    RAW_ID_HASH,
    KeyIndexSpec,
    catch_up,
    confirmed_earlier,
    hash64,
    lookup,
)
from shared.settings import load_settings

UTC = dt.UTC
SPEC = KeyIndexSpec("raw.events", "event_id", "_airbyte_raw_id", "event_ts")
MASK = (1 << 64) - 1


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


# ---- the hash --------------------------------------------------------------------------------


def reference_hash(value: bytes) -> int:
    """The definition of :func:`hash64`, written again in plain Python (no numpy)."""

    def mix(z: int) -> int:
        z ^= z >> 30
        z = (z * 0xBF58476D1CE4E5B9) & MASK
        z ^= z >> 27
        z = (z * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    h = mix((0x6B657969_6E646578 ^ len(value)) & MASK)
    padded = value + b"\0" * (-len(value) % 8)
    for k in range(0, len(padded), 8):
        h = mix(h ^ int.from_bytes(padded[k : k + 8], "little"))
    return h - (1 << 64) if h >= 1 << 63 else h  # stored as a signed 64-bit integer


def test_hash_values_are_pinned():
    """The hash is persisted in index tables: these values must never change."""
    values = ["", "a", "abcdefgh", "abcdefghi", "é", "2f1e4b6c-0000-4000-8000-000000000001"]
    assert hash64(pa.array(values)).to_pylist() == [
        -8501719652189018939,
        -875531221249110320,
        -1466216284903737929,
        -1268240312875037996,
        -8371208773197965588,
        4622969894699371508,
    ]
    assert [reference_hash(v.encode()) for v in values] == hash64(pa.array(values)).to_pylist()


def test_hash_matches_its_definition_on_random_strings_of_any_layout():
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-é€😀"
    values = [
        None if rng.random() < 0.05 else "".join(rng.choices(alphabet, k=rng.randrange(0, 70)))
        for _ in range(3000)
    ]
    expected = [None if v is None else reference_hash(v.encode()) for v in values]
    array = pa.array(values)
    assert hash64(array).to_pylist() == expected
    assert hash64(array.cast(pa.large_string())).to_pylist() == expected
    assert hash64(array.slice(17, 500)).to_pylist() == expected[17:517]
    chunked = pa.chunked_array([array.slice(0, 1000), array.slice(1000)])
    assert hash64(chunked).to_pylist() == expected
    # Many equal-length values, sliced: the contiguous fast path.
    ids = pa.array([f"{i:036d}" for i in range(1000)])
    assert hash64(ids.slice(3)).to_pylist() == [
        reference_hash(f"{i:036d}".encode()) for i in range(3, 1000)
    ]


# ---- index answers == full reads ---------------------------------------------------------------


def day(n: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 1, 1, hour, tzinfo=UTC) + dt.timedelta(days=n)


class Raw:
    """A raw.events table written in commits, with re-deliveries (some moved to another day),
    null keys, rows without a time, and its own record ids."""

    def __init__(self, catalog, seed: int = 1):
        self.catalog = catalog
        self.rng = random.Random(seed)
        self.keys: list[str] = []
        self.serial = 0
        self.snapshots: list[int] = []

    def commit(self, n: int, redeliver: int = 0, on_day: int = 0, repeat_raw_id: str | None = None):
        rng = self.rng
        ids, stamps, raw_ids = [], [], []
        for _ in range(n):
            key = f"{rng.getrandbits(128):032x}"
            self.keys.append(key)
            ids.append(key if rng.random() > 0.05 else None)
            stamps.append(day(on_day, rng.randrange(24)) if rng.random() > 0.03 else None)
        for key in rng.sample(self.keys, min(redeliver, len(self.keys))):
            ids.append(key)
            moved = rng.random() < 0.5
            stamps.append(day(on_day + (rng.randrange(1, 5) if moved else 0)))
        for _ in ids:
            self.serial += 1
            raw_ids.append(f"r{self.serial:08d}")
        if repeat_raw_id is not None:
            ids.append("repeat")
            stamps.append(day(on_day))
            raw_ids.append(repeat_raw_id)
        rows = pa.table(
            {
                "event_id": ids,
                "event_ts": pa.array(stamps, pa.timestamp("us", "UTC")),
                "_airbyte_raw_id": raw_ids,
            }
        )
        write_table(self.catalog, "raw.events", rows, mode="append")
        table = self.table()
        self.snapshots.append(table.current_snapshot().snapshot_id)
        return table

    def table(self):
        return self.catalog.load_table("raw.events")


def sorted_pairs(t: pa.Table) -> list[tuple]:
    rows = zip(*(t.column(i).to_pylist() for i in range(t.num_columns)), strict=True)
    return sorted(rows, key=repr)


def assert_same_as_full_read(catalog, raw, snapshot_id: int, keys: list[str | None]):
    wanted = pa.table({"event_id": pa.array(keys, pa.string())})
    full = changes.earlier_versions(raw, snapshot_id, wanted, "event_ts")
    indexed = key_index.earlier_versions(catalog, raw, SPEC, snapshot_id, wanted, "event_ts")
    assert sorted_pairs(indexed) == sorted_pairs(full)
    assert indexed.schema == full.schema


def used_index(catalog, raw, snapshot_id) -> bool:
    wanted = hash64(pa.array(["x"]))
    return lookup(catalog, raw, SPEC, snapshot_id, KEY_HASH, wanted) is not None


def test_index_answers_as_a_full_read_at_every_snapshot(catalog):
    data = Raw(catalog)
    for i in range(6):
        raw = data.commit(300, redeliver=60, on_day=i)
        catch_up(catalog, SPEC)
    for p in data.snapshots:
        assert used_index(catalog, raw, p)
        sample = data.rng.sample(data.keys, 200) + ["never-seen", None]
        assert_same_as_full_read(catalog, raw, p, sample)
    # sync_changes gives the same Changes with the index as with the full read.
    before = data.snapshots[-2]
    full = changes.sync_changes(raw, before, "event_ts", ("event_id",))
    indexed = changes.sync_changes(
        raw,
        before,
        "event_ts",
        ("event_id",),
        earlier=lambda sid, keys: key_index.earlier_versions(
            catalog, raw, SPEC, sid, keys, "event_ts"
        ),
    )
    assert indexed == full
    assert full.redelivered_keys and full.moved_keys  # the data exercises both


def test_a_lagging_marker_is_covered_by_reading_the_tail(catalog):
    """A sync killed after its raw commit, before the index commit: readers read the commits
    after the marker from raw; the next catch-up indexes them once."""
    data = Raw(catalog, seed=2)
    data.commit(200, on_day=0)
    catch_up(catalog, SPEC)
    data.commit(200, redeliver=50, on_day=1)
    raw = data.commit(200, redeliver=50, on_day=2)  # two commits never indexed
    for p in data.snapshots:
        assert used_index(catalog, raw, p)
        assert_same_as_full_read(catalog, raw, p, data.keys)
    result = catch_up(catalog, SPEC)
    assert (result.rows_indexed, result.rebuilt) == (500, False)
    index = catalog.load_table(SPEC.identifier)
    assert index.scan().to_arrow().num_rows == raw.scan().to_arrow().num_rows
    assert catch_up(catalog, SPEC).rows_indexed == 0  # up to date: nothing twice


def test_rows_of_a_later_snapshot_are_left_out(catalog):
    """The index is ahead of P (another sync committed and was indexed after P)."""
    data = Raw(catalog, seed=3)
    data.commit(100, on_day=0)
    p = data.snapshots[-1]
    raw = data.commit(100, redeliver=80, on_day=5)  # a concurrent writer's commit after P
    catch_up(catalog, SPEC)
    assert used_index(catalog, raw, p)
    assert_same_as_full_read(catalog, raw, p, data.keys)


def test_a_replaced_table_or_unknown_marker_falls_back_then_rebuilds(catalog):
    data = Raw(catalog, seed=4)
    raw = data.commit(100, redeliver=10, on_day=0)
    catch_up(catalog, SPEC)
    index = catalog.load_table(SPEC.identifier)
    with index.transaction() as tx:
        tx.set_properties({MARKER: "12345"})  # a marker raw does not know (expired, replaced)
    assert not used_index(catalog, raw, data.snapshots[-1])
    raw = data.commit(100, redeliver=30, on_day=1)
    assert_same_as_full_read(catalog, raw, data.snapshots[-2], data.keys)  # the fallback
    result = catch_up(catalog, SPEC)
    assert result.rebuilt and result.rows_indexed == raw.scan().to_arrow().num_rows
    assert used_index(catalog, raw, data.snapshots[-2])

    # The raw table dropped and made again (same name, other table): not its index.
    catalog.drop_table("raw.events")
    data = Raw(catalog, seed=5)
    raw = data.commit(50, on_day=0)
    assert not used_index(catalog, raw, data.snapshots[-1])
    assert catch_up(catalog, SPEC).rebuilt
    assert_same_as_full_read(catalog, raw, data.snapshots[-1], data.keys)


def test_rows_deleted_from_raw_make_the_index_rebuild(catalog):
    data = Raw(catalog, seed=6)
    data.commit(100, on_day=0)
    catch_up(catalog, SPEC)
    before = data.snapshots[-1]
    kept = data.table().scan().to_arrow().slice(0, 40)
    write_table(catalog, "raw.events", kept, mode="overwrite")  # a full refresh
    raw = data.table()
    assert not used_index(catalog, raw, raw.current_snapshot().snapshot_id)
    assert catch_up(catalog, SPEC).rebuilt
    now = raw.current_snapshot().snapshot_id
    assert used_index(catalog, raw, now)
    assert not used_index(catalog, raw, before)  # before the deletion: raw answers
    assert_same_as_full_read(catalog, raw, now, data.keys)
    assert_same_as_full_read(catalog, raw, before, data.keys)


def test_concurrent_catch_ups_index_every_row_once(catalog, monkeypatch):
    data = Raw(catalog, seed=7)
    data.commit(100, on_day=0)
    catch_up(catalog, SPEC)
    data.commit(100, redeliver=20, on_day=1)
    raw = data.commit(100, redeliver=20, on_day=2)

    # One catch-up commits between another's plan and its commit: the latter conflicts, plans
    # again from the new marker and finds nothing left to index.
    real_commit = key_index._commit
    calls = []

    def racing_commit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            catch_up(catalog, SPEC)  # the other sync's catch-up wins the race
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(key_index, "_commit", racing_commit)
    result = catch_up(catalog, SPEC)
    monkeypatch.setattr(key_index, "_commit", real_commit)
    assert result.rows_indexed == 0 and result.marker == raw.current_snapshot().snapshot_id
    index_rows = catalog.load_table(SPEC.identifier).scan().to_arrow()
    assert index_rows.num_rows == raw.scan().to_arrow().num_rows

    # And real threads, a raw commit between each.
    raw = data.commit(100, redeliver=20, on_day=3)
    threads = [threading.Thread(target=catch_up, args=(catalog, SPEC)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index_rows = catalog.load_table(SPEC.identifier).scan().to_arrow()
    raw_rows = raw.scan().to_arrow()
    assert index_rows.num_rows == raw_rows.num_rows
    assert sorted(index_rows[RAW_ID_HASH].to_pylist()) == sorted(
        hash64(raw_rows["_airbyte_raw_id"]).to_pylist()
    )


def test_the_index_is_compacted_by_tiers_and_stays_exact(catalog):
    data = Raw(catalog, seed=8)
    merged = []
    for i in range(3 * key_index.COMPACT_FANOUT):
        raw = data.commit(20, redeliver=5, on_day=i)
        index = catalog.load_table(SPEC.identifier) if i else None
        before = [t.file.file_path for t in index.scan().plan_files()] if index else []
        if catch_up(catalog, SPEC).compacted:
            after = {
                t.file.file_path for t in catalog.load_table(SPEC.identifier).scan().plan_files()
            }
            merged += [f for f in before if f not in after]
    assert len(merged) >= key_index.COMPACT_FANOUT - 1
    assert not any(os.path.exists(urlparse(f).path) for f in merged)  # replaced files deleted
    index = catalog.load_table(SPEC.identifier)
    files = [t.file for t in index.scan().plan_files()]
    assert len(files) < 2 * key_index.COMPACT_FANOUT  # < F per tier, two tiers here
    assert index.scan().to_arrow().num_rows == raw.scan().to_arrow().num_rows
    for p in data.snapshots[::5]:
        assert_same_as_full_read(catalog, raw, p, data.keys)


def test_backfill_of_an_existing_table_indexes_its_whole_history_once(catalog):
    data = Raw(catalog, seed=9)
    for i in range(4):
        raw = data.commit(100, redeliver=20, on_day=i)
    result = catch_up(catalog, SPEC)
    assert result.rebuilt and result.rows_indexed == raw.scan().to_arrow().num_rows
    rows = catalog.load_table(SPEC.identifier).scan().to_arrow()
    # Each row tagged with the snapshot that added it.
    assert sorted(pc.unique(rows["raw_snapshot_id"]).to_pylist()) == sorted(data.snapshots)
    for p in data.snapshots:
        assert_same_as_full_read(catalog, raw, p, data.keys)


# ---- confirmed matches -------------------------------------------------------------------------


def colliding_hash(values):
    """Every value hashes to 0: every look-up is a candidate match."""
    return pa.array([None if v is None else 0 for v in values.to_pylist()], pa.int64())


@pytest.mark.parametrize("hash_fn", [hash64, colliding_hash])
def test_repeated_record_ids_are_confirmed_on_raw(catalog, hash_fn):
    data = Raw(catalog, seed=10)
    data.commit(100, on_day=0)
    data.commit(100, on_day=1)
    catch_up(catalog, SPEC, hash_fn=hash_fn)
    raw = data.commit(50, on_day=2, repeat_raw_id="r00000042")  # repeats an old record id
    catch_up(catalog, SPEC, hash_fn=hash_fn)
    new_ids = pa.array(["r00000042", "r99999999", "nope"])
    p = data.snapshots[-2]
    found = confirmed_earlier(catalog, raw, SPEC, p, new_ids, hash_fn=hash_fn)
    assert found.to_pylist() == ["r00000042"]
    candidates = lookup(catalog, raw, SPEC, p, RAW_ID_HASH, hash_fn(new_ids), hash_fn=hash_fn)
    if hash_fn is colliding_hash:
        assert candidates.num_rows == 200  # every earlier row is a candidate; one is confirmed
    # An index built with another hash is not read.
    other = colliding_hash if hash_fn is hash64 else hash64
    assert confirmed_earlier(catalog, raw, SPEC, p, new_ids, hash_fn=other) is None


# ---- one plan, one scan -------------------------------------------------------------------------


@pytest.mark.parametrize("hash_fn", [hash64, colliding_hash])
def test_one_scan_of_both_hash_columns_answers_as_a_full_read(catalog, hash_fn, monkeypatch):
    """One plan and one scan of both hash columns give, at every snapshot (the index ahead of
    it, at it, behind it), each column's matches as hashing raw in full does, and as a look-up
    of that column alone; the index's rows joined in several chunks."""
    monkeypatch.setattr(key_index, "_JOIN_ROWS", 64)  # several chunks of index rows
    data = Raw(catalog, seed=11)
    data.commit(150, on_day=0)
    data.commit(150, redeliver=40, on_day=1)
    catch_up(catalog, SPEC, hash_fn=hash_fn)  # the index is ahead of the first snapshot
    data.commit(150, redeliver=40, on_day=2)
    raw = data.commit(150, redeliver=40, on_day=3)  # two commits left unindexed: a tail
    keys = pa.array(data.rng.sample(data.keys, 80) + ["never-seen", None])
    ids = pa.array(["r00000003", "r00000200", "r00000500", "r99999999"])
    for p in data.snapshots:
        planned = key_index.plan(catalog, raw, SPEC, p, hash_fn=hash_fn)
        assert planned is not None
        found = key_index.scan(
            planned, {KEY_HASH: hash_fn(keys), RAW_ID_HASH: hash_fn(ids)}, day=True
        )
        rows = raw.scan(snapshot_id=p).to_arrow()
        full = pa.table(
            {
                KEY_HASH: hash_fn(rows["event_id"]),
                RAW_ID_HASH: hash_fn(rows["_airbyte_raw_id"]),
                key_index.DAY: changes.utc_dates(rows["event_ts"]),
            }
        )
        for column, values in ((KEY_HASH, keys), (RAW_ID_HASH, ids)):
            wanted = hash_fn(values).drop_null()
            expected = full.filter(pc.is_in(full[column], value_set=wanted))
            got = found[column]
            assert got.column_names == [column, key_index.DAY, key_index.SNAPSHOT]
            columns = [column, key_index.DAY]
            assert sorted_pairs(got.select(columns)) == sorted_pairs(expected.select(columns))
            alone = lookup(catalog, raw, SPEC, p, column, hash_fn(values), hash_fn=hash_fn)
            assert sorted_pairs(got.select(alone.column_names)) == sorted_pairs(alone)


# ---- compaction of raw: a replace keeps every row ----------------------------------------------


def compact_raw(catalog):
    from shared.compaction import compact_small_files

    done = compact_small_files(catalog, "raw.events", min_files=2)
    assert done.snapshot_id is not None
    return catalog.load_table("raw.events")


def index_files(catalog) -> set[str]:
    return {t.file.file_path for t in catalog.load_table(SPEC.identifier).scan().plan_files()}


def test_the_index_stays_valid_and_cheap_across_a_compaction(catalog):
    """A compaction of raw neither rebuilds the index nor stops it answering: its rows keep
    pointing at the snapshots that added them, and it answers as a full read at every
    snapshot, before, at and after the compaction."""
    data = Raw(catalog, seed=12)
    for i in range(4):
        data.commit(150, redeliver=30, on_day=i)
        catch_up(catalog, SPEC)
    files = index_files(catalog)
    raw = compact_raw(catalog)
    compacted = raw.current_snapshot().snapshot_id
    done = catch_up(catalog, SPEC)
    assert (done.rows_indexed, done.rebuilt, done.marker) == (0, False, compacted)
    assert index_files(catalog) == files  # nothing rewritten for the compaction
    for _ in range(2):
        raw = data.commit(150, redeliver=60, on_day=5)
        done = catch_up(catalog, SPEC)
        assert (done.rows_indexed, done.rebuilt, done.marker) == (210, False, data.snapshots[-1])
    index_rows = catalog.load_table(SPEC.identifier).scan().to_arrow()
    assert index_rows.num_rows == raw.scan().to_arrow().num_rows
    for p in [*data.snapshots, compacted]:
        assert used_index(catalog, raw, p)
        assert_same_as_full_read(catalog, raw, p, data.keys + [None])


def test_a_compaction_between_the_marker_and_the_snapshot_read(catalog):
    """Commits left unindexed, then a compaction of raw, then another commit: the readers
    read the tail from the commits' own files (the compaction adds no row), and the catch-up
    indexes each row once."""
    data = Raw(catalog, seed=13)
    data.commit(100, on_day=0)
    catch_up(catalog, SPEC)
    data.commit(100, redeliver=40, on_day=1)
    data.commit(100, redeliver=40, on_day=2)  # never indexed
    compact_raw(catalog)
    raw = data.commit(100, redeliver=40, on_day=3)
    for p in [*data.snapshots, raw.current_snapshot().parent_snapshot_id]:
        assert used_index(catalog, raw, p)
        assert_same_as_full_read(catalog, raw, p, data.keys)
    done = catch_up(catalog, SPEC)
    assert (done.rows_indexed, done.rebuilt) == (3 * 140, False)
    index_rows = catalog.load_table(SPEC.identifier).scan().to_arrow()
    raw_rows = raw.scan().to_arrow()
    assert sorted(index_rows[RAW_ID_HASH].to_pylist()) == sorted(
        hash64(raw_rows["_airbyte_raw_id"]).to_pylist()
    )


def test_a_rebuild_after_a_compaction_answers_from_the_compaction_on(catalog):
    data = Raw(catalog, seed=14)
    for i in range(3):
        data.commit(100, redeliver=20, on_day=i)
    before = data.snapshots[-1]
    raw = compact_raw(catalog)
    raw = data.commit(100, redeliver=20, on_day=4)
    done = catch_up(catalog, SPEC)  # backfill: the compacted files' rows are the compaction's
    assert done.rebuilt and done.rows_indexed == raw.scan().to_arrow().num_rows
    now = raw.current_snapshot().snapshot_id
    assert used_index(catalog, raw, now)
    assert not used_index(catalog, raw, before)  # before the compaction: raw answers
    assert_same_as_full_read(catalog, raw, now, data.keys)
    assert_same_as_full_read(catalog, raw, before, data.keys)


@pytest.mark.parametrize("hash_fn", [hash64, colliding_hash])
def test_repeated_record_ids_are_confirmed_after_compaction_and_expiry(catalog, hash_fn):
    """A candidate points at the raw commit that added it; after a compaction rewrote that
    commit's file, and even after that commit expired, the id is still confirmed (read from
    the files that hold it now), and an id raw never held is not."""
    from pyiceberg.table.update.snapshot import ExpireSnapshots

    data = Raw(catalog, seed=15)
    data.commit(100, on_day=0)
    data.commit(100, on_day=1)
    catch_up(catalog, SPEC, hash_fn=hash_fn)
    compact_raw(catalog)
    raw = data.commit(50, on_day=2, repeat_raw_id="r00000042")
    catch_up(catalog, SPEC, hash_fn=hash_fn)
    new_ids = pa.array(["r00000042", "r99999999", "nope"])
    p = raw.current_snapshot().parent_snapshot_id  # the compaction
    assert confirmed_earlier(catalog, raw, SPEC, p, new_ids, hash_fn=hash_fn).to_pylist() == [
        "r00000042"
    ]
    # The commits that added the candidates expire (their files are the compaction's now).
    with raw.transaction() as tx:
        with ExpireSnapshots(tx) as expire:
            expire.by_ids(data.snapshots[:2])
    raw = data.table()
    assert raw.snapshot_by_id(data.snapshots[0]) is None
    found = confirmed_earlier(catalog, raw, SPEC, p, new_ids, hash_fn=hash_fn)
    assert found is not None and found.to_pylist() == ["r00000042"]
