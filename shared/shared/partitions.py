"""Partitioning shared by every location, so partition keys line up across the graph."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition

#: The first day of data the platform knows; the local stand-in generates events from this day.
FIRST_DAY = dt.date(2026, 1, 1)

#: Daily partitions (UTC) used by every daily-partitioned asset of every location. Keys look like
#: ``2026-01-01``. A day's partition covers ``[day 00:00, next day 00:00)`` UTC.
daily_partitions = DailyPartitionsDefinition(start_date=FIRST_DAY.isoformat(), timezone="UTC")


def day_of(index: int) -> dt.date:
    """The ``index``-th day of data (0 is :data:`FIRST_DAY`)."""
    return FIRST_DAY + dt.timedelta(days=index)
