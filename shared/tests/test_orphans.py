"""Orphan-file clean-up (shared.orphans): what no metadata references goes once old enough,
nothing referenced, young or outside the table ever goes, and the table reads the same rows."""

import datetime as dt
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import maintenance, orphans
from shared.compaction import MIN_INPUT_FILES, compact_small_files
from shared.iceberg import open_catalog, write_table
from shared.settings import SettingsError, SnapshotRetention, load_settings, orphan_min_age_hours

UTC = dt.UTC
#: As aggressive as the settings allow (snapshot expiry).
AGGRESSIVE = SnapshotRetention(keep_last=2, min_age_ms=0)
AGE = dt.timedelta(days=3)
FOUR_DAYS = 4 * 24 * 3600


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


def later(days: float = 4) -> dt.datetime:
    return dt.datetime.now(UTC) + dt.timedelta(days=days)


def rows(start: int, n: int = 3, day: int = 1) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "name": [f"n{i}" for i in range(start, start + n)],
            "day": pa.array([dt.date(2026, 1, day)] * n, pa.date32()),
        }
    )


def content(table) -> list[tuple]:
    data = table.scan().to_arrow()
    names = sorted(data.column_names)
    return sorted(zip(*(data[c].to_pylist() for c in names), strict=True), key=repr)


def local(uri: str) -> Path:
    return Path(orphans.path_key(uri))


def files_under(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def table_dir(table) -> Path:
    return local(table.metadata.location)


def planned_files(table) -> list[Path]:
    return [local(t.file.file_path) for t in table.scan().plan_files()]


def age(paths, seconds: int = FOUR_DAYS) -> None:
    """Set the modification time of ``paths`` back by ``seconds`` (files written long ago)."""
    for p in paths:
        st = os.stat(p)
        os.utime(p, (st.st_atime - seconds, st.st_mtime - seconds))


def killed_write(table, name: str | None = None, data: pa.Table | None = None) -> Path:
    """A data file a write left under the table's data/ folder without committing it."""
    path = table_dir(table) / "data" / (name or f"00000-0-{uuid.uuid4()}.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data if data is not None else rows(900), path)
    return path


def history_with_compaction(catalog, identifier="raw.users"):
    """MIN_INPUT_FILES appends, a compaction, one more append, then an aggressive expiry: the
    compaction's inputs are listed by expired snapshots only."""
    for k in range(MIN_INPUT_FILES):
        write_table(catalog, identifier, rows(k * 10), mode="append")
    inputs = planned_files(catalog.load_table(identifier))
    assert compact_small_files(catalog, identifier).files_replaced == MIN_INPUT_FILES
    write_table(catalog, identifier, rows(1000), mode="append")
    expired = maintenance.expire_snapshots(
        catalog, identifier, AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    assert expired.expired == MIN_INPUT_FILES
    return inputs


def test_compaction_inputs_are_deleted_once_old_enough_never_before(catalog):
    inputs = history_with_compaction(catalog)
    table = catalog.load_table("raw.users")
    before = content(table)
    on_disk = files_under(table_dir(table))

    # Now: every file is younger than 3 days: nothing is deleted, whatever is unreferenced.
    young = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert young.orphans == () and young.deleted == 0
    assert young.kept_for_readers >= MIN_INPUT_FILES  # and a reader may still read them
    assert files_under(table_dir(table)) == on_disk

    # Four days later: the compaction's inputs, and the expired snapshots' manifests, go.
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert done.deleted == len(done.orphans) > MIN_INPUT_FILES
    assert not any(p.exists() for p in inputs)
    assert {str(local(u)) for u in done.orphans} >= {str(p) for p in inputs}
    assert done.deleted_bytes == sum(on_disk[str(local(u))] for u in done.orphans)
    assert all(not local(u).exists() for u in done.orphans)
    # Every row, read again through a fresh load of the table.
    assert content(catalog.load_table("raw.users")) == before
    for f in planned_files(catalog.load_table("raw.users")):
        assert f.exists()
    # The current metadata file and every file its log names stay.
    table = catalog.load_table("raw.users")
    assert local(table.metadata_location).exists()
    assert all(local(e.metadata_file).exists() for e in table.metadata.metadata_log)

    # Nothing is left to do.
    again = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert again.orphans == () and again.files == done.files - done.deleted


def test_a_reader_that_planned_a_recent_version_keeps_its_files(catalog):
    """Files old enough but listed by a version of the table current within the age are kept:
    a reader (a dbt run's DuckDB views) may still read what it planned from it."""
    for k in range(MIN_INPUT_FILES):
        write_table(catalog, "raw.users", rows(k * 10), mode="append")
    planned_by_reader = planned_files(catalog.load_table("raw.users"))
    compact_small_files(catalog, "raw.users")
    write_table(catalog, "raw.users", rows(1000), mode="append")
    maintenance.expire_snapshots(
        catalog, "raw.users", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    table = catalog.load_table("raw.users")
    age(Path(p) for p in files_under(table_dir(table)))  # every file written 4 days ago

    kept = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert kept.kept_for_readers >= len(planned_by_reader)
    assert all(p.exists() for p in planned_by_reader)
    assert not {str(local(u)) for u in kept.orphans} & {str(p) for p in planned_by_reader}
    assert pq.ParquetDataset([str(p) for p in planned_by_reader]).read().num_rows == 3 * 8


def test_a_daily_partition_rerun_old_file_is_removed(catalog):
    write_table(catalog, "marts.daily", rows(0, day=1), partition_by_day="day")
    write_table(catalog, "marts.daily", rows(10, day=2), mode="append", partition_by_day="day")
    first_day1 = [
        p for p in planned_files(catalog.load_table("marts.daily")) if "2026-01-01" in str(p)
    ]
    assert len(first_day1) == 1
    write_table(
        catalog, "marts.daily", rows(20, day=1), overwrite_filter="day = '2026-01-01'",
        partition_by_day="day",
    )  # fmt: skip
    write_table(catalog, "marts.daily", rows(30, day=3), mode="append", partition_by_day="day")
    maintenance.expire_snapshots(
        catalog, "marts.daily", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    table = catalog.load_table("marts.daily")
    before = content(table)
    live = planned_files(table)

    done = orphans.remove_orphan_files(catalog, "marts.daily", older_than=AGE, now=later())
    assert not first_day1[0].exists()
    assert str(first_day1[0]) in {str(local(u)) for u in done.orphans}
    assert all(p.exists() for p in live)
    assert content(catalog.load_table("marts.daily")) == before
    assert sorted({r[0] for r in before}) == [dt.date(2026, 1, d) for d in (1, 2, 3)]


def test_a_table_whose_name_starts_with_this_ones_is_never_touched(catalog):
    write_table(catalog, "raw.event", rows(0))
    write_table(catalog, "raw.events", rows(0))
    write_table(catalog, "raw.event", rows(10))  # the first file of raw.event: unreferenced
    maintenance.expire_snapshots(
        catalog, "raw.event", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    write_table(catalog, "raw.event", rows(20))
    event, events = catalog.load_table("raw.event"), catalog.load_table("raw.events")
    assert str(table_dir(events)).startswith(str(table_dir(event)))  # the trap is there
    killed_write(events)  # an orphan of raw.events: not raw.event's to delete
    neighbour = files_under(table_dir(events))
    age(Path(p) for p in neighbour)
    neighbour = files_under(table_dir(events))

    done = orphans.remove_orphan_files(catalog, "raw.event", older_than=AGE, now=later())
    assert done.deleted > 0
    assert all(str(table_dir(event)) + os.sep in str(local(u)) for u in done.orphans)
    assert files_under(table_dir(events)) == neighbour


def test_a_killed_write_younger_than_the_age_survives_an_older_one_goes(catalog):
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    recent = killed_write(table)
    old = killed_write(table)
    stale_metadata = table_dir(table) / "metadata" / f"00009-{uuid.uuid4()}.metadata.json"
    stale_metadata.write_text("{}")  # a commit that failed after writing its metadata file
    age([old, stale_metadata])
    before = content(table)

    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert recent.exists()
    assert not old.exists() and not stale_metadata.exists()
    assert sorted(str(local(u)) for u in done.orphans) == sorted([str(old), str(stale_metadata)])
    assert done.too_young == 1 and done.too_young_bytes == recent.stat().st_size
    assert content(catalog.load_table("raw.users")) == before


def test_hidden_files_are_never_orphans(catalog):
    write_table(catalog, "raw.users", rows(0))
    folder = table_dir(catalog.load_table("raw.users"))
    hidden = [folder / "data" / ".part-0.parquet.crc", folder / "_spark_metadata" / "0"]
    for p in hidden:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    age(hidden)
    orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert all(p.exists() for p in hidden)


def test_a_dry_run_deletes_nothing_and_reports_the_same_list(catalog):
    history_with_compaction(catalog)
    killed_write(catalog.load_table("raw.users"))
    folder = table_dir(catalog.load_table("raw.users"))
    on_disk = files_under(folder)

    dry = orphans.remove_orphan_files(
        catalog, "raw.users", older_than=AGE, now=later(), dry_run=True
    )
    assert dry.dry_run and dry.deleted == 0 and len(dry.orphans) > MIN_INPUT_FILES
    assert files_under(folder) == on_disk
    assert dry.orphan_bytes == sum(on_disk[str(local(u))] for u in dry.orphans)

    real = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert real.orphans == dry.orphans
    assert real.deleted == len(dry.orphans) and real.deleted_bytes == dry.orphan_bytes
    assert set(files_under(folder)) == set(on_disk) - {str(local(u)) for u in dry.orphans}


def test_a_commit_between_planning_and_deleting_keeps_its_files(catalog):
    """A writer commits, between the clean-up's listing and its deletes, a file it wrote long
    ago (``add_files``): the clean-up checks the table again and keeps it."""
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    slow = killed_write(table, data=rows(500))
    dead = killed_write(table)
    age([slow, dead])

    def listing_then_commit(io, location):
        listed = orphans.list_files(io, location)
        if location.endswith("/metadata"):  # the last folder listed
            catalog.load_table("raw.users").add_files([str(slow)])
        return listed

    done = orphans.remove_orphan_files(
        catalog, "raw.users", older_than=AGE, lister=listing_then_commit
    )
    assert done.referenced_meanwhile == 1
    assert slow.exists() and not dead.exists()
    assert [str(local(u)) for u in done.orphans] == [str(dead)]
    ids = sorted(catalog.load_table("raw.users").scan().to_arrow()["id"].to_pylist())
    assert ids == [0, 1, 2, 500, 501, 502]


def test_two_overlapping_cleanups_delete_each_file_once_and_do_not_fail(catalog):
    history_with_compaction(catalog)
    other: list = []

    def listing_then_another_cleanup(io, location):
        listed = orphans.list_files(io, location)
        if location.endswith("/metadata"):  # the last folder listed
            other.append(
                orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
            )
        return listed

    first = orphans.remove_orphan_files(
        catalog, "raw.users", older_than=AGE, now=later(), lister=listing_then_another_cleanup
    )
    assert other[0].deleted > 0
    assert first.orphans == other[0].orphans
    assert first.deleted == 0 and first.already_gone == other[0].deleted
    assert len(catalog.load_table("raw.users").scan().to_arrow()) == 3 * MIN_INPUT_FILES + 3


def test_a_missing_table_is_nothing_to_do(catalog):
    result = orphans.remove_orphan_files(catalog, "raw.never_synced", older_than=AGE)
    assert result.exists is False and result.deleted == 0
    assert result.as_metadata()["exists"] is False


def test_a_file_that_cannot_be_deleted_fails_naming_the_table_after_the_others(
    catalog, monkeypatch
):
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    stuck, other = killed_write(table, "a-stuck.parquet"), killed_write(table, "b-other.parquet")
    age([stuck, other])
    from pyiceberg.io.pyarrow import PyArrowFileIO

    real_delete = PyArrowFileIO.delete

    def delete(self, location):
        if "a-stuck" in str(location):
            raise PermissionError("access denied")
        return real_delete(self, location)

    monkeypatch.setattr(PyArrowFileIO, "delete", delete)
    with pytest.raises(orphans.OrphanCleanupError, match="raw.users: 1 of 2"):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert stuck.exists() and not other.exists()


def test_the_min_age_setting():
    assert orphan_min_age_hours({}) == 72
    assert orphan_min_age_hours({"DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS": "24"}) == 24
    assert orphan_min_age_hours({"DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS": "168"}) == 168
    for bad in ("0", "1", "23", "-1", "three days", "1e9"):
        with pytest.raises(
            SettingsError, match=r"DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS=.* from 24 to .*in progress"
        ):
            orphan_min_age_hours({"DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS": bad})


# ---- deleting in batches (DeleteObjects), with a fake s3fs filesystem --------------------------


class FakeS3:
    """A stand-in for s3fs's filesystem: ``call_s3("delete_objects", ...)`` answers as S3 does
    (a key that does not exist is reported deleted) over ``objects``, except for the keys in
    ``errors`` (key -> S3 error code, reported in the response's ``Errors``), the keys in
    ``unanswered`` (left out of the response), and ``fail_batch`` (the n-th request raises)."""

    def __init__(self, objects, errors=None, unanswered=(), fail_batch=None):
        self.objects = set(objects)  # "bucket/key"
        self.errors = dict(errors or {})
        self.unanswered = set(unanswered)
        self.fail_batch = fail_batch
        self.requests: list[tuple[str, list[str]]] = []
        self.invalidated: set[str] = set()

    def call_s3(self, method, **kwargs):
        assert method == "delete_objects" and kwargs["Delete"]["Quiet"] is False
        bucket, keys = kwargs["Bucket"], [o["Key"] for o in kwargs["Delete"]["Objects"]]
        assert len(keys) <= 1000  # S3 refuses more
        self.requests.append((bucket, keys))
        if self.fail_batch is not None and len(self.requests) == self.fail_batch[0]:
            raise self.fail_batch[1]
        deleted, errors = [], []
        for key in keys:
            if f"{bucket}/{key}" in self.unanswered:
                continue
            if f"{bucket}/{key}" in self.errors:
                code = self.errors[f"{bucket}/{key}"]
                errors.append({"Key": key, "Code": code, "Message": f"{code} message"})
                continue
            self.objects.discard(f"{bucket}/{key}")
            deleted.append({"Key": key})
        return {"Deleted": deleted, "Errors": errors} if errors else {"Deleted": deleted}

    def invalidate_cache(self, path=None):
        self.invalidated.add(path)


class FakeFsspecIO:
    """A stand-in for pyiceberg's ``FsspecFileIO``: ``get_fs`` gives the fake S3 filesystem;
    ``delete`` (one file) is what a per-file delete would call, recorded."""

    def __init__(self, fs):
        self.fs = fs
        self.single: list[str] = []

    def get_fs(self, scheme, hostname=None):
        assert scheme in orphans.S3_SCHEMES
        return self.fs

    def delete(self, uri):
        self.single.append(uri)
        os.remove(uri)


def test_delete_files_on_s3_sends_one_request_per_1000_files():
    uris = [f"s3://lake/t/data/{i:05}.parquet" for i in range(2500)]
    fs = FakeS3(u.removeprefix("s3://") for u in uris)
    done = orphans.delete_files(FakeFsspecIO(fs), uris)
    assert [len(keys) for _, keys in fs.requests] == [1000, 1000, 500]
    assert {b for b, _ in fs.requests} == {"lake"}
    assert fs.requests[0][1][0] == "t/data/00000.parquet"  # the key, without the bucket
    assert sorted(done.deleted) == sorted(uris) and done.gone == [] and done.failed == {}
    assert fs.objects == set()
    assert "lake/t/data" in fs.invalidated  # s3fs's cached listing of the folder is dropped


def test_delete_files_maps_each_keys_outcome_and_deletes_the_others():
    uris = [f"s3://lake/t/data/{name}" for name in ("a", "denied", "gone", "nosuch", "lost", "z")]
    fs = FakeS3(
        {"lake/t/data/a", "lake/t/data/denied", "lake/t/data/nosuch", "lake/t/data/lost",
         "lake/t/data/z"},  # "gone" is not there: S3 reports it deleted all the same
        errors={"lake/t/data/denied": "AccessDenied", "lake/t/data/nosuch": "NoSuchKey"},
        unanswered={"lake/t/data/lost"},
    )  # fmt: skip
    done = orphans.delete_files(FakeFsspecIO(fs), uris, batch_size=4)
    assert len(fs.requests) == 2
    assert sorted(done.deleted) == ["s3://lake/t/data/a", "s3://lake/t/data/gone",
                                    "s3://lake/t/data/z"]  # fmt: skip
    assert done.gone == ["s3://lake/t/data/nosuch"]
    assert done.failed == {
        "s3://lake/t/data/denied": "AccessDenied: AccessDenied message",
        "s3://lake/t/data/lost": "not in the DeleteObjects response",
    }
    assert fs.objects == {"lake/t/data/denied", "lake/t/data/nosuch", "lake/t/data/lost"}


def test_a_failed_delete_request_fails_its_batch_only():
    uris = [f"s3a://lake/t/data/{i}" for i in range(5)]
    fs = FakeS3((u.removeprefix("s3a://") for u in uris),
                fail_batch=(1, PermissionError("Access Denied")))  # fmt: skip
    done = orphans.delete_files(FakeFsspecIO(fs), uris, batch_size=2)
    assert [len(keys) for _, keys in fs.requests] == [2, 2, 1]
    assert sorted(done.failed) == uris[:2]
    assert all("Access Denied" in why for why in done.failed.values())
    assert sorted(done.deleted) == uris[2:] and done.gone == []
    # The bucket itself gone: so are its files, as a per-file delete would say.
    fs = FakeS3((), fail_batch=(1, FileNotFoundError("The specified bucket does not exist")))
    done = orphans.delete_files(FakeFsspecIO(fs), uris[:2])
    assert done.gone == uris[:2] and done.deleted == [] and done.failed == {}


def test_delete_files_sends_one_request_per_bucket():
    uris = ["s3://one/t/a", "s3://two/t/b", "s3://one/t/c"]
    fs = FakeS3({"one/t/a", "two/t/b", "one/t/c"})
    done = orphans.delete_files(FakeFsspecIO(fs), uris)
    assert sorted(fs.requests) == [("one", ["t/a", "t/c"]), ("two", ["t/b"])]
    assert sorted(done.deleted) == sorted(uris)


def test_delete_files_deletes_local_files_one_by_one(tmp_path):
    kept, gone = tmp_path / "a.parquet", tmp_path / "b.parquet"
    kept.write_bytes(b"x")
    io = FakeFsspecIO(FakeS3(()))
    done = orphans.delete_files(io, [str(kept), str(gone)])
    assert io.single == [str(kept), str(gone)] and io.fs.requests == []
    assert done.deleted == [str(kept)] and done.gone == [str(gone)] and done.failed == {}
    assert not kept.exists()
    with pytest.raises(ValueError, match="batch_size must be from 1 to 1000"):
        orphans.delete_files(io, [], batch_size=1001)


# ---- on S3: a real S3-compatible server (the stand-in for Garage), real listing and deletes --

S3_KEY, S3_SECRET = "GKtestaccess", "test-secret-for-rclone"  # pragma: allowlist secret


@pytest.fixture
def s3_catalog(tmp_path):
    """A catalog whose warehouse is a bucket of ``rclone serve s3``, through prod's FileIO."""
    from pyiceberg.catalog import load_catalog

    from tests.s3_server import RcloneS3Server

    (tmp_path / "s3" / "lakehouse").mkdir(parents=True)
    prod = {"DATA_PLATFORM_ENV": "prod", "ICEBERG_REST_URI": "http://127.0.0.1:1",
            "GARAGE_S3_ENDPOINT": "http://127.0.0.1:1"}  # fmt: skip
    with RcloneS3Server(tmp_path / "s3", S3_KEY, S3_SECRET) as server:
        yield (
            load_catalog(
                "s3test",
                type="sql",
                uri=f"sqlite:///{tmp_path / 'catalog.db'}",
                warehouse="s3://lakehouse/warehouse",
                **{
                    "s3.endpoint": server.endpoint,
                    "s3.access-key-id": S3_KEY,
                    "s3.secret-access-key": S3_SECRET,
                    "s3.region": "garage",
                    "py-io-impl": load_settings(prod).catalog_properties()["py-io-impl"],
                },
            ),
            tmp_path / "s3",
        )


@pytest.mark.slow
def test_on_s3_the_orphans_are_listed_and_deleted_through_the_object_store(s3_catalog):
    catalog, root = s3_catalog
    for k in range(3):  # each overwrite leaves the previous file to the expired snapshots
        write_table(catalog, "raw.event", rows(k * 10))
    write_table(catalog, "raw.events", rows(0))
    maintenance.expire_snapshots(
        catalog, "raw.event", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    table = catalog.load_table("raw.event")
    assert table.io.__class__.__name__ == "FsspecFileIO"  # prod's
    table.io.new_output(table.metadata.location + "/data/killed-write.parquet").create().write(b"x")
    bucket_events = root / "lakehouse" / "warehouse" / "raw" / "events"
    neighbour = files_under(bucket_events)
    before = content(table)

    dry = orphans.remove_orphan_files(
        catalog, "raw.event", older_than=AGE, now=later(), dry_run=True
    )
    assert all(u.startswith("s3://lakehouse/warehouse/raw/event/") for u in dry.orphans)
    assert any(u.endswith("/data/killed-write.parquet") for u in dry.orphans)
    # Two overwritten data files, the killed write, the expired snapshots' manifest lists.
    data = [u for u in dry.orphans if u.endswith(".parquet")]
    assert len(data) == 3
    done = orphans.remove_orphan_files(catalog, "raw.event", older_than=AGE, now=later())
    assert done.orphans == dry.orphans and done.deleted == len(dry.orphans)
    for u in done.orphans:
        assert not (root / u.removeprefix("s3://")).exists()
    assert files_under(bucket_events) == neighbour
    assert content(catalog.load_table("raw.event")) == before
    # Listed again through the store: nothing left, the live files all there.
    again = orphans.remove_orphan_files(catalog, "raw.event", older_than=AGE, now=later())
    assert again.orphans == () and again.files == done.files - done.deleted


@pytest.mark.slow
def test_on_s3_orphans_are_deleted_in_batches_a_denied_file_fails_the_run(s3_catalog, monkeypatch):
    """More than one ``DeleteObjects`` batch against the real server (batches of 3 rather than
    1,000 files); a key the store refuses (injected in the response: the server has no
    permissions) is reported, the others are deleted, the live files stay."""
    import s3fs

    catalog, root = s3_catalog
    for k in range(3):
        write_table(catalog, "raw.event", rows(k * 10))
    maintenance.expire_snapshots(
        catalog, "raw.event", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    table = catalog.load_table("raw.event")
    for i in range(6):
        table.io.new_output(f"{table.metadata.location}/data/killed-{i}.parquet").create().write(
            b"x"
        )
    before = content(table)
    planned = orphans.remove_orphan_files(
        catalog, "raw.event", older_than=AGE, now=later(), dry_run=True
    ).orphans
    assert len(planned) >= 10
    denied = next(u for u in planned if u.endswith("/killed-3.parquet"))
    denied_key = denied.removeprefix("s3://lakehouse/")
    requests: list[list[str]] = []
    real_call = s3fs.S3FileSystem.call_s3

    def call_s3(self, method, *args, **kwargs):
        if method != "delete_objects":
            return real_call(self, method, *args, **kwargs)
        keys = [o["Key"] for o in kwargs["Delete"]["Objects"]]
        requests.append(keys)
        if denied_key not in keys:
            return real_call(self, method, *args, **kwargs)
        others = {**kwargs["Delete"], "Objects": [{"Key": k} for k in keys if k != denied_key]}
        response = real_call(self, method, *args, **{**kwargs, "Delete": others})
        error = {"Key": denied_key, "Code": "AccessDenied", "Message": "Access Denied"}
        return {**response, "Errors": [*response.get("Errors", []), error]}

    monkeypatch.setattr(s3fs.S3FileSystem, "call_s3", call_s3)
    monkeypatch.setattr(orphans, "DELETE_BATCH", 3)
    with pytest.raises(orphans.OrphanCleanupError, match=f"raw.event: 1 of {len(planned)} "):
        orphans.remove_orphan_files(catalog, "raw.event", older_than=AGE, now=later())
    assert len(requests) == -(-len(planned) // 3) and all(len(r) <= 3 for r in requests)
    assert sorted(f"s3://lakehouse/{k}" for r in requests for k in r) == sorted(planned)
    for u in planned:
        assert (root / u.removeprefix("s3://")).exists() == (u == denied)
    assert content(catalog.load_table("raw.event")) == before

    denied_key = None  # the store allows it now: the next run deletes what is left
    again = orphans.remove_orphan_files(catalog, "raw.event", older_than=AGE, now=later())
    assert again.orphans == (denied,) and again.deleted == 1 and again.deleted_bytes == 1
    assert not (root / denied.removeprefix("s3://")).exists()
    assert content(catalog.load_table("raw.event")) == before


def test_unreadable_metadata_deletes_nothing_and_names_the_table(catalog):
    """A manifest list that cannot be read may reference any file: nothing is deleted."""
    write_table(catalog, "raw.users", rows(0), mode="append")
    write_table(catalog, "raw.users", rows(10), mode="append")
    table = catalog.load_table("raw.users")
    dead = killed_write(table)
    age([dead])
    local(table.metadata.snapshots[0].manifest_list).unlink()  # lost, say, by a bad copy
    on_disk = files_under(table_dir(table))
    with pytest.raises(orphans.OrphanCleanupError, match="raw.users: could not .* nothing deleted"):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert files_under(table_dir(table)) == on_disk


@pytest.mark.slow
def test_on_s3_pyarrows_listing_and_fsspecs_agree(s3_catalog):
    """The pyarrow branch of the listing (``FileSelector``, PyArrowFileIO) names the same files,
    sizes and times as fsspec's on the same bucket: either FileIO can clean a table."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    catalog, _ = s3_catalog
    write_table(catalog, "raw.event", rows(0))
    write_table(catalog, "raw.events", rows(0))
    table = catalog.load_table("raw.event")
    arrow_io = PyArrowFileIO({k: v for k, v in table.io.properties.items() if k != "py-io-impl"})
    by_fsspec = orphans.list_files(table.io, table.metadata.location)
    by_arrow = orphans.list_files(arrow_io, table.metadata.location)
    assert by_arrow.keys() == by_fsspec.keys() and len(by_arrow) >= 4
    for key, f in by_arrow.items():
        assert f.uri == by_fsspec[key].uri and f.uri.startswith("s3://lakehouse/")
        assert f.size == by_fsspec[key].size
        # The server lists some just-written objects to pyarrow with no time (the epoch):
        # taken as unknown, never old enough, never as 1970.
        if f.mtime_ms != orphans.UNKNOWN_MTIME_MS:
            assert abs(f.mtime_ms - by_fsspec[key].mtime_ms) < 2000
    assert not any("/raw/events/" in k for k in by_arrow)


# ---- a location that holds other tables' folders ----------------------------------------------


def warehouse_of(catalog) -> Path:
    return Path(catalog.properties["warehouse"])


def test_a_table_at_a_folder_holding_other_tables_deletes_none_of_their_files(catalog):
    """A table created (by hand, by another engine) at ``<warehouse>/raw``: only its own
    ``data/`` and ``metadata/`` are listed, never ``raw.users``'s folder beside them."""
    write_table(catalog, "raw.users", rows(0))
    users = catalog.load_table("raw.users")
    catalog.create_namespace_if_not_exists("scratch")
    wide = catalog.create_table(
        "scratch.wide", schema=users.schema(), location=str(warehouse_of(catalog) / "raw")
    )
    dead = killed_write(wide)  # an orphan of scratch.wide's own: still cleaned
    age(Path(p) for p in files_under(warehouse_of(catalog)))
    theirs = files_under(table_dir(users))
    before = content(users)

    done = orphans.remove_orphan_files(catalog, "scratch.wide", older_than=AGE)
    assert [str(local(u)) for u in done.orphans] == [str(dead)] and not dead.exists()
    assert files_under(table_dir(users)) == theirs
    assert content(catalog.load_table("raw.users")) == before


@pytest.mark.parametrize("where", ["warehouse", "above"])
def test_a_location_at_or_above_the_warehouse_is_refused_nothing_deleted(catalog, where):
    write_table(catalog, "raw.users", rows(0))
    wh = warehouse_of(catalog)
    location = wh if where == "warehouse" else wh.parent
    catalog.create_namespace_if_not_exists("scratch")
    catalog.create_table("scratch.wide", schema=rows(0).schema, location=str(location))
    age(Path(p) for p in files_under(location))
    on_disk = files_under(location)
    with pytest.raises(orphans.OrphanCleanupError, match="scratch.wide: .*warehouse.*nothing del"):
        orphans.remove_orphan_files(catalog, "scratch.wide", older_than=AGE)
    assert files_under(location) == on_disk


def test_a_table_nested_in_this_ones_folders_is_refused_nothing_deleted(catalog):
    """``raw.data`` lives at ``<warehouse>/raw/data``: the ``data/`` folder of a table at
    ``<warehouse>/raw``. Its metadata in the listing says so: nothing is deleted."""
    write_table(catalog, "raw.data", rows(0))
    catalog.create_namespace_if_not_exists("scratch")
    catalog.create_table(
        "scratch.wide", schema=rows(0).schema, location=str(warehouse_of(catalog) / "raw")
    )
    age(Path(p) for p in files_under(warehouse_of(catalog)))
    on_disk = files_under(warehouse_of(catalog))
    with pytest.raises(orphans.OrphanCleanupError, match="another table under this one"):
        orphans.remove_orphan_files(catalog, "scratch.wide", older_than=AGE)
    assert files_under(warehouse_of(catalog)) == on_disk
    assert len(catalog.load_table("raw.data").scan().to_arrow()) == 3


@pytest.mark.parametrize(
    ("location", "warehouse"),
    [
        ("s3://lakehouse", "s3://lakehouse/warehouse"),
        ("s3://lakehouse/", None),
        ("s3a://lakehouse/warehouse", None),  # a bucket's top folder, whatever the warehouse
        ("s3://lakehouse/warehouse", "s3://lakehouse/warehouse/"),
        ("s3://lakehouse/a/b", "s3a://lakehouse/a/b/warehouse"),  # above it
        ("/", None),
        ("/srv", None),
        ("/srv/platform/warehouse", "/srv/platform/warehouse"),
    ],
)
def test_locations_that_hold_other_tables_are_refused(location, warehouse):
    with pytest.raises(orphans.OrphanCleanupError, match="ns.t: its location"):
        orphans.check_location("ns.t", location, warehouse)


@pytest.mark.parametrize(
    ("location", "warehouse"),
    [
        ("s3://lakehouse/warehouse/raw/users", "s3://lakehouse/warehouse"),
        ("s3://lakehouse/warehouse/raw", "lakehouse"),  # a REST warehouse name: not a location
        ("s3://lakehouse/other/place", "s3://lakehouse/warehouse"),
        ("/srv/platform/warehouse/raw/users", "/srv/platform/warehouse"),
    ],
)
def test_table_locations_are_accepted(location, warehouse):
    orphans.check_location("ns.t", location, warehouse)


def test_a_listing_that_names_the_live_files_differently_deletes_nothing(catalog):
    """A store whose listing spells paths differently from the metadata (here: encoded): the
    table's own live files would all look unreferenced. Its current files missing from the
    listing stop the clean-up."""
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    dead = killed_write(table)
    age(Path(p) for p in files_under(table_dir(table)))
    on_disk = files_under(table_dir(table))

    def encoded(io, location):
        return {
            k.replace("/data/", "/d%61ta/"): f for k, f in orphans.list_files(io, location).items()
        }

    with pytest.raises(orphans.OrphanCleanupError, match="raw.users: 1 files of its current"):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, lister=encoded)
    assert files_under(table_dir(table)) == on_disk and dead.exists()

    def without_metadata(io, location):
        return {k: f for k, f in orphans.list_files(io, location).items() if "metadata" not in k}

    with pytest.raises(orphans.OrphanCleanupError, match="name files differently"):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, lister=without_metadata)
    assert files_under(table_dir(table)) == on_disk


def test_a_data_path_property_under_the_location_is_listed_one_outside_never(catalog):
    """``write.data.path`` under the location: its files are the table's (listed, cleaned);
    outside it: a folder perhaps shared with other tables, never listed."""
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    inside = f"{table.metadata.location}/files"
    with table.transaction() as tx:
        tx.set_properties({"write.data.path": inside})
    folders = orphans.table_folders(catalog.load_table("raw.users").metadata)
    assert {local(r) for r in folders.roots} == {
        table_dir(table) / "data",
        table_dir(table) / "metadata",
        table_dir(table) / "files",
    }
    with table.transaction() as tx:
        tx.set_properties({"write.data.path": str(warehouse_of(catalog) / "shared-data")})
    folders = orphans.table_folders(catalog.load_table("raw.users").metadata)
    assert {local(r) for r in folders.roots} == {
        table_dir(table) / "data",
        table_dir(table) / "metadata",
    }


def test_a_reader_of_a_version_older_than_the_metadata_log_keeps_its_files(catalog):
    """A reader planned the table, then more commits than the metadata log holds (16) came,
    each expiring the old snapshots (a backfill's overwrites): no version in the current log
    names what the reader planned, but the versions written within the age do."""
    write_table(catalog, "raw.users", rows(0))
    first = catalog.load_table("raw.users")
    planned_by_reader = planned_files(first)
    soon = int(later(0.01).timestamp() * 1000)
    for k in range(1, 11):  # 20 commits: an overwrite and an expiry each
        write_table(catalog, "raw.users", rows(k * 10))
        maintenance.expire_snapshots(catalog, "raw.users", AGGRESSIVE, now_ms=soon)
    table = catalog.load_table("raw.users")
    logged = {local(e.metadata_file) for e in table.metadata.metadata_log}
    assert len(logged) == 16 and local(first.metadata_location) not in logged
    # What the first version wrote, 4 days ago; the versions since are recent.
    old_files = [
        *planned_by_reader,
        local(first.metadata_location),
        local(first.current_snapshot().manifest_list),
        *(local(m.manifest_path) for m in first.current_snapshot().manifests(first.io)),
    ]
    age(old_files)

    kept = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert all(p.exists() for p in planned_by_reader)
    assert kept.kept_for_readers >= len(planned_by_reader)
    assert pq.ParquetDataset([str(p) for p in planned_by_reader]).read().num_rows == 3

    # Once every version naming them is older than the age, they go.
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert not any(p.exists() for p in old_files)
    assert {str(p) for p in old_files} <= {str(local(u)) for u in done.orphans}
    assert content(catalog.load_table("raw.users")) == content(table)


def test_a_recent_metadata_file_that_cannot_be_read_is_skipped(catalog):
    """A metadata file written within the age that is no table version (a failed or
    half-written commit's) is not read as one: the clean-up goes on, and keeps it (young)."""
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    half = table_dir(table) / "metadata" / f"00007-{uuid.uuid4()}.metadata.json"
    half.write_text('{"format-version": 2, "table-uu')
    dead = killed_write(table)
    age([dead])
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert [str(local(u)) for u in done.orphans] == [str(dead)]
    assert half.exists() and done.too_young == 1


def test_a_file_listed_without_a_time_is_never_old_enough(catalog):
    """A store that lists a file with no modification time (the epoch): its age is unknown,
    and it is kept (counted as too young), never taken as written in 1970."""
    import pyarrow.fs as pafs

    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    timeless = killed_write(table)
    age([timeless])

    class EpochFS:  # the local listing, but the store gives this file no time
        def get_file_info(self, selector):
            infos = pafs.LocalFileSystem().get_file_info(selector)
            return [
                pafs.FileInfo(i.path, i.type, size=i.size, mtime_ns=0)
                if i.path == str(timeless) else i
                for i in infos
            ]  # fmt: skip

    class EpochIO:
        def fs_by_scheme(self, scheme, netloc):
            return EpochFS()

    listed = orphans.list_files(EpochIO(), f"{table.metadata.location}/data")
    assert listed[str(timeless)].mtime_ms == orphans.UNKNOWN_MTIME_MS

    def epoch(io, location):
        return orphans.list_files(EpochIO(), location)

    done = orphans.remove_orphan_files(
        catalog, "raw.users", older_than=AGE, now=later(), lister=epoch
    )
    assert timeless.exists() and done.orphans == () and done.too_young == 1


def test_a_snapshot_only_on_a_branch_or_a_tag_keeps_its_files(catalog):
    """Every snapshot the metadata holds counts, not only the current one: a branch's own
    append and a tagged snapshot that main overwrote keep their files."""
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    tagged = table.current_snapshot().snapshot_id
    tagged_files = planned_files(table)
    table.manage_snapshots().create_tag(tagged, "release").create_branch(tagged, "audit").commit()
    catalog.load_table("raw.users").append(rows(100, n=2), branch="audit")
    on_branch = catalog.load_table("raw.users").metadata.refs["audit"].snapshot_id
    branch_files = [
        local(t.file.file_path)
        for t in catalog.load_table("raw.users").scan(snapshot_id=on_branch).plan_files()
    ]
    write_table(catalog, "raw.users", rows(10))  # main overwrites: the tagged file leaves it
    write_table(catalog, "raw.users", rows(20))
    maintenance.expire_snapshots(
        catalog, "raw.users", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    table = catalog.load_table("raw.users")
    only_theirs = (set(branch_files) | set(tagged_files)) - set(planned_files(table))
    assert len(only_theirs) == 2  # the tagged file, the branch's append

    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert done.deleted > 0  # the overwritten rows(10) file, expired manifests
    assert all(p.exists() for p in only_theirs)
    table = catalog.load_table("raw.users")
    assert len(table.scan(snapshot_id=on_branch).to_arrow()) == 5
    assert table.scan(snapshot_id=tagged).to_arrow()["id"].to_pylist() == [0, 1, 2]


def test_a_statistics_file_survives(catalog):
    """A Puffin statistics file (another engine's ``ANALYZE``) is referenced by the metadata."""
    from pyiceberg.table.statistics import StatisticsFile

    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    stats = table_dir(table) / "metadata" / f"{uuid.uuid4()}.stats"
    stats.write_bytes(b"PFA1")
    stale = table_dir(table) / "metadata" / f"{uuid.uuid4()}.stats"  # of a failed ANALYZE
    stale.write_bytes(b"PFA1")
    with table.update_statistics() as update:
        update.set_statistics(
            StatisticsFile(
                snapshot_id=table.current_snapshot().snapshot_id,
                statistics_path=str(stats),
                file_size_in_bytes=4,
                file_footer_size_in_bytes=4,
                blob_metadata=[],
            )
        )
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert stats.exists() and not stale.exists()
    assert [str(local(u)) for u in done.orphans] == [str(stale)]


# ---- two tables sharing one folder -------------------------------------------------------------


def test_a_table_renamed_and_recreated_at_the_same_location_is_refused_naming_both(catalog):
    """``raw.users`` renamed to ``raw.users_old`` (a backup before a rebuild), then ``raw.users``
    re-created: both live at ``<warehouse>/raw/users``. Cleaning either would take the other's
    files for orphans: refused, naming both, nothing deleted."""
    write_table(catalog, "raw.users", rows(0))
    catalog.rename_table("raw.users", "raw.users_old")
    old = catalog.load_table("raw.users_old")
    before = content(old)
    age(Path(p) for p in files_under(warehouse_of(catalog)))
    write_table(catalog, "raw.users", rows(7, n=1))
    new = catalog.load_table("raw.users")
    assert new.metadata.location == old.metadata.location  # the trap is there
    on_disk = files_under(table_dir(new))

    for mine, theirs in (("raw.users", "raw.users_old"), ("raw.users_old", "raw.users")):
        with pytest.raises(orphans.OrphanCleanupError, match=f"{mine}: .*{theirs}.*nothing del"):
            orphans.remove_orphan_files(catalog, mine, older_than=AGE, now=later())
        assert files_under(table_dir(new)) == on_disk
    assert content(catalog.load_table("raw.users_old")) == before


def test_the_tables_of_a_run_read_each_neighbour_once(catalog, monkeypatch):
    """The clean-ups of one run share what they read of the namespace's tables: one load per
    table, not one per pair; a clash among them is still refused."""
    names = [f"raw.t{k}" for k in range(4)]
    for name in names:
        write_table(catalog, name, rows(0))
    loads: list[str] = []
    real = type(catalog).load_table

    def counted(self, identifier):
        loads.append(str(identifier))
        return real(self, identifier)

    monkeypatch.setattr(type(catalog), "load_table", counted)
    done = orphans.remove_orphans_of_tables(catalog, names, older_than=AGE, dry_run=True)
    assert [r.identifier for r in done] == names
    assert len(loads) == 2 * len(names) - 1  # each its own, and the first its 3 neighbours

    catalog.rename_table("raw.t3", "raw.t3_old")
    write_table(catalog, "raw.t3", rows(7))
    with pytest.raises(orphans.OrphanCleanupError, match="raw.t3: .*raw.t3_old"):
        orphans.remove_orphans_of_tables(catalog, names, older_than=AGE, dry_run=True)


def test_another_tables_data_path_under_this_ones_folders_is_refused(catalog):
    """A table of the namespace whose ``write.data.path`` is this table's ``data/`` folder."""
    write_table(catalog, "raw.users", rows(0))
    users = catalog.load_table("raw.users")
    other = catalog.create_table("raw.other", schema=users.schema())
    with other.transaction() as tx:
        tx.set_properties({"write.data.path": f"{users.metadata.location}/data/other"})
    killed_write(users)
    age(Path(p) for p in files_under(table_dir(users)))
    on_disk = files_under(table_dir(users))
    with pytest.raises(orphans.OrphanCleanupError, match="raw.users: .*raw.other.*nothing del"):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later())
    assert files_under(table_dir(users)) == on_disk


@pytest.mark.parametrize("old", [True, False])
def test_metadata_of_another_table_in_this_ones_folder_is_refused(catalog, old):
    """A table of another namespace (not in the catalog check) at this table's location: its
    metadata file, read as a version written within the age (``old=False``) or before deleting
    it as an orphan (``old=True``), has another ``table-uuid``: refused, nothing deleted."""
    write_table(catalog, "raw.users", rows(0))
    users = catalog.load_table("raw.users")
    catalog.create_namespace_if_not_exists("scratch")
    write_table(catalog, "scratch.copy", rows(100))  # then moved where raw.users lives
    copy = catalog.load_table("scratch.copy")
    with copy.transaction() as tx:
        tx.set_properties({"note": "moved"})  # a second version, so the first is not current
    stray = local(copy.metadata.metadata_log[0].metadata_file)
    moved = table_dir(users) / "metadata" / stray.name
    moved.write_bytes(stray.read_bytes())
    if old:
        age([moved])
    on_disk = files_under(table_dir(users))
    with pytest.raises(
        orphans.OrphanCleanupError, match=f"raw.users: .*{moved.name}.*another table.*nothing del"
    ):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert files_under(table_dir(users)) == on_disk


# ---- what another engine's expiry left, what could not be read ---------------------------------


def test_another_engines_expiry_deleting_manifests_is_no_refusal(catalog):
    """Trino's and Spark's ``expire_snapshots`` also delete the expired snapshots' manifest
    lists and manifests. The versions written within the age still list those snapshots: what
    is gone is skipped (nothing left to protect), the clean-up runs every day of the age."""
    for k in range(4):
        write_table(catalog, "raw.users", rows(k * 10))
    before = catalog.load_table("raw.users")
    maintenance.expire_snapshots(
        catalog, "raw.users", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    after = catalog.load_table("raw.users")
    kept = {s.snapshot_id for s in after.metadata.snapshots}
    expired = [s for s in before.metadata.snapshots if s.snapshot_id not in kept]
    assert expired
    for s in expired:  # what the other engine deletes besides the metadata change
        for m in s.manifests(before.io):
            local(m.manifest_path).unlink(missing_ok=True)
        local(s.manifest_list).unlink()
    dead = killed_write(after)
    age([dead])
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert [str(local(u)) for u in done.orphans] == [str(dead)] and not dead.exists()
    # The expired snapshots' data files: unreferenced now, kept until old enough.
    assert done.too_young == 3  # the files of rows(0), rows(10), rows(20): expired only
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, now=later(2.9))
    assert done.orphans == ()
    assert content(catalog.load_table("raw.users")) == content(after)


def test_a_recent_version_that_fails_to_read_refuses_the_table(catalog, monkeypatch):
    """A metadata file written within the age that cannot be read for another reason than a
    parse error or its absence (a timeout, a 503, a permission): its files cannot be known,
    so nothing is deleted (it is not skipped as a half-written commit's)."""
    from pyiceberg.serializers import FromInputFile

    write_table(catalog, "raw.users", rows(0))
    first = catalog.load_table("raw.users").metadata_location
    with catalog.load_table("raw.users").transaction() as tx:  # a log of one version: the
        tx.set_properties({"write.metadata.previous-versions-max": "1"})  # first is listed only
    write_table(catalog, "raw.users", rows(10))
    write_table(catalog, "raw.users", rows(20))
    table = catalog.load_table("raw.users")
    assert local(first) not in {local(e.metadata_file) for e in table.metadata.metadata_log}
    dead = killed_write(table)
    age([dead])
    real = FromInputFile.table_metadata

    def flaky(input_file, *args, **kwargs):
        if local(input_file.location) == local(first):
            raise OSError("503 Slow Down")
        return real(input_file, *args, **kwargs)

    monkeypatch.setattr(FromInputFile, "table_metadata", staticmethod(flaky))
    on_disk = files_under(table_dir(table))
    with pytest.raises(orphans.OrphanCleanupError, match="raw.users: could not.*503"):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert files_under(table_dir(table)) == on_disk


def test_a_recent_metadata_file_no_version_names_that_fails_to_read_refuses(catalog, monkeypatch):
    """The same for a metadata file of the table that no version's log names (a commit that
    lost its race, or was killed after writing it): it is read only from the listing."""
    from pyiceberg.serializers import FromInputFile

    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    lost = table_dir(table) / "metadata" / f"00001-{uuid.uuid4()}.metadata.json"
    lost.write_bytes(local(table.metadata_location).read_bytes())
    dead = killed_write(table)
    age([dead])
    real = FromInputFile.table_metadata

    def flaky(input_file, *args, **kwargs):
        if local(input_file.location) == lost:
            raise PermissionError("access denied")
        return real(input_file, *args, **kwargs)

    monkeypatch.setattr(FromInputFile, "table_metadata", staticmethod(flaky))
    on_disk = files_under(table_dir(table))
    with pytest.raises(orphans.OrphanCleanupError, match="raw.users: could not.*access denied"):
        orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert files_under(table_dir(table)) == on_disk


# ---- the listing guard: every file the current metadata references ----------------------------


def drop_from_listing(predicate):
    def lister(io, location):
        return {k: f for k, f in orphans.list_files(io, location).items() if not predicate(k)}

    return lister


def assert_refused_without(catalog, missing: Path, dead: Path) -> None:
    """The clean-up of raw.users, with ``missing`` left out of its listing, refuses the table
    and deletes nothing (``dead``, an orphan old enough, is still there)."""
    with pytest.raises(orphans.OrphanCleanupError, match="raw.users: 1 files of its current"):
        orphans.remove_orphan_files(
            catalog,
            "raw.users",
            older_than=AGE,
            lister=drop_from_listing(lambda k: k == str(missing)),
        )
    assert dead.exists()


def test_a_listing_missing_a_manifest_of_an_older_snapshot_deletes_nothing(catalog):
    """Not only the current snapshot's files: the manifest list and manifests of every snapshot
    of the current metadata (read to plan, so they exist) must be in the listing."""
    write_table(catalog, "raw.users", rows(0))
    older = local(catalog.load_table("raw.users").current_snapshot().manifest_list)
    write_table(catalog, "raw.users", rows(10))  # an overwrite: snapshot 1 is no longer current
    table = catalog.load_table("raw.users")
    dead = killed_write(table)
    age(Path(p) for p in files_under(table_dir(table)))
    assert_refused_without(catalog, older, dead)


def test_an_older_snapshots_data_file_deleted_by_its_writer_is_no_refusal(catalog):
    """The key index deletes the files a commit replaced at once (older snapshots still name
    them): gone from the listing, not from a naming mismatch. The clean-up goes on."""
    write_table(catalog, "raw.users", rows(0))
    replaced = planned_files(catalog.load_table("raw.users"))
    write_table(catalog, "raw.users", rows(10))
    for p in replaced:
        p.unlink()
    table = catalog.load_table("raw.users")
    dead = killed_write(table)
    age([dead])
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE)
    assert [str(local(u)) for u in done.orphans] == [str(dead)] and not dead.exists()


@pytest.mark.parametrize("kind", ["manifest", "manifest list"])
def test_a_listing_missing_only_a_manifest_deletes_nothing(catalog, kind):
    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    snapshot = table.current_snapshot()
    missing = (
        local(snapshot.manifests(table.io)[0].manifest_path)
        if kind == "manifest"
        else local(snapshot.manifest_list)
    )
    dead = killed_write(table)
    age([dead])
    assert_refused_without(catalog, missing, dead)


def test_a_sibling_folder_sharing_a_prefix_is_never_listed(catalog):
    """An object store lists by key prefix: ``<location>/data`` also matches ``data2/`` and
    ``metadata`` matches ``metadata-old/``. The listing keeps only what is under the folder
    and a separator: their files are never listed, never deleted."""
    import pyarrow.fs as pafs

    write_table(catalog, "raw.users", rows(0))
    table = catalog.load_table("raw.users")
    siblings = [
        table_dir(table) / "data2" / "x.parquet",
        table_dir(table) / "metadata-old" / "y.avro",
    ]
    for p in siblings:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    dead = killed_write(table)
    age([*siblings, dead])

    class PrefixFS:  # the local files, listed as an object store does: by key prefix
        def get_file_info(self, selector):
            parent = selector.base_dir.rstrip("/").rsplit("/", 1)[0]
            infos = pafs.LocalFileSystem().get_file_info(pafs.FileSelector(parent, recursive=True))
            return [i for i in infos if i.path.startswith(selector.base_dir)]

    class PrefixIO:
        def fs_by_scheme(self, scheme, netloc):
            return PrefixFS()

    def by_prefix(io, location):
        return orphans.list_files(PrefixIO(), location)

    listed = by_prefix(None, f"{table.metadata.location}/data")
    assert str(dead) in listed and not any("data2" in k for k in listed)
    done = orphans.remove_orphan_files(catalog, "raw.users", older_than=AGE, lister=by_prefix)
    assert [str(local(u)) for u in done.orphans] == [str(dead)] and not dead.exists()
    assert all(p.exists() for p in siblings)


def test_a_metadata_file_listed_without_a_time_is_read_as_recent_and_kept(catalog):
    """A version whose metadata file the store lists with no time: taken as written within the
    age (its reader's files are kept), and itself never deleted."""
    import pyarrow.fs as pafs

    write_table(catalog, "raw.users", rows(0))
    first = catalog.load_table("raw.users")
    planned_by_reader = planned_files(first)
    write_table(catalog, "raw.users", rows(10))
    maintenance.expire_snapshots(
        catalog, "raw.users", AGGRESSIVE, now_ms=int(later(0.01).timestamp() * 1000)
    )
    timeless = str(local(first.metadata_location))

    class EpochFS:
        def get_file_info(self, selector):
            infos = pafs.LocalFileSystem().get_file_info(selector)
            return [
                pafs.FileInfo(i.path, i.type, size=i.size, mtime_ns=0) if i.path == timeless else i
                for i in infos
            ]

    class EpochIO:
        def fs_by_scheme(self, scheme, netloc):
            return EpochFS()

    def epoch(io, location):
        return orphans.list_files(EpochIO(), location)

    # Four days later every file is old, but the version listed without a time may be recent.
    done = orphans.remove_orphan_files(
        catalog, "raw.users", older_than=AGE, now=later(), lister=epoch
    )
    assert Path(timeless).exists() and all(p.exists() for p in planned_by_reader)
    assert done.kept_for_readers >= len(planned_by_reader) and timeless not in done.orphans
