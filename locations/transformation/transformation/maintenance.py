"""Table maintenance of the transformation location: the dbt models' tables, expired hourly,
their orphan files removed daily.

Every dbt run commits to the tables of the models it builds (staging and marts); the daily ones
expire snapshots in their own commits once they are an hour old (``shared.iceberg``), the
others never did. The job and schedule are built by ``shared.maintenance.maintenance_definitions``
(the logic lives there); the tables are the models' asset keys (a key names its Iceberg table).
"""

from __future__ import annotations

from typing import Any

from shared.keys import table_identifier
from shared.maintenance import maintenance_definitions
from transformation.assets import dbt_daily_models, dbt_models


def owned_tables() -> list[str]:
    """The Iceberg tables of this location's dbt models, in key order."""
    keys = {k for assets in (dbt_daily_models, dbt_models) for k in assets.keys}
    return sorted(table_identifier(k) for k in keys)


def maintenance_defs() -> Any:
    """``transformation_table_maintenance`` and its hourly and daily schedules (a function:
    a module may hold one ``Definitions`` at module scope, the location's)."""
    return maintenance_definitions("transformation", owned_tables())
