"""The 06:00 UTC schedule requests yesterday's partition."""

from __future__ import annotations

import datetime as dt

from dagster import DefaultScheduleStatus, RunRequest, SkipReason, build_schedule_context

from analytics.schedules import daily_metrics_schedule, partition_for_tick


def test_tick_requests_yesterdays_partition():
    tick = dt.datetime(2026, 3, 15, 6, 0, tzinfo=dt.UTC)
    request = daily_metrics_schedule(build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2026-03-14"
    assert request.run_key == "2026-03-14"


def test_tick_in_another_timezone_uses_the_utc_day():
    # 06:00 UTC is 01:00 in New York: the partition is still the previous UTC day.
    ny = dt.timezone(dt.timedelta(hours=-5))
    assert partition_for_tick(dt.datetime(2026, 3, 15, 1, 0, tzinfo=ny)) == "2026-03-14"


def test_tick_before_the_first_day_skips():
    tick = dt.datetime(2026, 1, 1, 6, 0, tzinfo=dt.UTC)
    result = daily_metrics_schedule(build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(result, SkipReason)


def test_schedule_definition():
    assert daily_metrics_schedule.name == "daily_metrics_schedule"
    assert daily_metrics_schedule.cron_schedule == "0 6 * * *"
    assert daily_metrics_schedule.execution_timezone == "UTC"
    assert daily_metrics_schedule.default_status == DefaultScheduleStatus.STOPPED
    assert daily_metrics_schedule.job_name == "daily_metrics_job"
