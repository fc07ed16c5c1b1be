"""Cross-location automation: analytics assets update on their own when the dbt marts do.

Declarative automation conditions, the platform's one definition (``shared.automation``),
evaluated by :data:`analytics_automation_sensor` in this location's code server (RUNNING by
default so that one ingestion run flows through the graph without a click). The daemon sees the
workspace-wide event log, so upstream materializations from the transformation location are seen
although analytics never imports it. Asset sensors would also work, but need a cursor and a job
per edge; conditions are declared on the asset and their evaluations are visible in the UI ("why
did/didn't it run").

* ``daily_metrics``: a day is requested when that day's ``staging/stg_events`` or
  ``marts/fct_daily_events`` partition was updated (identity partition mapping), once none of
  its inputs is missing or in progress. ``marts/dim_users`` (unpartitioned, so mapped to EVERY
  day) records no changed days, so it is not a trigger: a users refresh does not recompute every
  day since 2026-01-01.
* ``user_features``: requested when ``marts/dim_users`` or ``staging/stg_user_versions``
  updated, once ``marts/dim_users`` exists and no input is in progress. Missing days of
  ``stg_events`` do not block it, and an update of ``stg_events`` alone does not trigger it: its
  all-time features come from dim_users' totals, which the transformation location rebuilds
  after every change of stg_events, so running after that rebuild (and reading stg_events'
  last 30 days then) is what keeps the two consistent; running in between would read a mart
  older than the events and fall back to the full history (``analytics.assets``).

Requests for many days of ``daily_metrics`` become one backfill (``emit_backfills``), which its
``BackfillPolicy.single_run()`` executes as one run per day range.
"""

from __future__ import annotations

import warnings

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultSensorStatus,
)

from analytics.sources import (
    DAILY_METRICS_KEY,
    DIM_USERS,
    STG_EVENTS,
    USER_FEATURES_KEY,
)
from shared.automation import daily_condition, full_condition


def daily_metrics_condition() -> AutomationCondition:
    """Run a day of daily_metrics when its upstream day changed (see module docstring)."""
    return daily_condition(unpartitioned_inputs=[DIM_USERS.key])


def user_features_condition() -> AutomationCondition:
    """Refresh user_features after dim_users (or the user versions) changed (see module
    docstring)."""
    return full_condition(ignore_missing=[STG_EVENTS.key], ignore_updates=[STG_EVENTS.key])


# `use_user_code_server` is beta in Dagster 1.13; custom conditions need it, so its warning is
# silenced here rather than shown on every load.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    analytics_automation_sensor = AutomationConditionSensorDefinition(
        "analytics_automation_sensor",
        target=AssetSelection.assets(USER_FEATURES_KEY, DAILY_METRICS_KEY),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        # The shared daily condition is Python code of ours: evaluated in this code server.
        use_user_code_server=True,
        description="Evaluates the automation conditions of the analytics assets (runs by default).",
    )
