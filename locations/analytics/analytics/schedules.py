"""The daily_metrics job and its 06:00 UTC schedule for yesterday's partition."""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from analytics.sources import DAILY_METRICS_KEY
from shared.partitions import FIRST_DAY, daily_partitions

#: Cron of the schedule, in :data:`SCHEDULE_TIMEZONE`.
DAILY_METRICS_CRON = "0 6 * * *"
SCHEDULE_TIMEZONE = "UTC"

daily_metrics_job = define_asset_job(
    "daily_metrics_job",
    selection=AssetSelection.assets(DAILY_METRICS_KEY),
    partitions_def=daily_partitions,
    description="Materializes analytics/daily_metrics for a day or a range of days.",
)


def partition_for_tick(tick: dt.datetime) -> str | None:
    """Yesterday's partition key (UTC) for a tick, or None before the first day of data.

    At 06:00 UTC the previous UTC day is complete, and the dbt partitions it reads were
    materialized by the upstream automation after the nightly ingestion.
    """
    day = tick.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    if day < FIRST_DAY:
        return None
    return day.isoformat()


@schedule(
    name="daily_metrics_schedule",
    cron_schedule=DAILY_METRICS_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job=daily_metrics_job,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 06:00 UTC, computes yesterday's daily_metrics partition. Stopped by "
    "default: turn it on in the UI (Automation) in deployments that want it.",
)
def daily_metrics_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    """One run request for yesterday's partition, keyed by the day (a tick re-evaluated does not
    launch a second run)."""
    key = partition_for_tick(context.scheduled_execution_time)
    if key is None:
        return SkipReason(f"no data before {FIRST_DAY.isoformat()}")
    return RunRequest(run_key=key, partition_key=key)
