"""The ``moved_day`` measurement: what it costs a raw sync to find the days its events left.

A sync records the days of the rows it added and the days of the earlier versions of the event
ids it added (``shared.changes.sync_changes``): the second part reads the ``event_id`` and
``event_ts`` columns of the whole history as of the snapshot before the sync. Measured here after
N days of stand-in history, against the sync's own time (the stand-in's sync of the new day:
generation and one Iceberg commit), and against the days-only read it extends.

Each repeat syncs one more day and re-delivers one event of the first day with its timestamp on
that new day (a separate, one-row commit within the same sync window), so the days found must be
exactly the new day and the first day.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from typing import Any


def measure_moved_day(
    home: str, events_per_day: int, days: int, repeats: int, users: int, seed: int
) -> dict[str, Any]:
    """Build ``days`` days of history (one stand-in sync per day), then time ``repeats`` times:
    the sync of one more day, and the look-ups after it."""
    import pyarrow as pa

    from ingestion import standin
    from ingestion.settings import StandInSettings
    from ingestion.streams import EVENTS
    from shared.changes import current_snapshot_id, sync_changes
    from shared.iceberg import open_catalog, write_table
    from shared.partitions import day_of
    from shared.settings import load_settings

    os.environ["DATA_PLATFORM_HOME"] = home
    catalog = open_catalog(load_settings())

    def sizes(n_days: int) -> StandInSettings:
        return StandInSettings(users=users, events_per_day=events_per_day, days=n_days, seed=seed)

    started = time.perf_counter()
    for k in range(1, days + 1):
        standin.sync_stream(catalog, EVENTS, sizes(k))
    history_seconds = time.perf_counter() - started
    first_day = standin.generate_events(sizes(1), 0)

    sync_s, lookup_s, days_only_s, correct = [], [], [], []
    history_rows = added_rows = 0
    found: Any = None
    for rep in range(repeats):
        new_day = days + rep
        table = catalog.load_table(EVENTS.identifier)
        before = current_snapshot_id(table)
        history_rows = int(table.current_snapshot().summary["total-records"])
        t0 = time.perf_counter()
        result = standin.sync_stream(catalog, EVENTS, sizes(new_day + 1))
        sync_s.append(time.perf_counter() - t0)
        added_rows = result.write.rows_written
        # Another event of the first day each time, re-delivered on the new day.
        moved = first_day.slice(rep * 7, 1)
        stamp = dt.datetime.combine(day_of(new_day), dt.time(12), tzinfo=dt.UTC)
        moved = moved.set_column(
            moved.schema.get_field_index("event_ts"),
            moved.schema.field("event_ts"),
            pa.array([stamp], moved.schema.field("event_ts").type),
        )
        write_table(catalog, EVENTS.identifier, moved, mode="append")
        table = catalog.load_table(EVENTS.identifier)

        t0 = time.perf_counter()
        sync_changes(table, before, EVENTS.event_time_column)
        days_only_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        found = sync_changes(table, before, EVENTS.event_time_column, EVENTS.primary_key)
        lookup_s.append(time.perf_counter() - t0)
        correct.append(found.days == (day_of(0), day_of(new_day)) and found.moved_keys == 1)

    return {
        "history_seconds": round(history_seconds, 2),
        "history_rows": history_rows,
        "added_rows": added_rows + 1,
        "added_keys": found.added_keys,
        "sync_seconds": round(statistics.median(sync_s), 4),
        "sync_all": [round(s, 4) for s in sync_s],
        "lookup_seconds": round(statistics.median(lookup_s), 4),
        "lookup_all": [round(s, 4) for s in lookup_s],
        "days_only_seconds": round(statistics.median(days_only_s), 4),
        "days_found_correct": all(correct),
    }
