"""Table maintenance of the analytics location: its tables' old snapshots expired hourly, orphan
files removed daily.

``analytics.daily_metrics`` and ``ml.user_features`` get a commit per run. The job and schedule
are built by ``shared.maintenance.maintenance_definitions`` (the logic lives there); the tables
are the assets' keys (a key names its Iceberg table).
"""

from __future__ import annotations

from typing import Any

from analytics.assets import daily_metrics, user_features
from shared.keys import table_identifier
from shared.maintenance import maintenance_definitions


def owned_tables() -> list[str]:
    """The Iceberg tables of this location's assets, in key order."""
    keys = {k for assets in (daily_metrics, user_features) for k in assets.keys}
    return sorted(table_identifier(k) for k in keys)


def maintenance_defs() -> Any:
    """``analytics_table_maintenance`` and its hourly and daily schedules (a function:
    a module may hold one ``Definitions`` at module scope, the location's)."""
    return maintenance_definitions("analytics", owned_tables())
