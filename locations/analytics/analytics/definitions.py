"""The analytics code location: ML features and daily metrics over the dbt marts.

Cheap to import: no catalog is opened and no settings are read until a run uses the ``iceberg``
resource.
"""

from __future__ import annotations

from dagster import Definitions

from analytics.assets import daily_metrics, user_features
from analytics.automation import analytics_automation_sensor
from analytics.maintenance import maintenance_defs
from analytics.schedules import daily_metrics_job, daily_metrics_schedule
from shared.catalog import with_code_references
from shared.monitoring import monitoring_definitions
from shared.resources import IcebergCatalogResource

# Metrics and failure alerts: sensors only when the environment configures them (deploy/README.md).
# One module-level Definitions: Dagster refuses a module that defines two.
defs = Definitions.merge(
    Definitions(
        assets=with_code_references([user_features, daily_metrics]),
        jobs=[daily_metrics_job],
        schedules=[daily_metrics_schedule],
        sensors=[analytics_automation_sensor],
        resources={"iceberg": IcebergCatalogResource()},
    ),
    monitoring_definitions("analytics"),
    # Old snapshots of this location's tables expired hourly (shared.maintenance).
    maintenance_defs(),
)
