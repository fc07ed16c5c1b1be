"""Snapshot expiry (shared.maintenance): bounded metadata, and every reader of old snapshots
gives the same answer (or its documented safe superset) after an aggressive expiry."""

import datetime as dt
import random

import pyarrow as pa
import pytest

from shared import changes, key_index, maintenance
from shared.iceberg import open_catalog, write_table
from shared.key_index import KeyIndexSpec, catch_up, confirmed_earlier
from shared.settings import SettingsError, SnapshotRetention, load_settings, snapshot_retention

UTC = dt.UTC
SPEC = KeyIndexSpec("raw.events", "event_id", "_airbyte_raw_id", "event_ts")
#: As aggressive as the settings allow: the current snapshot and its parent, any age.
AGGRESSIVE = SnapshotRetention(keep_last=2, min_age_ms=0)


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


def day(n: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 1, 1, hour, tzinfo=UTC) + dt.timedelta(days=n)


class Raw:
    """raw.events written one commit per simulated day, with re-delivered keys."""

    def __init__(self, catalog, seed: int = 1):
        self.catalog = catalog
        self.rng = random.Random(seed)
        self.keys: list[str] = []
        self.serial = 0
        self.snapshots: list[int] = []

    def commit(self, n: int, on_day: int, redeliver: int = 0, raw_ids: list[str] | None = None):
        ids, stamps, rids = [], [], []
        for _ in range(n):
            key = f"{self.rng.getrandbits(64):016x}"
            self.keys.append(key)
            ids.append(key)
            stamps.append(day(on_day, self.rng.randrange(24)))
        for key in self.rng.sample(self.keys[:-n] or self.keys, min(redeliver, len(self.keys))):
            ids.append(key)
            stamps.append(day(on_day + 1))  # moved to another day
        for _ in ids:
            self.serial += 1
            rids.append(f"r{self.serial:08d}")
        if raw_ids:
            ids += [f"again-{i}" for i in range(len(raw_ids))]
            stamps += [day(on_day)] * len(raw_ids)
            rids += raw_ids
        rows = pa.table(
            {
                "event_id": ids,
                "event_ts": pa.array(stamps, pa.timestamp("us", "UTC")),
                "_airbyte_raw_id": rids,
            }
        )
        write_table(self.catalog, "raw.events", rows, mode="append")
        table = self.table()
        self.snapshots.append(table.current_snapshot().snapshot_id)
        return table

    def table(self):
        return self.catalog.load_table("raw.events")


def ids(table) -> list[int]:
    return [s.snapshot_id for s in table.metadata.snapshots]


# ---- the rule ----------------------------------------------------------------------------------


def test_retention_settings_are_validated_with_one_clear_error():
    assert snapshot_retention({}) == SnapshotRetention(16, 60 * 60 * 1000)
    assert snapshot_retention(
        {"DATA_PLATFORM_SNAPSHOT_KEEP_LAST": "5", "DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES": "0"}
    ) == SnapshotRetention(5, 0)
    for name, value in [
        ("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "1"),  # the parent of the current must stay
        ("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "many"),
        ("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "-1"),
    ]:
        with pytest.raises(SettingsError, match=name):
            snapshot_retention({name: value})


def test_a_snapshot_expires_only_beyond_the_count_and_older_than_the_age(catalog):
    data = Raw(catalog)
    for i in range(6):
        table = data.commit(10, on_day=i)
    times = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
    newest = max(times.values())
    everything_old = newest + 10_000
    # Count bound: the newest 3 stay whatever their age.
    assert (
        maintenance.expirable(table, SnapshotRetention(3, 0), everything_old) == data.snapshots[:3]
    )
    # Age bound: nothing younger than the age goes, whatever the count.
    assert maintenance.expirable(table, SnapshotRetention(2, 3_600_000), newest) == []
    # Protected ids, tags and the current snapshot never go.
    with table.manage_snapshots() as ms:
        ms.create_tag(data.snapshots[0], "kept-by-tag")
    table = data.table()
    got = maintenance.expirable(
        table, SnapshotRetention(2, 0), everything_old, protected={data.snapshots[1]}
    )
    assert got == data.snapshots[2:4]


def test_expiry_bounds_the_metadata_and_keeps_every_row(catalog):
    data = Raw(catalog)
    for i in range(12):
        data.commit(20, on_day=i)
    before = data.table().scan().to_arrow().num_rows
    result = maintenance.expire_snapshots(catalog, "raw.events", SnapshotRetention(4, 0))
    table = data.table()
    assert (result.expired, result.kept) == (8, 4)
    assert ids(table) == data.snapshots[-4:]
    assert [e.snapshot_id for e in table.metadata.snapshot_log] == data.snapshots[-4:]
    assert table.scan().to_arrow().num_rows == before  # metadata only: no row lost
    # Later appends work, and a second run has nothing to do.
    data.commit(20, on_day=12)
    assert data.table().scan().to_arrow().num_rows == before + 20
    assert maintenance.expire_snapshots(catalog, "raw.events", SnapshotRetention(5, 0)).expired == 0
    # A table that does not exist yet is no error.
    missing = maintenance.expire_snapshots(catalog, "raw.nothing", AGGRESSIVE)
    assert not missing.exists and missing.expired == 0


def test_the_age_defaults_protect_a_fresh_history(catalog, monkeypatch):
    data = Raw(catalog)
    for i in range(20):
        data.commit(5, on_day=i)
    # Defaults (16, an hour): every snapshot is seconds old, none expires.
    assert maintenance.expire_tables(catalog, ["raw.events"])[0].expired == 0
    # The benchmark's setting: age 0 through the environment.
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    assert maintenance.expire_tables(catalog, ["raw.events"])[0].expired == 4


def test_an_append_committed_during_the_expiry_is_kept(catalog, monkeypatch):
    data = Raw(catalog)
    for i in range(6):
        data.commit(10, on_day=i)
    plan = maintenance.expirable
    concurrent = []

    def planned_then_someone_appends(table, *args, **kwargs):
        got = plan(table, *args, **kwargs)
        if not concurrent:
            concurrent.append(data.commit(7, on_day=9))  # commits after the expiry's plan
        return got

    monkeypatch.setattr(maintenance, "expirable", planned_then_someone_appends)
    result = maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE)
    table = data.table()
    assert table.current_snapshot().snapshot_id == data.snapshots[-1]  # the append is current
    assert table.scan().to_arrow().num_rows == 67
    assert result.expired == 4
    assert data.snapshots[-1] in ids(table)


def test_concurrent_expiries_plan_again_and_both_finish(catalog, monkeypatch):
    data = Raw(catalog)
    for i in range(6):
        data.commit(10, on_day=i)
    plan = maintenance.expirable
    raced = []

    def another_expiry_first(table, *args, **kwargs):
        got = plan(table, *args, **kwargs)
        if not raced:
            raced.append(True)
            monkeypatch.setattr(maintenance, "expirable", plan)
            maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE)
        return got

    monkeypatch.setattr(maintenance, "expirable", another_expiry_first)
    maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE)
    assert ids(data.table()) == data.snapshots[-2:]
    assert data.table().scan().to_arrow().num_rows == 60


# ---- readers of old snapshots -------------------------------------------------------------------


def full_read_changes(table, since):
    return changes.sync_changes(table, since, "event_ts", ("event_id",))


def test_the_key_index_marker_and_its_tail_are_kept(catalog):
    """A sync killed between its raw commit and its index commit leaves the marker behind: the
    marker's snapshot and the commits after it survive any expiry, so the index still answers
    (no fallback to a full read, no rebuild)."""
    data = Raw(catalog, seed=2)
    for i in range(5):
        data.commit(50, on_day=i, redeliver=10)
        catch_up(catalog, SPEC)
    marker = data.snapshots[-1]
    for i in range(5, 10):
        raw = data.commit(50, on_day=i, redeliver=10)  # never indexed
    result = maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE)
    assert result.held_by_markers == 4 and result.expired == 4
    raw = data.table()
    assert ids(raw) == data.snapshots[4:]
    wanted = pa.table({"event_id": pa.array(data.keys + ["never"], pa.string())})
    for p in data.snapshots[4:]:
        planned = key_index.plan(catalog, raw, SPEC, p)
        assert planned is not None  # the index still answers for every kept snapshot
        indexed = key_index.earlier_versions(catalog, raw, SPEC, p, wanted, "event_ts")
        full = changes.earlier_versions(raw, p, wanted, "event_ts")
        assert sorted(map(repr, indexed.to_pylist())) == sorted(map(repr, full.to_pylist()))
    caught = catch_up(catalog, SPEC)
    assert not caught.rebuilt and caught.rows_indexed == 5 * 60
    assert int(catalog.load_table(SPEC.identifier).properties[key_index.MARKER]) != marker
    # Caught up: the marker is the current snapshot, the tail is free to expire.
    assert maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE).kept == 2


def test_repeated_record_ids_are_confirmed_after_their_snapshot_expired(catalog):
    """The raw uniqueness check confirms an index candidate on the raw commit that added it;
    that commit's snapshot expired, its files are found by P's manifest entries."""
    data = Raw(catalog, seed=3)
    for i in range(6):
        data.commit(40, on_day=i)
        catch_up(catalog, SPEC)
    maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE)
    raw = data.commit(10, on_day=7, raw_ids=["r00000003", "r00000150"])  # repeats old ids
    catch_up(catalog, SPEC)
    p = data.snapshots[-2]
    new_ids = pa.array(["r00000003", "r00000150", "r99999999"])
    found = confirmed_earlier(catalog, raw, SPEC, p, new_ids)
    assert found is not None  # answered from the index, not the fallback
    assert sorted(found.to_pylist()) == ["r00000003", "r00000150"]


def test_sync_changes_from_an_expired_snapshot_counts_every_day(catalog):
    """A sync whose pre-sync snapshot expired before it read its changes back: every day of
    the table is counted (a safe superset), never fewer than the days it changed."""
    data = Raw(catalog, seed=4)
    for i in range(6):
        data.commit(30, on_day=i, redeliver=5)
    since = data.snapshots[1]
    expected = full_read_changes(data.table(), since)
    kept_since = data.snapshots[-2]
    expected_kept = full_read_changes(data.table(), kept_since)
    maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE)
    raw = data.table()
    got = full_read_changes(raw, since)
    assert set(expected.days) <= set(got.days)
    assert set(got.days) == {day(i).date() for i in range(7)}
    # A kept pre-sync snapshot gives exactly the same answer as before the expiry.
    assert full_read_changes(raw, kept_since) == expected_kept
    assert expected_kept.moved_keys  # the data exercises the look-up as of the kept snapshot


def test_a_daily_write_that_expires_in_its_commit_survives_a_concurrent_expiry(
    catalog, monkeypatch
):
    """A day-partitioned table's write expires old snapshots in its own commit (shared.iceberg);
    when the maintenance job removed them first, the write is planned again, not failed."""
    from shared import iceberg

    def daily(n: int) -> pa.Table:
        return pa.table(
            {"event_date": pa.array([day(n).date()], pa.date32()), "events": pa.array([n])}
        )

    for n in range(6):
        write_table(catalog, "marts.daily", daily(n), mode="append", partition_by_day="event_date")
    table = catalog.load_table("marts.daily")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_KEEP_LAST", "2")
    monkeypatch.setenv("DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES", "0")
    with table.transaction() as tx:  # expire in each write's commit, as aggressively as allowed
        tx.set_properties(
            {
                "history.expire.min-snapshots-to-keep": "2",
                "history.expire.max-snapshot-age-ms": "0",
            }
        )
    planned = iceberg._expired_snapshots
    raced = []

    def maintenance_first(table, now_ms):
        ids = planned(table, now_ms + 1)
        if ids and not raced:
            raced.append(maintenance.expire_snapshots(catalog, "marts.daily", AGGRESSIVE))
        return ids

    monkeypatch.setattr(iceberg, "_expired_snapshots", maintenance_first)
    write_table(catalog, "marts.daily", daily(9), mode="append", partition_by_day="event_date")
    assert raced and raced[0].expired > 0  # the race happened
    table = catalog.load_table("marts.daily")
    assert sorted(table.scan().to_arrow()["events"].to_pylist()) == [0, 1, 2, 3, 4, 5, 9]
    assert len(table.metadata.snapshots) <= 3


def test_the_metadata_log_is_bounded_on_every_table_written(catalog):
    """The other list a metadata file carries per commit: previous metadata files, capped at 16
    (Iceberg's default, 100, was most of an expired table's metadata)."""
    data = Raw(catalog)
    for i in range(24):
        data.commit(3, on_day=i)
    table = data.table()
    assert table.properties["write.metadata.previous-versions-max"] == "16"
    assert len(table.metadata.metadata_log) == 16


def test_an_expiry_that_keeps_conflicting_gives_up_cleanly(catalog, monkeypatch):
    """Every attempt loses to a concurrent commit: one clear error after the attempts, and the
    table as it was (every snapshot, every row)."""
    from pyiceberg.exceptions import CommitFailedException

    from shared.iceberg import IcebergError

    data = Raw(catalog)
    for i in range(5):
        data.commit(10, on_day=i)

    def always_conflicts(self):
        raise CommitFailedException("another writer committed first")

    from pyiceberg.table.update.snapshot import ExpireSnapshots

    monkeypatch.setattr(ExpireSnapshots, "commit", always_conflicts)
    monkeypatch.setattr("shared.iceberg.time.sleep", lambda _s: None)
    with pytest.raises(IcebergError, match="expire snapshots of raw.events: gave up after 3"):
        maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE, attempts=3)
    assert ids(data.table()) == data.snapshots
    assert data.table().scan().to_arrow().num_rows == 50


def test_sync_changes_across_a_gap_in_the_kept_snapshots_counts_every_day(catalog):
    """Expiry keeps no unbroken run when a tag (or a writer's clock) holds an old snapshot: the
    pre-sync snapshot is kept, a later one is gone. The walk back then does not reach it, and
    every live file counts: more days, never fewer."""
    data = Raw(catalog, seed=4)
    for i in range(6):
        data.commit(30, on_day=i, redeliver=5)
    since = data.snapshots[1]
    data.table().manage_snapshots().create_tag(since, "audit").commit()
    before = full_read_changes(data.table(), since)
    maintenance.expire_snapshots(catalog, "raw.events", AGGRESSIVE)
    raw = data.table()
    kept = {s.snapshot_id for s in raw.metadata.snapshots}
    assert since in kept and not set(data.snapshots[2:-2]) & kept  # the gap
    assert set(before.days) <= set(full_read_changes(raw, since).days)
