"""The ingestion code location: ``raw/*`` assets, their checks, jobs, sensor and schedules.

Importing this module makes no network call and reads no setting: the assets are declared from
``ingestion.streams`` and the mode (local stand-in or Airbyte) is chosen when a run starts.
"""

from __future__ import annotations

from dagster import Definitions

from ingestion.assets import airbyte_raw_sync
from ingestion.checks import RAW_CHECKS
from ingestion.jobs import ingestion_job, landing_sensor, raw_sync_schedule
from ingestion.maintenance import maintenance_defs
from ingestion.resources import AirbyteSyncResource
from ingestion.streams import STREAMS
from shared.catalog import with_code_references
from shared.monitoring import monitoring_definitions
from shared.resources import IcebergCatalogResource, ObjectStoreResource

# Metrics and failure alerts: sensors only when the environment configures them (deploy/README.md).
# One module-level Definitions: Dagster refuses a module that defines two.
defs = Definitions.merge(
    Definitions(
        assets=with_code_references([airbyte_raw_sync]),
        asset_checks=RAW_CHECKS,
        jobs=[ingestion_job],
        schedules=[raw_sync_schedule],
        sensors=[landing_sensor],
        resources={
            "airbyte": AirbyteSyncResource(),
            "iceberg": IcebergCatalogResource(),
            "object_store": ObjectStoreResource(),
        },
    ),
    # Freshness: Dagster's checks for the raw tables this location owns, on their own schedule.
    monitoring_definitions("ingestion", freshness={s.key: s.freshness for s in STREAMS}),
    # Old snapshots of the raw tables and key indexes expired hourly (shared.maintenance).
    maintenance_defs(),
)
