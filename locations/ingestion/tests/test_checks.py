"""Raw-table checks: each passes on good data and fails on bad data."""

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ingestion import standin
from ingestion.checks import (
    CHECKS,
    build_checks,
    duplicate_groups,
    freshness,
    null_counts,
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
    return {suffix: run_check(stream, suffix, resource) for suffix in CHECKS}


def good_users() -> pa.Table:
    return pa.concat_tables(
        [standin.generate_users_base(SMALL), standin.generate_user_updates(SMALL, 0)]
    )


def good_events() -> pa.Table:
    return pa.concat_tables([standin.generate_events(SMALL, d) for d in range(SMALL.days)])


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


# ---- the asset checks on real Iceberg tables ------------------------------------------------


def test_all_checks_pass_on_stand_in_data(catalog):
    iceberg.write_table(catalog, USERS.identifier, good_users())
    iceberg.write_table(catalog, EVENTS.identifier, good_events())
    for stream in (USERS, EVENTS):
        results = run_checks(stream)
        assert set(results) == {"primary_key_not_null", "primary_key_unique", "freshness",
                                "schema_drift", "timestamps_plausible",
                                "string_sizes"}  # fmt: skip
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


def test_each_table_gets_its_four_named_checks_in_one_step():
    for stream in (USERS, EVENTS):
        check = build_checks(stream)
        assert {k.name for k in check.check_keys} == {
            f"raw_{stream.name}_{suffix}" for suffix in CHECKS
        }
        assert {k.asset_key for k in check.check_keys} == {stream.key}
