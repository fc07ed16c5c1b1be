"""Which UTC event days a raw sync changed: the contract between a raw table and its daily readers.

Every way raw data arrives (the local stand-in, a landing batch, an Airbyte sync in prod) records
in the raw asset's materialization the UTC days of the rows it added, under ONE metadata key,
:data:`CHANGED_EVENT_DAYS` (a JSON list of ISO dates, plus :data:`CHANGED_EVENT_DAYS_COUNT`).
Downstream daily assets run for exactly those days (plus a late-data lookback): see
``shared.automation``.

The days are computed from what the sync committed, not from what it meant to write: the data
files added by the Iceberg snapshots between the table's snapshot before the sync and its snapshot
after it, reading the day column only. A concurrent writer's snapshots in between are counted too,
which can only add days (a superset is safe: a day re-run is idempotent).

Values of the key:

* a list (possibly empty): exactly these days changed;
* ``null``: the sync landed rows but the days could not be read (the catalog was unreachable):
  downstream must treat every day as changed;
* absent: the asset does not carry event days (``raw/users``, unpartitioned models); it changes
  no day of a daily asset.

This module imports pyiceberg/pyarrow only inside the functions that read a table: the automation
conditions import it at definitions load (which must stay cheap).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Metadata key of a raw materialization: the UTC event days of the rows the sync added.
CHANGED_EVENT_DAYS = "changed_event_days"
#: Metadata key: how many days :data:`CHANGED_EVENT_DAYS` lists (for the UI and plots).
CHANGED_EVENT_DAYS_COUNT = "changed_event_days_count"


class Unknown:
    """The days a materialization changed are unknown (``null``): every day may have changed."""

    def __repr__(self) -> str:
        return "UNKNOWN"


#: See :class:`Unknown`.
UNKNOWN = Unknown()


def current_snapshot_id(table: Any) -> int | None:
    """The table's current snapshot id (None for a table without snapshot)."""
    snapshot = table.current_snapshot() if table is not None else None
    return snapshot.snapshot_id if snapshot is not None else None


def snapshots_since(table: Any, since_snapshot_id: int | None) -> list[Any]:
    """The snapshots committed after ``since_snapshot_id``, newest first.

    Walks the current snapshot's ancestry back to ``since_snapshot_id`` (all of it when None).
    When ``since_snapshot_id`` is no ancestor (the table was replaced, or the snapshot expired),
    the whole ancestry is returned: more days, never fewer.
    """
    out = []
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != since_snapshot_id:
        out.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return out


def added_data_files(table: Any, snapshot: Any) -> list[Any]:
    """The data files ``snapshot`` added, read from the manifests it wrote only (the cost
    follows the commit, not the history)."""
    from pyiceberg.manifest import DataFileContent, ManifestEntryStatus

    files = []
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue  # written by an earlier commit: holds no file this one added
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if (
                entry.status == ManifestEntryStatus.ADDED
                and entry.snapshot_id == snapshot.snapshot_id
                and entry.data_file.content == DataFileContent.DATA
            ):
                files.append(entry.data_file)
    return files


def utc_days(values: Any) -> set[dt.date]:
    """The distinct UTC days of an Arrow array of timestamps (nulls ignored)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        # Arrow stores zoned timestamps as UTC instants: dropping the zone keeps the UTC
        # wall-clock, whose date is the UTC day.
        values = values.cast(pa.timestamp(values.type.unit))
    days = pc.unique(values.cast(pa.date32())).drop_null()
    return set(days.to_pylist())


def changed_days(table: Any, since_snapshot_id: int | None, day_column: str) -> list[dt.date]:
    """The UTC days (sorted) of the rows added to ``table`` after ``since_snapshot_id``.

    Reads ``day_column`` only, from the data files the new snapshots added (pyiceberg's Arrow
    reader over exactly those files: it has no "rows added between two snapshots" scan). Rows an
    overwrite deleted are not counted: raw tables are append-only.
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    schema = table.schema()
    if day_column not in schema.column_names:
        return []
    files = [
        f for s in snapshots_since(table, since_snapshot_id) for f in added_data_files(table, s)
    ]
    if not files:
        return []
    scan = ArrowScan(table.metadata, table.io, schema.select(day_column), AlwaysTrue())
    days: set[dt.date] = set()
    for batch in scan.to_record_batches([FileScanTask(f) for f in files]):
        days |= utc_days(batch.column(0))
    return sorted(days)


def changed_days_metadata(days: Iterable[dt.date] | Unknown) -> dict[str, Any]:
    """The materialization metadata recording ``days`` (or :data:`UNKNOWN`)."""
    from dagster import MetadataValue

    if isinstance(days, Unknown):
        return {CHANGED_EVENT_DAYS: MetadataValue.json(None), CHANGED_EVENT_DAYS_COUNT: -1}
    listed = sorted({d.isoformat() for d in days})
    return {
        CHANGED_EVENT_DAYS: MetadataValue.json(listed),
        CHANGED_EVENT_DAYS_COUNT: len(listed),
    }


def days_in_metadata(metadata: Mapping[str, Any]) -> list[dt.date] | Unknown | None:
    """The days a materialization's metadata records: a list, :data:`UNKNOWN`, or None when the
    asset carries no event days (see the module docstring)."""
    if CHANGED_EVENT_DAYS not in metadata:
        return None
    value = metadata[CHANGED_EVENT_DAYS]
    value = getattr(value, "value", value)  # a MetadataValue, or a plain value
    if value is None:
        return UNKNOWN
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"{CHANGED_EVENT_DAYS} must be a list of ISO dates, got {value!r}")
    return [dt.date.fromisoformat(str(v)) for v in value]


def with_lookback(days: Iterable[dt.date], lookback_days: int) -> set[dt.date]:
    """Each day and the ``lookback_days`` days before it.

    Why a lookback at all, when the changed days are exact: a day's partition exists only once the
    day is over, so rows for today that land before midnight are recorded when no partition can
    take them; the first sync after midnight (which changes the new day) then also re-runs the
    day before. The default of 1 covers that; more covers sources known to deliver late.
    """
    if lookback_days < 0:
        raise ValueError(f"lookback_days must be >= 0, got {lookback_days}")
    return {d - dt.timedelta(days=k) for d in days for k in range(lookback_days + 1)}
