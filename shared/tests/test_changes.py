"""Changed event days: computed from the snapshots a sync committed, reading the day column."""

import datetime as dt

import pyarrow as pa
import pytest

from shared.changes import (
    CHANGED_EVENT_DAYS,
    CHANGED_EVENT_DAYS_COUNT,
    UNKNOWN,
    changed_days,
    changed_days_metadata,
    current_snapshot_id,
    days_in_metadata,
    utc_days,
    with_lookback,
)
from shared.iceberg import open_catalog, write_table
from shared.settings import SettingsError, late_data_lookback_days, load_settings

UTC = dt.UTC


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())


def events(*stamps: dt.datetime) -> pa.Table:
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(len(stamps))],
            "event_ts": pa.array(list(stamps), pa.timestamp("us", "UTC")),
        }
    )


def test_utc_day_of_a_zoned_timestamp_is_its_utc_date():
    # 23:30 at UTC-2 on Jan 1 is 01:30 UTC on Jan 2; 00:30 at UTC+2 on Jan 3 is Jan 2 in UTC.
    stamps = pa.array(
        [
            dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
            dt.datetime(2026, 1, 3, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            None,
        ],
        pa.timestamp("us", "Europe/Berlin"),
    )
    assert utc_days(stamps) == {dt.date(2026, 1, 2)}


def test_days_come_from_the_snapshots_added_since_the_marker(catalog):
    first = write_table(
        catalog,
        "raw.events",
        events(dt.datetime(2026, 1, 1, 5, tzinfo=UTC), dt.datetime(2026, 1, 2, 23, 59, tzinfo=UTC)),
        mode="append",
    )
    table = catalog.load_table("raw.events")
    assert changed_days(table, None, "event_ts") == [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]
    marker = current_snapshot_id(table)
    assert marker is not None and str(marker) == str(first.snapshot_id)

    # Two commits after the marker (e.g. a sync and a concurrent writer): both are counted.
    write_table(catalog, "raw.events", events(dt.datetime(2026, 3, 5, tzinfo=UTC)), mode="append")
    write_table(catalog, "raw.events", events(dt.datetime(2025, 12, 31, tzinfo=UTC)), mode="append")
    table = catalog.load_table("raw.events")
    assert changed_days(table, marker, "event_ts") == [dt.date(2025, 12, 31), dt.date(2026, 3, 5)]
    # Nothing since the current snapshot; a column the table lacks has no days.
    assert changed_days(table, current_snapshot_id(table), "event_ts") == []
    assert changed_days(table, None, "no_such_column") == []


def test_metadata_round_trip_and_unknown():
    meta = changed_days_metadata([dt.date(2026, 1, 3), dt.date(2026, 1, 1), dt.date(2026, 1, 3)])
    assert meta[CHANGED_EVENT_DAYS].value == ["2026-01-01", "2026-01-03"]
    assert meta[CHANGED_EVENT_DAYS_COUNT] == 2
    assert days_in_metadata(meta) == [dt.date(2026, 1, 1), dt.date(2026, 1, 3)]
    assert days_in_metadata(changed_days_metadata(UNKNOWN)) is UNKNOWN
    assert days_in_metadata({"rows_written": 3}) is None
    with pytest.raises(ValueError, match=CHANGED_EVENT_DAYS):
        days_in_metadata({CHANGED_EVENT_DAYS: "2026-01-01"})


def test_lookback_adds_the_days_before_each_changed_day():
    d = dt.date(2026, 4, 10)
    assert with_lookback([d], 0) == {d}
    assert with_lookback([d], 1) == {d, dt.date(2026, 4, 9)}
    assert len(with_lookback([d, dt.date(2026, 1, 1)], 2)) == 6
    with pytest.raises(ValueError):
        with_lookback([d], -1)


def test_lookback_setting_is_validated():
    assert late_data_lookback_days({}) == 1
    assert late_data_lookback_days({"DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS": "0"}) == 0
    with pytest.raises(SettingsError, match="DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS"):
        late_data_lookback_days({"DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS": "soon"})
