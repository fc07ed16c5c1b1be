"""The raw-table checks look at what the latest sync added, yet still catch a new row that
repeats an old one."""

import pyarrow as pa
import pytest

from ingestion import standin
from ingestion.checks import (
    CHECKS,
    added_data_files,
    duplicate_groups_with,
    latest_commit_rows,
    repeats_with_earlier,
    run_check,
)
from ingestion.settings import StandInSettings
from ingestion.streams import EVENTS, USERS, key_index_spec
from shared import iceberg, key_index
from shared.resources import IcebergCatalogResource
from shared.settings import load_settings

SMALL = StandInSettings(users=30, events_per_day=200, days=3, seed=11)


def run_checks(stream):
    resource = IcebergCatalogResource()
    return {suffix: run_check(stream, suffix, resource) for suffix in CHECKS}


@pytest.fixture
def catalog(home):
    return iceberg.open_catalog(load_settings())


def append_days(catalog, days):
    for d in days:
        iceberg.write_table(
            catalog, EVENTS.identifier, standin.generate_events(SMALL, d), mode="append"
        )


def test_duplicate_groups_with_counts_only_groups_holding_a_new_row():
    table = pa.table({"k": ["a", "a", "b", "b", "c"], "v": [1, 1, 2, 2, 3]})
    new = table.slice(4, 1)  # "c": repeats nothing
    assert duplicate_groups_with(new, table, ["k"]) == (0, [])
    new = pa.table({"k": ["b"], "v": [2]})
    assert duplicate_groups_with(new, table, ["k"])[0] == 1
    assert duplicate_groups_with(new, table, ["k", "v"]) == (1, [("b", "2")])


def test_latest_commit_rows_are_the_last_append_only(catalog):
    append_days(catalog, [0, 1])
    table = catalog.load_table(EVENTS.identifier)
    rows = latest_commit_rows(table, ["event_id", "not_a_column"])
    day1 = standin.generate_events(SMALL, 1)
    assert rows.column_names == ["event_id"]
    assert sorted(rows["event_id"].to_pylist()) == sorted(day1["event_id"].to_pylist())
    assert len(added_data_files(table)) >= 1
    assert iceberg.read_table(catalog, EVENTS.identifier).num_rows == 2 * day1.num_rows


def test_a_new_row_repeating_an_old_record_fails_uniqueness(catalog):
    append_days(catalog, [0, 1])
    old = iceberg.read_table(catalog, EVENTS.identifier).slice(0, 1)
    # The next sync delivers day 2 plus one record of day 0 again (same _airbyte_raw_id).
    batch = pa.concat_tables([standin.generate_events(SMALL, 2), old.cast(EVENTS.schema)])
    iceberg.write_table(catalog, EVENTS.identifier, batch, mode="append")
    result = run_checks(EVENTS)["primary_key_unique"]
    assert not result.passed
    assert result.metadata["duplicate_airbyte_raw_id"].value == 1
    assert result.metadata["rows"].value == batch.num_rows  # only the new rows were checked
    assert result.metadata["rows_in_table"].value == 2 * SMALL.events_per_day + batch.num_rows


def test_checks_of_a_clean_sync_pass_and_read_only_its_rows(catalog):
    append_days(catalog, [0, 1, 2])
    results = run_checks(EVENTS)
    for name, result in results.items():
        assert result.passed, (name, result.metadata)
    assert results["primary_key_not_null"].metadata["rows"].value == SMALL.events_per_day


def test_null_key_is_reported_by_the_sync_that_brought_it(catalog):
    day0 = standin.generate_events(SMALL, 0)
    ids = day0["event_id"].to_pylist()
    ids[0] = None
    bad = day0.set_column(0, "event_id", pa.array(ids, pa.string()))
    iceberg.write_table(catalog, EVENTS.identifier, bad, mode="append")
    result = run_checks(EVENTS)["primary_key_not_null"]
    assert not result.passed and result.metadata["null_event_id"].value == 1
    append_days(catalog, [1])  # a later, clean sync: its own rows are clean
    assert run_checks(EVENTS)["primary_key_not_null"].passed


def test_full_refresh_of_users_is_checked_whole(catalog):
    users = standin.generate_users_base(SMALL)
    again = users.slice(0, 1).set_column(
        users.schema.get_field_index("_airbyte_raw_id"), "_airbyte_raw_id", pa.array(["other"])
    )
    iceberg.write_table(catalog, USERS.identifier, users, mode="append")
    iceberg.write_table(catalog, USERS.identifier, pa.concat_tables([users, again]))
    result = run_checks(USERS)["primary_key_unique"]
    assert not result.passed
    assert result.metadata["duplicate_id_updated_at"].value == 1
    assert result.metadata["rows"].value == result.metadata["rows_in_table"].value


# ---- with the hashed key index (shared.key_index), as a sync leaves it ---------------------------


def append_indexed(catalog, batch):
    iceberg.write_table(catalog, EVENTS.identifier, batch, mode="append")
    key_index.catch_up(catalog, key_index_spec(EVENTS))


def colliding_hash(values):
    """Every value hashes to 0: every earlier row is a candidate match of every new one."""
    return pa.array([None if v is None else 0 for v in values.to_pylist()], pa.int64())


@pytest.mark.parametrize("collide", [False, True], ids=["hash64", "every-hash-collides"])
def test_uniqueness_from_the_key_index_fails_only_on_a_confirmed_repeat(
    catalog, monkeypatch, collide
):
    if collide:
        monkeypatch.setattr(key_index, "hash64", colliding_hash)
    for d in (0, 1):
        append_indexed(catalog, standin.generate_events(SMALL, d))
    clean = standin.generate_events(SMALL, 2)
    append_indexed(catalog, clean)
    result = run_checks(EVENTS)["primary_key_unique"]
    assert "hashed key index" in result.metadata["scope"].value  # the index answered
    assert result.passed, result.metadata  # candidates (all of them when colliding) not confirmed
    assert result.metadata["duplicate_airbyte_raw_id"].value == 0

    old = iceberg.read_table(catalog, EVENTS.identifier).slice(0, 1)
    batch = pa.concat_tables([standin.generate_events(SMALL, 3), old.cast(EVENTS.schema)])
    append_indexed(catalog, batch)
    result = run_checks(EVENTS)["primary_key_unique"]
    assert "hashed key index" in result.metadata["scope"].value
    assert not result.passed
    assert result.metadata["duplicate_airbyte_raw_id"].value == 1
    assert result.metadata["duplicate_airbyte_raw_id_examples"].value == [
        [old["_airbyte_raw_id"][0].as_py()]
    ]
    # The repeated event_id (information) counted as reading every row counts it.
    indexed_info = result.metadata["repeated_primary_keys_info"].value
    assert indexed_info >= 1
    if not collide:
        catalog.drop_table(key_index_spec(EVENTS).identifier)  # no index: every row is read
        full = run_checks(EVENTS)["primary_key_unique"]
        assert "hashed key index" not in full.metadata["scope"].value
        assert full.metadata["repeated_primary_keys_info"].value == indexed_info
        assert full.metadata["duplicate_airbyte_raw_id"].value == 1


def test_a_lagging_key_index_gives_the_same_verdict(catalog):
    """The sync was killed after its raw commit: the check reads the unindexed commits from
    raw."""
    append_indexed(catalog, standin.generate_events(SMALL, 0))
    iceberg.write_table(
        catalog, EVENTS.identifier, standin.generate_events(SMALL, 1), mode="append"
    )
    old = iceberg.read_table(catalog, EVENTS.identifier).slice(SMALL.events_per_day + 3, 1)
    batch = pa.concat_tables([standin.generate_events(SMALL, 2), old.cast(EVENTS.schema)])
    iceberg.write_table(catalog, EVENTS.identifier, batch, mode="append")  # not indexed either
    result = run_checks(EVENTS)["primary_key_unique"]
    assert "hashed key index" in result.metadata["scope"].value
    assert not result.passed and result.metadata["duplicate_airbyte_raw_id"].value == 1


def test_repeats_with_earlier_counts_values_repeated_among_new_or_found_earlier():
    new = pa.table({"k": ["a", "b", "b", None, None, "c"]})
    assert repeats_with_earlier(new, "k", pa.array([], pa.string())) == (1, [("b",)])
    n, sample = repeats_with_earlier(new, "k", pa.array(["c", "zz"]))
    assert n == 2 and sorted(sample) == [("b",), ("c",)]


def counting(calls, name, fn):
    """``fn``, recording each call's arguments under ``name`` in ``calls``."""

    def wrapper(*args, **kwargs):
        calls.append((name, args, kwargs))
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("lag", [False, True], ids=["indexed", "index-lags-two-syncs"])
def test_uniqueness_from_the_key_index_loads_plans_and_reads_it_once(catalog, lag):
    """The check's two look-ups (repeated record ids, confirmed on raw; repeated event ids, as
    information) come from ONE load and plan of the index and ONE read of its files, each
    unindexed raw file read once, with the findings of the two look-ups made apart and of a
    read of every row."""
    day0 = standin.generate_events(SMALL, 0)
    append_indexed(catalog, day0)
    append_indexed(catalog, standin.generate_events(SMALL, 1))
    write = (
        (lambda b: iceberg.write_table(catalog, EVENTS.identifier, b, mode="append"))
        if lag
        else (lambda b: append_indexed(catalog, b))
    )
    write(standin.generate_events(SMALL, 2))
    # Day 0's: the same record stored twice (fails the check) and an event sent again.
    raw_id = day0.schema.get_field_index("_airbyte_raw_id")
    again = day0.slice(5, 1)
    redelivered = day0.slice(7, 1).set_column(raw_id, "_airbyte_raw_id", pa.array(["re-sent-1"]))
    batch = pa.concat_tables([standin.generate_events(SMALL, 3), again, redelivered])
    write(batch)

    calls = []
    with pytest.MonkeyPatch.context() as patch:
        for name in ("_load_index", "plan", "scan", "read_files"):
            patch.setattr(key_index, name, counting(calls, name, getattr(key_index, name)))
        result = run_checks(EVENTS)["primary_key_unique"]

    assert "hashed key index" in result.metadata["scope"].value  # the index answered
    assert [name for name, _, _ in calls if name != "read_files"] == ["plan", "_load_index", "scan"]
    index_reads = [
        a for name, a, _ in calls if name == "read_files" and a[0].name()[0] == "raw_key_index"
    ]
    assert len(index_reads) == 1
    raw_files = [
        getattr(f, "file_path", None)
        for name, a, _ in calls
        if name == "read_files" and a[0].name()[0] == "raw"
        for f in a[1]
    ]
    # The tail's files (hashed) and day 0's (the confirmation), each read once.
    assert raw_files and len(raw_files) == len(set(raw_files))
    planned = key_index.plan(
        catalog,
        catalog.load_table(EVENTS.identifier),
        key_index_spec(EVENTS),
        catalog.load_table(EVENTS.identifier).current_snapshot().parent_snapshot_id,
    )
    assert len(planned.tail) == (1 if lag else 0)  # day 2's commit, as of the check's P

    # The same findings as the two look-ups made apart, and as reading every row.
    raw = catalog.load_table(EVENTS.identifier)
    spec, before = key_index_spec(EVENTS), raw.current_snapshot().parent_snapshot_id
    ids = key_index.confirmed_earlier(catalog, raw, spec, before, batch["_airbyte_raw_id"])
    keys = key_index.candidate_keys(catalog, raw, spec, before, batch["event_id"])
    assert ids.to_pylist() == [again["_airbyte_raw_id"][0].as_py()]
    assert redelivered["event_id"][0].as_py() in keys.to_pylist()
    assert not result.passed
    assert result.metadata["duplicate_airbyte_raw_id"].value == 1
    assert result.metadata["duplicate_airbyte_raw_id_examples"].value == [ids.to_pylist()]
    n_pk = repeats_with_earlier(batch, "event_id", keys)[0]
    assert result.metadata["repeated_primary_keys_info"].value == n_pk >= 2
    catalog.drop_table(spec.identifier)  # no index: every row is read
    full = run_checks(EVENTS)["primary_key_unique"]
    assert "hashed key index" not in full.metadata["scope"].value
    for name in ("duplicate_airbyte_raw_id", "repeated_primary_keys_info", "rows", "rows_in_table"):
        assert full.metadata[name].value == result.metadata[name].value, name
    assert full.metadata["duplicate_airbyte_raw_id_examples"].value == [ids.to_pylist()]


def test_the_checks_give_the_same_verdicts_after_old_snapshots_expired(catalog):
    """Every raw check reads the latest sync and the snapshot it committed onto (kept: at least
    2 snapshots stay; the earlier range and the confirmation read that one): an aggressive expiry
    changes no verdict, and the repeat of a record whose commit expired is still confirmed
    from the key index."""
    from shared.maintenance import expire_tables
    from shared.settings import SnapshotRetention

    for d in range(4):
        append_indexed(catalog, standin.generate_events(SMALL, d))
    old = iceberg.read_table(catalog, EVENTS.identifier).slice(5, 1)  # added by day 0's commit
    batch = pa.concat_tables([standin.generate_events(SMALL, 4), old.cast(EVENTS.schema)])
    append_indexed(catalog, batch)

    def verdicts():
        return {
            # (the freshness check's age and the latest plausible time move with the clock)
            name: (r.passed, {k: v.value for k, v in r.metadata.items() if k not in CLOCK_KEYS})
            for name, r in run_checks(EVENTS).items()
        }

    before = verdicts()
    [expired] = expire_tables(catalog, [EVENTS.identifier], SnapshotRetention(2, 0))
    assert expired.expired == 3 and expired.kept == 2
    after = verdicts()
    assert after == before
    unique = after["primary_key_unique"]
    assert not unique[0] and unique[1]["duplicate_airbyte_raw_id"] == 1
    assert "hashed key index" in unique[1]["scope"]  # answered by the index, not a fallback


# ---- a compaction of raw (shared.compaction) is no sync ------------------------------------------

#: Metadata that follows the clock, not the data.
CLOCK_KEYS = {"age_hours", "latest_allowed"}


def verdicts(stream):
    out = {}
    for suffix, result in run_checks(stream).items():
        metadata = {k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()}
        out[suffix] = (
            result.passed,
            {k: v for k, v in metadata.items() if k not in CLOCK_KEYS},
            result.description,
        )
    return out


def compact(catalog, stream):
    from shared.compaction import compact_small_files

    done = compact_small_files(catalog, stream.identifier, min_files=2)
    assert done.snapshot_id is not None
    assert catalog.load_table(stream.identifier).current_snapshot().summary.operation.value == (
        "replace"
    )


def test_checks_right_after_a_compaction_give_the_same_results_for_users(catalog):
    """The latest sync's rows (one with a null id, one repeating a record), the freshness of
    the last sync and the earlier range: the same findings with the compaction after it."""
    users = standin.generate_users_base(SMALL)
    iceberg.write_table(catalog, USERS.identifier, users, mode="append")
    for d in (0, 1):
        iceberg.write_table(
            catalog, USERS.identifier, standin.generate_user_updates(SMALL, d), mode="append"
        )
    update = standin.generate_user_updates(SMALL, 2)
    ids = update["id"].to_pylist()
    ids[0] = None
    bad = pa.concat_tables(
        [update.set_column(0, "id", pa.array(ids, update.schema.field(0).type)), users.slice(3, 1)]
    )  # a row stored again (same _airbyte_raw_id)
    iceberg.write_table(catalog, USERS.identifier, bad, mode="append")
    before = verdicts(USERS)
    assert not before["primary_key_not_null"][0] and not before["primary_key_unique"][0]
    compact(catalog, USERS)
    assert verdicts(USERS) == before


def test_checks_right_after_a_compaction_give_the_same_results_for_events(catalog):
    """With the key index (the sync's catch-up also after the compaction), a new row repeating
    an old record is still confirmed; a later clean sync passes."""
    for d in (0, 1):
        append_indexed(catalog, standin.generate_events(SMALL, d))
    old = iceberg.read_table(catalog, EVENTS.identifier).slice(3, 1)
    batch = pa.concat_tables([standin.generate_events(SMALL, 2), old.cast(EVENTS.schema)])
    append_indexed(catalog, batch)
    before = verdicts(EVENTS)
    assert not before["primary_key_unique"][0]
    assert "hashed key index" in before["primary_key_unique"][1]["scope"]
    compact(catalog, EVENTS)
    key_index.catch_up(catalog, key_index_spec(EVENTS))
    assert verdicts(EVENTS) == before

    append_indexed(catalog, standin.generate_events(SMALL, 3))  # a clean sync after it
    results = run_checks(EVENTS)
    for name, result in results.items():
        assert result.passed, (name, result.metadata)
    assert results["primary_key_not_null"].metadata["rows"].value == SMALL.events_per_day
    assert "hashed key index" in results["primary_key_unique"].metadata["scope"].value


def test_a_compaction_does_not_make_a_stale_table_fresh(catalog):
    from dataclasses import replace

    append_days(catalog, [0, 1])
    stale = replace(EVENTS, freshness=EVENTS.freshness * 0)  # every commit is too old
    last = run_checks(stale)["freshness"].metadata["last_commit"]
    compact(catalog, EVENTS)
    result = run_checks(stale)["freshness"]
    assert not result.passed and result.metadata["last_commit"] == last


def test_a_compaction_during_an_airbyte_job_is_not_taken_for_its_commit(catalog):
    """What the sync compares before and after a job is the last commit that added rows."""
    from types import SimpleNamespace

    from ingestion.airbyte import written_by_job
    from ingestion.resources import _snapshot_state

    append_days(catalog, [0, 1])
    context = SimpleNamespace(log=SimpleNamespace(warning=print))
    resource = IcebergCatalogResource()
    before = _snapshot_state(resource, EVENTS, [], context)
    compact(catalog, EVENTS)  # the maintenance job runs while the job writes nothing
    after = _snapshot_state(resource, EVENTS, [], context)
    assert after == before and not written_by_job(before, after, None)
    append_days(catalog, [2])  # the job's commit
    after = _snapshot_state(resource, EVENTS, [], context)
    assert written_by_job(before, after, None)


def test_the_smallest_retention_after_a_compaction_keeps_what_the_checks_read(catalog):
    """keep_last=2 after a compaction: the current snapshot is the compaction, the latest sync
    second, the snapshot it committed onto third. The expiry keeps that one too (the earlier
    range and the uniqueness look-up are read as of it): the same verdicts as before."""
    from shared.maintenance import expire_tables
    from shared.settings import SnapshotRetention

    for d in range(4):
        append_indexed(catalog, standin.generate_events(SMALL, d))
    before = verdicts(EVENTS)
    # The range check ran (it reads the snapshot the latest sync committed onto).
    assert any(k.startswith("far_outside_earlier_range") for k in before["timestamps_plausible"][1])
    compact(catalog, EVENTS)
    expire_tables(catalog, [EVENTS.identifier], SnapshotRetention(keep_last=2, min_age_ms=0))
    assert verdicts(EVENTS) == before
