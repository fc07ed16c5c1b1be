"""Cross-location automation: a raw sync rebuilds only the days it changed, across locations.

Evaluates the automation conditions of all three locations on the workspace-wide asset graph
(as the daemon does), reporting the materializations the requested runs would make, hop after
hop until nothing more is requested.
"""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, Definitions
from dagster import evaluate_automation_conditions as evaluate

from data_platform.graph import load_location_defs
from shared.changes import UNKNOWN, changed_days_metadata
from shared.partitions import day_of

pytestmark = pytest.mark.filterwarnings("ignore")

HISTORY = 180
#: Noon of the day after the history: its last day is the newest complete partition.
NOW = dt.datetime.combine(day_of(HISTORY), dt.time(12), tzinfo=dt.UTC)
DAILY = ("staging/stg_events", "marts/fct_daily_events", "analytics/daily_metrics")
FULL = ("staging/stg_users", "staging/stg_user_versions", "marts/dim_users", "ml/user_features")


def workspace_assets() -> Definitions:
    """Every location's assets in one graph, as the daemon sees the workspace (nothing runs).

    The locations' resources are equal but distinct objects under the same keys (``iceberg``),
    which Definitions.merge refuses; one of each key is enough to evaluate conditions.
    """
    assets, resources = [], {}
    for defs in load_location_defs().values():
        assets.extend(defs.assets or [])
        for key, resource in (defs.resources or {}).items():
            resources.setdefault(key, resource)
    return Definitions(assets=assets, resources=resources)


def report(instance, key: str, partitions=None, metadata=None):
    for p in partitions or [None]:
        instance.report_runless_asset_event(
            AssetMaterialization(AssetKey(key.split("/")), partition=p, metadata=metadata)
        )


def raw_sync(instance, days):
    """A raw sync as the ingestion location records it: the days its rows fall on."""
    report(instance, "raw/users")
    report(instance, "raw/events", metadata=changed_days_metadata(days))


class Automation:
    """The daemon's loop: evaluate, run what was requested (reported as materialized), repeat."""

    def __init__(self):
        self.defs = workspace_assets()
        self.instance = DagsterInstance.ephemeral()
        self.cursor = None
        assert self.tick() == {}  # the first evaluation only sets the cursor

    def tick(self) -> dict[str, set]:
        result = evaluate(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=NOW
        )
        self.cursor = result.cursor
        requested = {}
        for r in result.results:
            if r.true_subset.size:
                subset = r.true_subset
                keys = (
                    set(subset.expensively_compute_partition_keys())
                    if subset.is_partitioned
                    else {None}
                )
                requested[r.key.to_user_string()] = keys
        return requested

    def settle(self) -> dict[str, set]:
        """Tick until quiet; every requested partition is materialized; all requests, merged."""
        total: dict[str, set] = {}
        for _ in range(10):
            got = self.tick()
            if not got:
                return total
            for key, partitions in got.items():
                total.setdefault(key, set()).update(partitions)
                report(self.instance, key, sorted(partitions) if None not in partitions else None)
        raise AssertionError(f"automation did not settle: {total}")


def days(*indexes: int) -> set[str]:
    return {day_of(i).isoformat() for i in indexes}


@pytest.fixture(scope="module")
def history():
    """180 days of history, built by the automation itself from one initial raw sync."""
    auto = Automation()
    raw_sync(auto.instance, [day_of(i) for i in range(HISTORY)])
    built = auto.settle()
    for key in DAILY:
        assert built[key] == days(*range(HISTORY)), key
    for key in FULL:
        assert built[key] == {None}, key
    return auto


def test_a_one_day_sync_requests_that_day_plus_lookback_across_the_three_locations(history):
    newest = HISTORY - 1
    raw_sync(history.instance, [day_of(newest)])
    got = history.settle()
    # Default lookback: 1 day. The unpartitioned models are rebuilt once each.
    assert got == {
        **{key: days(newest - 1, newest) for key in DAILY},
        **{key: {None} for key in FULL},
    }
    assert history.settle() == {}  # nothing new: nothing requested


def test_a_late_row_for_an_old_day_requests_that_day(history):
    old = HISTORY - 100
    raw_sync(history.instance, [day_of(old)])
    got = history.settle()
    assert {key: got[key] for key in DAILY} == {key: days(old - 1, old) for key in DAILY}


def test_lookback_is_configurable_and_zero_requests_exactly_the_changed_days(history, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS", "0")
    raw_sync(history.instance, [day_of(7), day_of(120)])
    got = history.settle()
    assert {key: got[key] for key in DAILY} == {key: days(7, 120) for key in DAILY}


def test_a_sync_that_added_no_event_rebuilds_no_day(history):
    raw_sync(history.instance, [])
    got = history.settle()
    assert not set(got) & set(DAILY), got
    assert {key: got[key] for key in FULL} == {key: {None} for key in FULL}


def test_unknown_days_rebuild_every_day(history):
    """A sync whose days could not be read (catalog unreachable) is taken as changing them all."""
    raw_sync(history.instance, UNKNOWN)
    got = history.settle()
    assert {key: len(got[key]) for key in DAILY} == {key: HISTORY for key in DAILY}


def test_an_event_moved_from_100_days_back_requests_both_days(history, tmp_path, monkeypatch):
    """A sync re-delivers an event of 100 days back with its timestamp on the newest day: the
    days recorded from what it committed (``shared.changes``, the stream's key and day columns)
    are the newest day and the day the event left, and each daily asset downstream runs exactly
    those two days plus lookback (the old day still holds the event's old version)."""
    import pyarrow as pa

    from ingestion.streams import EVENTS
    from shared.changes import current_snapshot_id, sync_changes
    from shared.iceberg import open_catalog, write_table
    from shared.settings import load_settings

    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    catalog = open_catalog(load_settings())

    def rows(ids, day_indexes):
        stamps = [dt.datetime.combine(day_of(i), dt.time(12), tzinfo=dt.UTC) for i in day_indexes]
        return pa.table({"event_id": ids, "event_ts": pa.array(stamps, pa.timestamp("us", "UTC"))})

    # The raw table's history: one event per day, committed 30 days at a time.
    for first in range(0, HISTORY - 1, 30):
        span = range(first, min(first + 30, HISTORY - 1))
        write_table(catalog, EVENTS.identifier, rows([f"e{i}" for i in span], span), mode="append")
    newest, old = HISTORY - 1, HISTORY - 100
    table = catalog.load_table(EVENTS.identifier)
    before = current_snapshot_id(table)
    write_table(
        catalog, EVENTS.identifier, rows([f"e{old}", "new"], [newest, newest]), mode="append"
    )
    table = catalog.load_table(EVENTS.identifier)
    changes = sync_changes(table, before, EVENTS.event_time_column, EVENTS.primary_key)
    assert changes.days == (day_of(old), day_of(newest))
    assert (changes.redelivered_keys, changes.moved_keys) == (1, 1)

    report(history.instance, "raw/users")
    report(history.instance, "raw/events", metadata=changed_days_metadata(changes))
    got = history.settle()
    assert got == {
        **{key: days(old - 1, old, newest - 1, newest) for key in DAILY},
        **{key: {None} for key in FULL},
    }
