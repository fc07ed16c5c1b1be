"""user_features' default as-of day (the latest event day) from stg_events' manifests."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from analytics.features import latest_event_date
from analytics.io import metadata_max, read_upstream
from analytics.sources import STG_EVENTS
from shared.iceberg import write_table
from shared.resources import IcebergCatalogResource


def write_day(catalog, make, day: int, n: int = 3) -> None:
    rows = [make.event(f"e{day}-{i}", i + 1, "click", make.ts(day, 6 * i)) for i in range(n)]
    write_table(
        catalog,
        "staging.stg_events",
        pa.Table.from_pylist(rows, schema=make.stg_events_schema),
        mode="overwrite",
        overwrite_filter=f"event_date = '{dt.date(2026, 1, day)}'",
        partition_by_day="event_date",
    )


def test_the_latest_day_from_metadata_is_the_scans(catalog, make):
    iceberg = IcebergCatalogResource()
    for day in range(1, 6):  # daily commits, as the daily runs write
        write_day(catalog, make, day)
        read = read_upstream(iceberg, STG_EVENTS)
        assert metadata_max(iceberg, read, STG_EVENTS, "event_date") == dt.date(2026, 1, day)
        assert latest_event_date(read.frame) == dt.date(2026, 1, day)
    old = read_upstream(iceberg, STG_EVENTS)
    write_day(catalog, make, 5, n=0)  # the latest day emptied by a re-run
    read = read_upstream(iceberg, STG_EVENTS)
    assert metadata_max(iceberg, read, STG_EVENTS, "event_date") == dt.date(2026, 1, 4)
    assert latest_event_date(read.frame) == dt.date(2026, 1, 4)
    # The snapshot the events were read at decides, not a later commit.
    assert metadata_max(iceberg, old, STG_EVENTS, "event_date") == dt.date(2026, 1, 5)
