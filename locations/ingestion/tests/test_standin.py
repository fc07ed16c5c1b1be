"""The local Airbyte stand-in: generated data, and local-mode runs of the real definitions."""

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

from ingestion import standin
from ingestion.definitions import defs
from ingestion.settings import StandInSettings
from ingestion.streams import EVENTS, STREAMS, USERS
from shared import iceberg
from shared.partitions import FIRST_DAY, day_of
from shared.settings import load_settings

S = StandInSettings()


# ---- pure generation -------------------------------------------------------------------------


def test_events_have_the_contract_schema_and_size():
    day = standin.generate_events(S, 3)
    assert day.schema == EVENTS.schema
    assert day.num_rows == S.events_per_day
    start = dt.datetime.combine(day_of(3), dt.time(), tzinfo=dt.UTC)
    assert pc.min(day["event_ts"]).as_py() >= start
    assert pc.max(day["event_ts"]).as_py() < start + dt.timedelta(days=1)
    assert set(day["event_type"].to_pylist()) <= set(standin.EVENT_TYPES)
    assert pc.min(day["user_id"]).as_py() >= 1 and pc.max(day["user_id"]).as_py() <= S.users


def test_the_standin_writes_airbytes_v2_columns():
    for table in (standin.generate_events(S, 0), standin.generate_users_base(S)):
        assert table.schema.field("_airbyte_generation_id").type == pa.int64()
        assert table["_airbyte_generation_id"].null_count == 0
        assert set(table["_airbyte_generation_id"].to_pylist()) == {0}


def test_only_purchases_have_an_amount():
    day = standin.generate_events(S, 0)
    purchase = pc.equal(day["event_type"], "purchase")
    assert pc.all(pc.equal(pc.is_valid(day["amount"]), purchase)).as_py()
    assert pc.min(day["amount"]).as_py() > 0


def test_events_include_a_few_redelivered_rows():
    day = standin.generate_events(S, 0)
    expected = S.events_per_day // standin.DUPLICATE_EVERY
    assert expected >= 1
    assert day.num_rows - pc.count_distinct(day["event_id"]).as_py() == expected
    assert pc.count_distinct(day["_airbyte_raw_id"]).as_py() == day.num_rows


def test_generation_is_deterministic_per_day_and_seeded():
    assert standin.generate_events(S, 5).equals(standin.generate_events(S, 5))
    # Day k does not depend on how many days are generated.
    longer = StandInSettings(days=40)
    assert standin.generate_events(longer, 5).equals(standin.generate_events(S, 5))
    other_seed = StandInSettings(seed=S.seed + 1)
    assert not standin.generate_events(other_seed, 5).equals(standin.generate_events(S, 5))
    assert not standin.generate_events(S, 6)["event_id"].equals(
        standin.generate_events(S, 5)["event_id"]
    )


def test_users_have_several_versions_with_distinct_updated_at():
    base = standin.generate_users_base(S)
    assert base.schema == USERS.schema and base.num_rows == S.users
    assert base["id"].to_pylist() == list(range(1, S.users + 1))
    assert set(base["plan"].to_pylist()) <= {"free", "pro", "enterprise"}
    updates = pa.concat_tables([standin.generate_user_updates(S, d) for d in range(S.days)])
    assert updates.num_rows == S.days * (S.users // standin.UPDATE_EVERY)
    assert pc.min(updates["updated_at"]).as_py() >= dt.datetime.combine(
        FIRST_DAY, dt.time(), tzinfo=dt.UTC
    )
    everything = pa.concat_tables([base, updates])
    versions = everything.group_by("id").aggregate([("updated_at", "count_distinct")])
    assert pc.max(versions["updated_at_count_distinct"]).as_py() >= 2


def test_uuid_strings_are_uuid4():
    import uuid

    import numpy as np

    values = standin.uuid_strings(np.random.default_rng(1), 50).to_pylist()
    assert len(set(values)) == 50
    assert all(uuid.UUID(v).version == 4 and str(uuid.UUID(v)) == v for v in values)


def test_sync_plan_appends_only_days_after_the_cursor():
    cursor = dt.datetime.combine(day_of(4), dt.time(13), tzinfo=dt.UTC)
    assert standin.plan_sync(EVENTS, S, cursor, True).days == tuple(range(5, S.days))
    assert standin.plan_sync(EVENTS, S, None, False).days == tuple(range(S.days))
    last = dt.datetime.combine(day_of(S.days - 1), dt.time(23), tzinfo=dt.UTC)
    assert standin.plan_sync(EVENTS, S, last, True).is_noop
    users = standin.plan_sync(USERS, S, None, False)
    assert users.initial_load and users.days == tuple(range(S.days))


def test_a_window_ending_later_appends_the_new_day_only():
    """Data ending on a given day (yesterday by default): a sync the next day adds one day."""
    monday = StandInSettings(days=3, end=day_of(40))
    assert standin.plan_sync(EVENTS, monday, None, False).days == (38, 39, 40)
    cursor = dt.datetime.combine(day_of(40), dt.time(22), tzinfo=dt.UTC)
    tuesday = StandInSettings(days=3, end=day_of(41))
    assert standin.plan_sync(EVENTS, tuesday, cursor, True).days == (41,)
    assert standin.plan_sync(EVENTS, monday, cursor, True).is_noop


# ---- local-mode runs of the location's own definitions ---------------------------------------


def materialize_raw():
    job = defs.get_implicit_global_asset_job_def()
    result = job.execute_in_process(asset_selection=[s.key for s in STREAMS])
    assert result.success
    return {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }, result


def test_local_runs_write_raw_tables_incrementally(home, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "3")
    first, result = materialize_raw()
    assert set(first) == {USERS.key, EVENTS.key}
    events_meta = first[EVENTS.key]
    assert events_meta["rows_written"].value == 3 * S.events_per_day
    assert events_meta["row_count"].value == 3 * S.events_per_day
    assert events_meta["metadata_location"].value.startswith(str(load_settings().home))
    assert events_meta["snapshot_id"].value != "None"
    assert events_meta["standin_batch_days"].value == "2026-01-01..2026-01-03"
    assert first[USERS.key]["rows_written"].value == S.users + 3 * (S.users // 50)
    assert all(e.passed for e in result.get_asset_check_evaluations())

    catalog = iceberg.open_catalog(load_settings())
    stored = iceberg.read_table(catalog, EVENTS.identifier)
    assert stored.schema.names == EVENTS.schema.names
    assert stored.schema.field("event_ts").type == pa.timestamp("us", tz="UTC")
    assert stored.sort_by("_airbyte_raw_id").equals(
        pa.concat_tables([standin.generate_events(S, d) for d in range(3)])
        .cast(stored.schema)
        .sort_by("_airbyte_raw_id")
    )

    # Same settings again: nothing new.
    again, _ = materialize_raw()
    assert again[EVENTS.key]["rows_written"].value == 0
    assert again[USERS.key]["rows_written"].value == 0
    assert again[EVENTS.key]["row_count"].value == 3 * S.events_per_day

    # Two more days: only those are appended.
    monkeypatch.setenv("DATA_PLATFORM_STANDIN_DAYS", "5")
    more, _ = materialize_raw()
    assert more[EVENTS.key]["rows_written"].value == 2 * S.events_per_day
    assert more[EVENTS.key]["standin_batch_days"].value == "2026-01-04..2026-01-05"
    assert more[USERS.key]["rows_written"].value == 2 * (S.users // 50)
    stored = iceberg.read_table(catalog, EVENTS.identifier, columns=["event_ts"])
    days = pc.unique(pc.floor_temporal(stored["event_ts"], unit="day")).to_pylist()
    assert len(days) == 5 and stored.num_rows == 5 * S.events_per_day


def test_local_mode_is_the_default_and_writes_under_home(home):
    assert load_settings().is_local
    materialize_raw()
    assert any((home / "warehouse").rglob("*.parquet"))
