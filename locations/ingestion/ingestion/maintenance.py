"""Table maintenance of the ingestion location: the tables it owns, compacted and expired hourly,
their orphan files removed daily.

The raw tables (one per stream) and their hashed key indexes (``shared.key_index``): each gets a
commit per sync, so each would otherwise carry every snapshot it ever had; and each sync adds a
small data file to each raw table, which its readers would open one by one, so the raw tables'
small files are rewritten first (``shared.compaction``; the key indexes compact themselves). The job and schedule
are built by ``shared.maintenance.maintenance_definitions`` (the logic lives there); a raw
table's key-index marker and the snapshots after it are kept (``shared.maintenance``).
"""

from __future__ import annotations

from typing import Any

from ingestion.streams import STREAMS, key_index_spec
from shared.maintenance import maintenance_definitions


def owned_tables() -> list[str]:
    """The Iceberg tables this location writes: each stream's raw table, then its key index."""
    tables = [s.identifier for s in STREAMS]
    for stream in STREAMS:
        spec = key_index_spec(stream)
        if spec is not None:
            tables.append(spec.identifier)
    return tables


def compacted_tables() -> list[str]:
    """The tables whose small files the maintenance rewrites: the raw tables."""
    return [s.identifier for s in STREAMS]


def maintenance_defs() -> Any:
    """``ingestion_table_maintenance`` and its schedules ``ingestion_table_maintenance_hourly``
    and ``ingestion_table_maintenance_daily`` (a function: a module may hold one
    ``Definitions`` at module scope, the location's)."""
    return maintenance_definitions("ingestion", owned_tables(), compact=compacted_tables())
