"""Cross-location automation: analytics assets update on their own when the dbt marts do.

Choice: declarative automation conditions on the analytics assets, evaluated by
:data:`analytics_automation_sensor` (an ``AutomationConditionSensorDefinition`` that the daemon
started by ``dagster dev`` runs; RUNNING by default so that one ingestion run flows through the
graph without a click). The daemon evaluates conditions on the workspace-wide asset graph, so
upstream materializations from the transformation location are seen although analytics never
imports it. Asset sensors would also work, but need a cursor and a job per edge; conditions are
declared on the asset and their evaluations are visible in the UI ("why did/didn't it run").

Why not ``AutomationCondition.eager()``: it only considers the LATEST time partition (today's
window, while the local data starts on 2026-01-01), and its "no missing dependency" guard on an
unpartitioned asset depending on a daily-partitioned one waits until EVERY day since 2026-01-01
exists upstream. The conditions below keep eager's structure without those two limits:

* ``daily_metrics``: a day is requested when that day's ``staging/stg_events`` or
  ``marts/fct_daily_events`` partition was updated (identity partition mapping), once none of
  its inputs is missing or in progress. ``marts/dim_users`` (unpartitioned, so mapped to EVERY
  day) is not a trigger, or each users refresh would recompute every day since 2026-01-01.
* ``user_features``: requested when any input updated, once ``marts/dim_users`` exists and no
  input is in progress. Missing days of ``stg_events`` do not block it.

Requests for many days of ``daily_metrics`` become one backfill (``emit_backfills``), which its
``BackfillPolicy.single_run()`` executes as one run over the whole range.
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

from analytics.sources import (
    DAILY_METRICS_KEY,
    DIM_USERS,
    STG_EVENTS,
    USER_FEATURES_KEY,
)


def daily_metrics_condition() -> AutomationCondition:
    """Run a day of daily_metrics when its upstream day changed (see module docstring)."""
    return (
        AutomationCondition.any_deps_updated()
        .ignore(AssetSelection.assets(DIM_USERS.key))
        .since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("upstream_day_updated")


def user_features_condition() -> AutomationCondition:
    """Refresh user_features when any upstream changed (see module docstring)."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_missing().ignore(AssetSelection.assets(STG_EVENTS.key))
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("upstream_updated")


analytics_automation_sensor = AutomationConditionSensorDefinition(
    "analytics_automation_sensor",
    target=AssetSelection.assets(USER_FEATURES_KEY, DAILY_METRICS_KEY),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the automation conditions of the analytics assets (runs by default).",
)
