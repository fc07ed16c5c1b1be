"""Every raw sync records the UTC event days of the rows it added (``changed_event_days``).

The stand-in and a landing batch are run through the location's real job; the prod path through
the fake Airbyte server (with its Iceberg catalog deliberately not configured: days unknown; and
with a lakehouse its destination writes to).
"""

import json
import sys
from pathlib import Path

import fsspec

from ingestion.definitions import defs
from ingestion.settings import landing_dir
from ingestion.streams import EVENTS, STREAMS, USERS
from shared.changes import CHANGED_EVENT_DAYS, CHANGED_EVENT_DAYS_COUNT
from shared.settings import load_settings

sys.path.insert(0, str(Path(__file__).parent))

from test_airbyte_sync import lakehouse  # noqa: E402, F401  (fixture: prod with a lakehouse)


def run(tags=None, keys=None):
    job = defs.resolve_job_def("ingestion_job")
    result = job.execute_in_process(tags=tags or {}, asset_selection=keys)
    assert result.success
    return {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


def days(metadata) -> list[str] | None:
    return metadata[CHANGED_EVENT_DAYS].value


def test_standin_syncs_record_the_days_they_added(home, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "3")
    first = run()
    assert days(first[EVENTS.key]) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert first[EVENTS.key][CHANGED_EVENT_DAYS_COUNT].value == 3
    # raw/users rows belong to no day of a daily asset: the key is absent, not empty.
    assert CHANGED_EVENT_DAYS not in first[USERS.key]

    assert days(run()[EVENTS.key]) == []  # nothing new: no day changed

    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "4")
    assert days(run()[EVENTS.key]) == ["2026-01-04"]


def test_a_landing_batch_records_the_days_of_its_rows(home, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "3")
    run()
    root = str(landing_dir(load_settings()))
    fs = fsspec.filesystem("file")
    fs.makedirs(f"{root}/late", exist_ok=True)
    rows = [
        # A late event for an old day, and one just before midnight UTC (at UTC+1 it is Jan 3).
        {"event_id": "late-1", "user_id": 1, "event_type": "click",
         "event_ts": "2026-01-02T08:00:00Z", "amount": None},
        {"event_id": "late-2", "user_id": 1, "event_type": "click",
         "event_ts": "2026-01-03T00:30:00+01:00", "amount": None},
    ]  # fmt: skip
    fs.pipe_file(f"{root}/late/events.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    fs.pipe_file(f"{root}/late/_SUCCESS", b"")  # the batch is complete (landing protocol)
    landed = run(tags={"ingestion/landing_batch": "late"}, keys=[EVENTS.key])
    assert days(landed[EVENTS.key]) == ["2026-01-02"]


def test_prod_sync_without_a_readable_catalog_records_unknown_days(prod_env):
    from test_airbyte_sync import materializations, run_sync

    prod_env.add_connection("app-db to lakehouse", [s.name for s in STREAMS])
    result = run_sync()
    assert result.success
    metadata = materializations(result)
    # Unknown (null), which downstream treats as every day: never silently "no day".
    assert days(metadata[EVENTS.key]) is None
    assert CHANGED_EVENT_DAYS not in metadata[USERS.key]


def test_a_landing_batch_moving_an_event_records_the_day_it_left(home, monkeypatch):
    """An existing event re-delivered with its timestamp on another day: the day it left is
    recorded too (its daily rows hold the old version until re-run), with operator counts."""
    from shared.changes import MOVED_FROM_DAYS, MOVED_KEYS, REDELIVERED_KEYS
    from shared.iceberg import open_catalog

    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "3")
    run()
    existing = (
        open_catalog(load_settings())
        .load_table(EVENTS.identifier)
        .scan(row_filter="event_ts < '2026-01-02T00:00:00+00:00'", limit=2)
        .to_arrow()
    )
    moved, same = existing["event_id"].to_pylist()
    root = str(landing_dir(load_settings()))
    fs = fsspec.filesystem("file")
    fs.makedirs(f"{root}/moved", exist_ok=True)
    rows = [
        # From Jan 1 to Jan 3; another re-delivered on its own day; a new one on Jan 3.
        {"event_id": moved, "user_id": 1, "event_type": "click",
         "event_ts": "2026-01-03T09:00:00Z", "amount": None},
        {"event_id": same, "user_id": 1, "event_type": "click",
         "event_ts": "2026-01-01T23:00:00Z", "amount": None},
        {"event_id": "new-1", "user_id": 1, "event_type": "click",
         "event_ts": "2026-01-03T10:00:00Z", "amount": None},
    ]  # fmt: skip
    fs.pipe_file(f"{root}/moved/events.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    fs.pipe_file(f"{root}/moved/_SUCCESS", b"")
    landed = run(tags={"ingestion/landing_batch": "moved"}, keys=[EVENTS.key])[EVENTS.key]
    assert days(landed) == ["2026-01-01", "2026-01-03"]
    assert (landed[REDELIVERED_KEYS].value, landed[MOVED_KEYS].value) == (2, 1)
    # Jan 1 also has an added row (the re-delivery on its own day): no day is there only
    # because an event left it.
    assert landed[MOVED_FROM_DAYS].value == []


def test_an_airbyte_sync_moving_an_event_records_the_day_it_left(lakehouse, prod_env):  # noqa: F811
    """The prod path (the fake Airbyte's destination writing to a lakehouse): the table already
    holds, on an old day, an event id the next job delivers again with today's timestamp."""
    import datetime as dt

    import pyarrow as pa
    from test_airbyte_sync import materializations, run_sync

    from shared.changes import MOVED_FROM_DAYS, MOVED_KEYS, REDELIVERED_KEYS

    store = lakehouse
    prod_env.add_connection("app-db", [s.name for s in STREAMS])
    assert run_sync(iceberg=store).success
    table = store.catalog().load_table(EVENTS.identifier)
    # The next job's first event (the fake destination names events after the job), already in
    # the table with a timestamp on an old day.
    old = table.scan(limit=1).to_arrow()
    next_id = f"event_id-{max(prod_env.jobs) + 1}-0"
    stamp = pa.array(
        [dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)], old.schema.field("event_ts").type
    )
    old = old.set_column(0, old.schema.field("event_id"), pa.array([next_id], pa.string()))
    old = old.set_column(
        old.schema.get_field_index("event_ts"), old.schema.field("event_ts"), stamp
    )
    table.append(old.cast(table.schema().as_arrow()))

    second = run_sync(iceberg=store)
    assert second.success
    metadata = materializations(second)[EVENTS.key]
    recorded = days(metadata)
    assert "2026-01-10" in recorded and len(recorded) >= 2  # the new rows' day(s) and Jan 10
    assert (metadata[REDELIVERED_KEYS].value, metadata[MOVED_KEYS].value) == (1, 1)
    assert metadata[MOVED_FROM_DAYS].value == ["2026-01-10"]


def test_syncs_keep_the_key_index_and_a_failed_catch_up_only_delays_it(home, monkeypatch):
    """Each sync indexes what it committed (``shared.key_index``); when its catch-up fails (or
    the process dies after the raw commit) the sync still records its days, read through the
    index plus the unindexed tail, and the next sync's catch-up indexes both commits once."""
    from ingestion.streams import key_index_spec
    from shared import key_index
    from shared.iceberg import open_catalog

    spec = key_index_spec(EVENTS)
    catalog = open_catalog(load_settings())

    def indexed_through():
        index = catalog.load_table(spec.identifier)
        return int(index.properties[key_index.MARKER]), index.scan().to_arrow().num_rows

    def raw_now():
        raw = catalog.load_table(EVENTS.identifier)
        return raw.current_snapshot().snapshot_id, raw.scan().to_arrow().num_rows

    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "2")
    run()
    assert indexed_through() == raw_now()

    def fail(*args, **kwargs):
        raise RuntimeError("killed before the index commit")

    real_catch_up = key_index.catch_up
    monkeypatch.setattr(key_index, "catch_up", fail)
    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "3")
    assert days(run()[EVENTS.key]) == ["2026-01-03"]
    marker, _ = indexed_through()
    assert marker != raw_now()[0]  # behind: raw has a commit the index does not
    monkeypatch.setattr(key_index, "catch_up", real_catch_up)
    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "4")
    assert days(run()[EVENTS.key]) == ["2026-01-04"]
    assert indexed_through() == raw_now()  # both commits indexed, none twice


def test_a_sync_after_a_compaction_records_only_its_own_days(home, monkeypatch):
    """Through the location's job: a compaction of both raw tables between two syncs (as the
    maintenance job does) changes no day; the next sync records its own day, and the key index
    keeps answering without a rebuild."""
    from shared import key_index
    from shared.compaction import compact_small_files, compact_tables
    from shared.iceberg import open_catalog

    catalog = open_catalog(load_settings())
    for n in (2, 3):
        monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", str(n))
        run()
    done = compact_tables(catalog, [USERS.identifier, EVENTS.identifier])
    assert all(d.snapshot_id is None for d in done)  # 2 files each: too few (8)
    for identifier in (USERS.identifier, EVENTS.identifier):
        assert compact_small_files(catalog, identifier, min_files=2).files_replaced == 2
    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "4")
    synced = run()
    assert days(synced[EVENTS.key]) == ["2026-01-04"]
    assert synced[EVENTS.key]["redelivered_keys"].value == 0
    index = catalog.load_table(key_index.index_identifier(EVENTS.identifier))
    raw = catalog.load_table(EVENTS.identifier)
    assert int(index.properties[key_index.MARKER]) == raw.current_snapshot().snapshot_id
    assert index.scan().to_arrow().num_rows == raw.scan().to_arrow().num_rows
