"""The transformation code location: the dbt project as assets and asset checks.

Cheap to import: the assets are declared from ``dbt/target/manifest.json`` (prepared at image
build time with ``python -m transformation.project prepare``, or on first load of a fresh clone)
without importing dbt or dagster-dbt (``transformation.manifest``), nothing connects anywhere,
and settings are read when a run uses the resources.
"""

from __future__ import annotations

import datetime as dt

from dagster import Definitions

from shared.catalog import with_code_references
from shared.keys import table_key
from shared.monitoring import monitoring_definitions
from shared.resources import IcebergCatalogResource
from transformation.assets import DbtProjectResource, dbt_daily_models, dbt_models
from transformation.automation import transformation_automation_sensor
from transformation.maintenance import maintenance_defs

#: The marts are rebuilt whenever raw data arrives (hourly syncs, automation conditions): older
#: than a day and two hours means syncs or dbt stopped, as for the raw tables.
MARTS_FRESHNESS = {
    table_key("marts", "dim_users"): dt.timedelta(hours=26),
    table_key("marts", "fct_daily_events"): dt.timedelta(hours=26),
}

# Metrics and failure alerts: sensors only when the environment configures them (deploy/README.md).
# One module-level Definitions: Dagster refuses a module that defines two.
defs = Definitions.merge(
    Definitions(
        assets=with_code_references([dbt_daily_models, dbt_models]),
        sensors=[transformation_automation_sensor],
        resources={
            "dbt": DbtProjectResource(),
            "iceberg": IcebergCatalogResource(),
        },
    ),
    # Freshness: Dagster's checks for the marts this location owns (what other teams read), on
    # their own schedule; staging follows the same runs.
    monitoring_definitions("transformation", freshness=MARTS_FRESHNESS),
    # Old snapshots of the models' tables expired hourly (shared.maintenance).
    maintenance_defs(),
)
