"""Cross-location automation: the dbt models update on their own when raw tables land.

The conditions are the platform's one definition (``shared.automation``), evaluated by
:data:`transformation_automation_sensor` in this location's code server (RUNNING by default, so
that one ingestion run flows through the whole graph). The daemon sees the workspace-wide event
log, so ``raw/*`` materializations from the ingestion location trigger these models although this
location never imports it.

* Daily models (``tag:daily``): the days each raw sync recorded as changed
  (``changed_event_days``, plus the late-data lookback), not every day since the partition start
  (``raw/*`` are unpartitioned, which Dagster maps to every day). The requests become one
  backfill, which the single-run backfill policy turns into one ``dbt build`` per day range.
* Unpartitioned models (``tag:full``): requested when an input changed, without waiting for
  missing days of the daily models.
* Tests tagged ``nightly`` (a whole-table test, whose cost grows with history): their checks run
  once a day in a run of their own (:data:`NIGHTLY_CRON`), not with every run of their model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultSensorStatus,
)

from shared.automation import daily_condition, full_condition
from shared.keys import table_key

#: The daily-partitioned models whose missing days must not hold back the unpartitioned ones.
DAILY_MODEL_KEYS = (table_key("staging", "stg_events"), table_key("marts", "fct_daily_events"))

#: The unpartitioned tables the daily models may read (the dbt sources): their recorded changed
#: days, not "every day", trigger a daily model.
RAW_INPUT_KEYS = (table_key("raw", "events"), table_key("raw", "users"))


def daily_model_condition() -> AutomationCondition:
    """Run the changed days of a daily model once its inputs are present and idle."""
    return daily_condition(unpartitioned_inputs=RAW_INPUT_KEYS)


def full_model_condition() -> AutomationCondition:
    """Rebuild an unpartitioned model when an input changed; missing daily days do not block."""
    return full_condition(ignore_missing=DAILY_MODEL_KEYS)


#: When the ``nightly`` tests run: once a day, after the night's syncs (UTC).
NIGHTLY_CRON = "0 3 * * *"
#: dbt tag of a test that reads a whole table (its cost grows with history): its check runs once a
#: day in a run of its own, not in every run of its model.
NIGHTLY_TAG = "nightly"


def nightly_check_condition() -> AutomationCondition:
    """Evaluate a whole-table check once a day (:data:`NIGHTLY_CRON`), in a run of its own. A
    check with a condition of its own does not ride along with the single runs Dagster's
    automation requests; a daily backfill run still selects every check of its assets, so a run
    with a day window leaves ``nightly`` tests out itself (``transformation.assets.run_dbt``).
    An hourly sync's runs then cost what their days cost, not what the history costs."""
    return AutomationCondition.cron_tick_passed(NIGHTLY_CRON, cron_timezone="UTC")


def condition_for(dbt_resource_props: Mapping[str, Any]) -> AutomationCondition | None:
    """The condition of a dbt node: a model's by its ``daily``/``full`` tag, a test's
    :func:`nightly_check_condition` when tagged ``nightly``; none for other nodes (a test
    without a condition runs with its model)."""
    tags = set(dbt_resource_props.get("tags") or ())
    if dbt_resource_props.get("resource_type") == "test":
        return nightly_check_condition() if NIGHTLY_TAG in tags else None
    if dbt_resource_props.get("resource_type") != "model":
        return None
    if "daily" in tags:
        return daily_model_condition()
    if "full" in tags:
        return full_model_condition()
    return None


# `use_user_code_server` is beta in Dagster 1.13; custom conditions need it, so its warning is
# silenced here rather than shown on every load.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    transformation_automation_sensor = AutomationConditionSensorDefinition(
        "transformation_automation_sensor",
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        # The changed-days condition is Python code of ours: evaluated in this code server.
        use_user_code_server=True,
        description="Evaluates the automation conditions of the dbt models (runs by default).",
    )
