"""Cross-location automation: the dbt models update on their own when raw tables land.

Declarative automation conditions, evaluated by :data:`transformation_automation_sensor` in the
daemon (``dagster dev`` runs one; RUNNING by default so that one ingestion run flows through the
whole graph), the same choice as the analytics location (see ``analytics.automation``): the
daemon sees the workspace-wide graph, so ``raw/*`` materializations from the ingestion location
trigger these models although this location never imports it.

Why not ``AutomationCondition.eager()``: it considers only the latest daily partition (today),
while the data starts on 2026-01-01; and for the unpartitioned models its "no missing
dependency" guard would wait until every day since 2026-01-01 of the daily models exists.

* Daily models (``tag:daily``): a day is requested when an input changed (``raw/events`` is
  unpartitioned, so a sync marks every day: the requests become one backfill, which the
  single-run backfill policy turns into one ``dbt build`` over the whole range).
* Unpartitioned models (``tag:full``): requested when an input changed, without waiting for
  missing days of the daily models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

from shared.keys import table_key

#: The daily-partitioned models whose missing days must not hold back the unpartitioned ones.
DAILY_MODEL_KEYS = (table_key("staging", "stg_events"), table_key("marts", "fct_daily_events"))


def daily_model_condition() -> AutomationCondition:
    """Run the changed days of a daily model once its inputs are present and idle."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("upstream_day_updated")


def full_model_condition() -> AutomationCondition:
    """Rebuild an unpartitioned model when an input changed; missing daily days do not block."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_missing().ignore(AssetSelection.assets(*DAILY_MODEL_KEYS))
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("upstream_updated")


def condition_for(dbt_resource_props: Mapping[str, Any]) -> AutomationCondition | None:
    """The condition of a dbt node: by its ``daily``/``full`` tag; none for other nodes."""
    if dbt_resource_props.get("resource_type") != "model":
        return None
    tags = set(dbt_resource_props.get("tags") or ())
    if "daily" in tags:
        return daily_model_condition()
    if "full" in tags:
        return full_model_condition()
    return None


transformation_automation_sensor = AutomationConditionSensorDefinition(
    "transformation_automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the automation conditions of the dbt models (runs by default).",
)
