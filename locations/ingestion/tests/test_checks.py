"""Raw-table checks: each passes on good data and fails on bad data."""

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ingestion import standin
from ingestion.checks import (
    build_checks,
    checks_for,
    duplicate_groups,
    freshness,
    null_counts,
    null_key_rows,
    partition_start,
    rows_outside_days,
    run_check,
    schema_drift,
)
from ingestion.settings import StandInSettings
from ingestion.streams import EVENTS, USERS
from shared import iceberg
from shared.resources import IcebergCatalogResource
from shared.settings import load_settings

SMALL = StandInSettings(users=30, events_per_day=300, days=2, seed=7)


def run_checks(stream):
    """Evaluate every check of ``stream``: {check suffix: AssetCheckResult}."""
    resource = IcebergCatalogResource()
    return {suffix: run_check(stream, suffix, resource) for suffix in checks_for(stream)}


def good_users() -> pa.Table:
    return pa.concat_tables(
        [standin.generate_users_base(SMALL), standin.generate_user_updates(SMALL, 0)]
    )


def good_events() -> pa.Table:
    return pa.concat_tables([standin.generate_events(SMALL, d) for d in range(SMALL.days)])


def append_corrupted_day(catalog, column: str, values: dict[int, object]) -> tuple[pa.Table, dict]:
    """Appends stand-in day 0 of raw.events with ``column`` set to ``values`` ({row index:
    value}) and evaluates every events check: (the appended table, {check suffix: result})."""
    events = standin.generate_events(SMALL, 0)
    cells = events[column].to_pylist()
    for row, value in values.items():
        cells[row] = value
    bad = events.set_column(
        events.schema.get_field_index(column),
        column,
        pa.array(cells, events.schema.field(column).type),
    )
    iceberg.write_table(catalog, EVENTS.identifier, bad, mode="append")
    return bad, run_checks(EVENTS)


@pytest.fixture
def catalog(home):
    return iceberg.open_catalog(load_settings())


# ---- pure functions --------------------------------------------------------------------------


def test_null_counts_and_duplicates():
    table = pa.table({"id": [1, None, 2, 2], "v": [1, 1, 1, 2]})
    assert null_counts(table, ["id", "missing"]) == {"id": 1, "missing": 4}
    assert duplicate_groups(table, ["id"])[0] == 1
    assert duplicate_groups(table, ["id", "v"])[0] == 0


def test_freshness():
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert freshness(now - dt.timedelta(hours=1), now, dt.timedelta(hours=26)).passed
    stale = freshness(now - dt.timedelta(hours=30), now, dt.timedelta(hours=26))
    assert not stale.passed and stale.age == dt.timedelta(hours=30)
    assert not freshness(None, now, dt.timedelta(hours=26)).passed


def test_schema_drift_pure():
    assert not schema_drift(USERS.schema, USERS.schema).has_drift
    actual = pa.schema([f for f in USERS.schema if f.name != "plan"] + [pa.field("x", pa.int32())])
    drift = schema_drift(actual, USERS.schema)
    assert drift.added == ["x"] and drift.dropped == ["plan"]
    changed = pa.schema(
        [pa.field("id", pa.string()) if f.name == "id" else f for f in USERS.schema]
    )
    assert schema_drift(changed, USERS.schema).type_changes == {"id": "int64 -> string"}


def test_null_key_rows_counts_rows_once_with_examples():
    table = pa.table({"event_id": ["a", None, "c", None], "user_id": [1, None, None, 4]})
    total, per_column, examples = null_key_rows(table, ["event_id", "user_id"])
    assert (total, per_column) == (3, {"event_id": 2, "user_id": 2})
    assert examples[0] == {"event_id": None, "user_id": None}
    assert null_key_rows(table.slice(0, 1), ["event_id", "user_id"])[0] == 0


def test_rows_outside_days_counts_before_and_after_with_examples():
    first = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    last = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    values = [first - dt.timedelta(seconds=1), first, last, last + dt.timedelta(days=3), None]
    table = pa.table({"id": ["a", "b", "c", "d", "e"],
                      "ts": pa.array(values, pa.timestamp("us", tz="UTC"))})  # fmt: skip
    before, after, examples = rows_outside_days(table, "ts", first, last)
    assert (before, after) == (1, 1)
    assert [e["id"] for e in examples] == ["a", "d"]
    assert examples[0]["ts"] == "2025-12-31T23:59:59+00:00"


# ---- the asset checks on real Iceberg tables ------------------------------------------------


def test_all_checks_pass_on_stand_in_data(catalog):
    iceberg.write_table(catalog, USERS.identifier, good_users())
    iceberg.write_table(catalog, EVENTS.identifier, good_events())
    for stream in (USERS, EVENTS):
        results = run_checks(stream)
        expected = {"primary_key_not_null", "primary_key_unique", "freshness", "schema_drift",
                    "timestamps_plausible", "string_sizes", "null_keys"}  # fmt: skip
        if stream is EVENTS:
            expected.add("outside_partitions")
        assert set(results) == expected
        for name, result in results.items():
            assert result.passed, (stream.name, name, result.metadata)
    # Raw events legitimately repeat event_ids (at-least-once): reported, not failed.
    unique = run_checks(EVENTS)["primary_key_unique"]
    assert unique.metadata["repeated_primary_keys_info"].value >= 1


def test_primary_key_not_null_fails_on_null_ids(catalog):
    users = good_users()
    ids = users["id"].to_pylist()
    ids[3] = None
    iceberg.write_table(
        catalog, USERS.identifier, users.set_column(0, "id", pa.array(ids, pa.int64()))
    )
    result = run_checks(USERS)["primary_key_not_null"]
    assert not result.passed and result.metadata["null_id"].value == 1


def test_primary_key_unique_fails_on_a_record_stored_twice(catalog):
    events = good_events()
    iceberg.write_table(catalog, EVENTS.identifier, pa.concat_tables([events, events.slice(0, 2)]))
    result = run_checks(EVENTS)["primary_key_unique"]
    assert not result.passed and result.metadata["duplicate_airbyte_raw_id"].value == 2


def test_users_unique_version_key_fails_on_a_repeated_version(catalog):
    users = good_users()
    again = users.slice(0, 1).set_column(
        users.schema.get_field_index("_airbyte_raw_id"), "_airbyte_raw_id", pa.array(["other"])
    )
    iceberg.write_table(catalog, USERS.identifier, pa.concat_tables([users, again]))
    result = run_checks(USERS)["primary_key_unique"]
    assert not result.passed
    assert result.metadata["duplicate_id_updated_at"].value == 1
    assert result.metadata["duplicate_airbyte_raw_id"].value == 0


def test_freshness_fails_on_a_table_never_committed(catalog):
    iceberg.ensure_table(catalog, EVENTS.identifier, EVENTS.schema)
    result = run_checks(EVENTS)["freshness"]
    assert not result.passed


def test_schema_drift_reports_added_and_dropped_columns_and_keeps_all_rows(catalog):
    users = good_users()
    iceberg.write_table(catalog, USERS.identifier, users, mode="append")
    # The source adds `referrer` and stops sending `country` in its next batch.
    batch = standin.generate_user_updates(SMALL, 1).drop_columns(["country"])
    batch = batch.append_column("referrer", pa.array(["ads"] * batch.num_rows))
    iceberg.write_table(catalog, USERS.identifier, batch, mode="append")

    result = run_checks(USERS)["schema_drift"]
    assert not result.passed
    assert result.metadata["added_columns"].value == ["referrer"]
    assert result.metadata["dropped_columns"].value == ["country"]
    # Nothing lost: every row of both batches is there, old countries kept, new column filled.
    stored = iceberg.read_table(catalog, USERS.identifier)
    assert stored.num_rows == users.num_rows + batch.num_rows
    assert stored["country"].null_count == batch.num_rows
    assert pc.sum(pc.equal(stored["referrer"], "ads")).as_py() == batch.num_rows


def test_checks_warn_clearly_when_the_table_is_missing(catalog):
    result = run_checks(USERS)["primary_key_not_null"]
    assert not result.passed
    assert result.severity.value == "WARN"
    assert "raw.users" in result.description


def test_each_table_gets_its_named_checks_in_one_step():
    for stream in (USERS, EVENTS):
        check = build_checks(stream)
        assert {k.name for k in check.check_keys} == {
            f"raw_{stream.name}_{suffix}" for suffix in checks_for(stream)
        }
        assert {k.asset_key for k in check.check_keys} == {stream.key}


def test_null_keys_counts_the_rows_staging_leaves_out_with_examples(catalog):
    """Issue 12 item 8: a null user_id (or event_id, event_ts) is counted and shown (WARN), the
    rows are kept in raw; the primary-key check still passes for a null user_id alone."""
    bad, results = append_corrupted_day(catalog, "user_id", {2: None, 5: None})
    result = results["null_keys"]
    assert not result.passed and result.severity.value == "WARN"
    assert result.metadata["null_user_id"].value == 2
    assert result.metadata["null_event_id"].value == 0
    assert result.metadata["rows_left_out_of_staging"].value == 2
    examples = result.metadata["examples"].value
    assert [e["event_id"] for e in examples] == [
        bad["event_id"][2].as_py(),
        bad["event_id"][5].as_py(),
    ]
    assert all(e["user_id"] is None and e["_airbyte_raw_id"] for e in examples)
    assert "raw.events" in result.description and "left out of staging" in result.description
    assert results["primary_key_not_null"].passed
    assert iceberg.read_table(catalog, EVENTS.identifier).num_rows == bad.num_rows


def test_outside_partitions_counts_events_before_the_first_day_and_in_the_future(catalog):
    """Issue 12 item 9: events before shared.partitions.FIRST_DAY or later than now are counted
    with examples (WARN); rows are kept."""
    bad, results = append_corrupted_day(
        catalog,
        "event_ts",
        {
            0: partition_start() - dt.timedelta(hours=2),
            1: dt.datetime.now(dt.UTC) + dt.timedelta(hours=3),  # future, yet "plausible" (< 1 day)
        },
    )
    result = results["outside_partitions"]
    assert not result.passed and result.severity.value == "WARN"
    assert result.metadata["before_first_partition"].value == 1
    assert result.metadata["in_the_future"].value == 1
    assert result.metadata["first_partition_start"].value == "2026-01-01T00:00:00+00:00"
    assert {e["event_id"] for e in result.metadata["examples"].value} == {
        bad["event_id"][0].as_py(),
        bad["event_id"][1].as_py(),
    }
    assert results["timestamps_plausible"].passed  # not implausible: outside the days
