"""Which UTC event days a raw sync changed: the contract between a raw table and its daily readers.

Every way raw data arrives (the local stand-in, a landing batch, an Airbyte sync in prod) records
in the raw asset's materialization the UTC days of the rows it added, under ONE metadata key,
:data:`CHANGED_EVENT_DAYS` (a JSON list of ISO dates, plus :data:`CHANGED_EVENT_DAYS_COUNT`).
Downstream daily assets run for exactly those days (plus a late-data lookback): see
``shared.automation``.

The days are computed from what the sync committed, not from what it meant to write: the data
files added by the Iceberg snapshots between the table's snapshot before the sync and its snapshot
after it, reading the key and day columns only. A concurrent writer's snapshots in between are
counted too, which can only add days (a superset is safe: a day re-run is idempotent).

"The days of the rows it added" includes the days those rows' keys LEFT: an event re-delivered
with its timestamp on another day (same key, day D1 before, D2 now) changes D2 and D1, since D1's
daily rows hold the old version until D1 is re-run. These days are found in the table as of the
snapshot before the sync, read for the added keys only (:func:`sync_changes`). Which column is
the key and which the day is the stream's business (``ingestion.streams``), not this module's.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Metadata key of a raw materialization: the UTC event days of the rows the sync added.
CHANGED_EVENT_DAYS = "changed_event_days"
#: Metadata key: how many days :data:`CHANGED_EVENT_DAYS` lists (for the UI and plots).
CHANGED_EVENT_DAYS_COUNT = "changed_event_days_count"
#: Metadata key (for operators): how many keys the sync added that the table already had.
REDELIVERED_KEYS = "redelivered_keys"
#: Metadata key (for operators): how many of those moved to another day.
MOVED_KEYS = "moved_keys"
#: Metadata key (for operators): the days in :data:`CHANGED_EVENT_DAYS` only because keys left
#: them (no added row is on them): re-run so they stop holding the old versions.
MOVED_FROM_DAYS = "moved_from_days"


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


def is_replace(snapshot: Any) -> bool:
    """Whether ``snapshot`` is a ``replace``: a compaction (``shared.compaction``) rewrote data
    files without adding or removing a row. Every reader of raw history skips it: its added
    files hold rows earlier snapshots added (still listed, and read, there)."""
    summary = getattr(snapshot, "summary", None)
    return summary is not None and summary.operation.value == "replace"


def latest_data_snapshot(table: Any) -> Any:
    """The newest snapshot of the table's current ancestry that is not a ``replace`` (the last
    commit that changed rows: a sync), or None (no snapshot; or only compactions back to an
    expired parent)."""
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    snapshot = table.current_snapshot()
    while snapshot is not None and is_replace(snapshot):
        parent = snapshot.parent_snapshot_id
        snapshot = by_id.get(parent) if parent is not None else None
    return snapshot


def ancestry(
    by_id: Mapping[int, Any], start: int | None, stop: int | None
) -> tuple[list[Any], bool]:
    """The snapshots from ``start`` back along its ancestry (``by_id``: the table's snapshots by
    id), newest first, up to (without) ``stop``; and whether ``stop`` was reached (with ``stop``
    None: always, the whole ancestry being what was asked for). The walk ends early at a parent
    missing from ``by_id`` (expired)."""
    out = []
    snapshot = by_id.get(start) if start is not None else None
    while snapshot is not None:
        if snapshot.snapshot_id == stop:
            return out, True
        out.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = by_id.get(parent) if parent is not None else None
    return out, stop is None


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


def live_data_files(table: Any) -> list[Any]:
    """The data files of ``table``'s current snapshot (from its manifests' entries)."""
    from pyiceberg.manifest import DataFileContent

    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    return [
        entry.data_file
        for manifest in snapshot.manifests(table.io)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        if entry.data_file.content == DataFileContent.DATA
    ]


def read_files(
    table: Any, files: Iterable[Any], columns: Sequence[str], *, parallel: bool = True
) -> Iterator[Any]:
    """Record batches of ``columns`` of data ``files`` of ``table`` (pyiceberg ``DataFile``s, or
    ``FileScanTask``s, read with their delete files): exactly these files, no scan planning.

    The one reader of chosen data files (raw commits' added files, the key index's files):
    pyiceberg's Arrow reader against the table's current schema, so columns are matched by field
    id (a renamed column is still found) and a column a file lacks comes back as nulls, typed as
    in the table. ``columns`` must be columns of the table (another name raises ``ValueError``).

    ``parallel``: every file at once on pyiceberg's thread pool (each file's batches are held
    until consumed: for the few files of a commit). False: one file after the other, so memory
    holds one file's batches (for a whole history: the key index's backfill).
    """
    scan, tasks = _arrow_scan(table, files, columns)
    if parallel:
        yield from scan.to_record_batches(tasks)
    else:
        for task in tasks:
            yield from scan.to_record_batches([task])


def read_files_table(table: Any, files: Iterable[Any], columns: Sequence[str]) -> Any:
    """:func:`read_files` (in parallel) as one Arrow table; with no file, an empty table of the
    columns, typed as in the table."""
    scan, tasks = _arrow_scan(table, files, columns)
    return scan.to_table(tasks)


def _arrow_scan(table: Any, files: Iterable[Any], columns: Sequence[str]) -> tuple[Any, list]:
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    scan = ArrowScan(table.metadata, table.io, table.schema().select(*columns), AlwaysTrue())
    return scan, [f if isinstance(f, FileScanTask) else FileScanTask(f) for f in files]


def utc_dates(values: Any) -> Any:
    """The UTC day (Arrow date32) of each value of an Arrow array of timestamps (or dates)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        # Arrow stores zoned timestamps as UTC instants: dropping the zone keeps the UTC
        # wall-clock, whose date is the UTC day.
        values = values.cast(pa.timestamp(values.type.unit))
    return values.cast(pa.date32())


def utc_days(values: Any) -> set[dt.date]:
    """The distinct UTC days of an Arrow array of timestamps (nulls ignored)."""
    import pyarrow.compute as pc

    return set(pc.unique(utc_dates(values)).drop_null().to_pylist())


@dataclass(frozen=True)
class Changes:
    """What one sync changed in a raw table (see :func:`sync_changes`)."""

    #: The days to re-run, sorted: the days of the added rows and of the earlier versions of
    #: their keys (the days those keys left).
    days: tuple[dt.date, ...] = ()
    #: The days of the added rows only.
    added_days: tuple[dt.date, ...] = ()
    #: Distinct non-null keys among the added rows (0 when no key column was given).
    added_keys: int = 0
    #: Added keys that already had a version in the table before the sync (re-deliveries).
    #: None: not looked up (no key column, or the table had no snapshot before the sync).
    redelivered_keys: int | None = None
    #: Of those, the keys with an earlier version on a day that none of their added rows is
    #: on: events that moved to another day (the day they left is in :attr:`days`).
    moved_keys: int | None = None


def sync_changes(
    table: Any,
    since_snapshot_id: int | None,
    day_column: str,
    key_columns: Sequence[str] = (),
    earlier: Callable[[int, Any], Any] | None = None,
) -> Changes:
    """The UTC days a sync changed in ``table``: rows added after ``since_snapshot_id``.

    * The days of the added rows: ``day_column`` of the data files the new snapshots added
      (:func:`read_files`: exactly those files).
    * With ``key_columns`` (the record's key: one event whatever its versions), also the days of
      the earlier versions of the added keys: a key re-delivered with its day changed (an event
      whose ``event_ts`` moved from D1 to D2) changes D1 too, since D1's daily rows still hold
      the old version until D1 is re-run. Read from the table as of ``since_snapshot_id``
      (skipped when the table had no snapshot then: nothing earlier exists), projected to the
      key and day columns and filtered to the added keys (:func:`earlier_versions`).

    ``earlier(snapshot_id, keys)`` answers :func:`earlier_versions` (same arguments and result)
    another way: ``shared.key_index.earlier_versions`` reads a hashed key index of the table
    instead of its whole key column. Default: :func:`earlier_versions`.

    Rows an overwrite deleted are not counted: raw tables are append-only. A ``replace``
    snapshot (a compaction) adds no row: skipped (:func:`is_replace`); the earlier versions are
    read as of the snapshot before the sync, compacted or not.
    """
    import pyarrow.compute as pc

    schema = table.schema()
    if day_column not in schema.column_names:
        return Changes()
    keys = list(key_columns)
    if any(k not in schema.column_names for k in keys):
        keys = []  # a key the table lacks identifies nothing: the added days only
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    snapshots, reached = ancestry(by_id, current_snapshot_id(table), since_snapshot_id)
    # A compaction's files hold rows of earlier snapshots: no row added, no day changed.
    files = [f for s in snapshots if not is_replace(s) for f in added_data_files(table, s)]
    if not reached:
        # The walk back did not reach the pre-sync snapshot: it is gone (expired by
        # shared.maintenance, or the table replaced), or a snapshot between it and now is
        # (expiry keeps no unbroken run when a tag or a writer's clock holds an old one): what
        # the sync added is unknown. Every live file counts (every day changed): more days,
        # never fewer.
        files = live_data_files(table)
    if not files:
        return Changes(redelivered_keys=0 if keys else None, moved_keys=0 if keys else None)
    added = _key_days(read_files(table, files, (*keys, day_column)), keys, day_column)
    added_days = _days(added)
    if not keys:
        return Changes(days=added_days, added_days=added_days)
    # Rows without a key are no version of anything: they count for their day only.
    added = added.filter(all_valid(added, keys))
    added_keys = _count_distinct(added, keys)
    # The snapshot the sync committed onto: only when the walk reached the marker (an expired or
    # replaced marker made every file "added": then no version is earlier, all days counted).
    # Not ancestry()'s ``reached``: that differs when the walk stops at an expired parent.
    parent = (
        since_snapshot_id
        if snapshots and snapshots[-1].parent_snapshot_id == since_snapshot_id
        else None
    )
    if parent is None or added_keys == 0:
        looked_up = 0 if parent is not None else None
        return Changes(added_days, added_days, added_keys, looked_up, looked_up)
    if earlier is None:
        found = earlier_versions(table, parent, added.select(keys), day_column)
    else:
        found = earlier(parent, added.select(keys))
    # A version on a day none of the key's added rows is on: the key moved away from that day.
    # (A version without a day was on no day: it moved from none.) Both sides are small once
    # the added rows are cut to the keys found earlier.
    dated = found.filter(pc.is_valid(found[_DAY]))
    also_added = added.join(dated.select(keys), keys=keys, join_type="left semi")
    moved = dated.join(also_added, keys=[*keys, _DAY], join_type="left anti")
    return Changes(
        days=tuple(sorted(set(added_days) | set(_days(found)))),
        added_days=added_days,
        added_keys=added_keys,
        redelivered_keys=_count_distinct(found, keys),
        moved_keys=_count_distinct(moved, keys),
    )


def earlier_versions(table: Any, snapshot_id: int, keys: Any, day_column: str) -> Any:
    """The ``(key..., __day)`` of the rows of ``table`` as of ``snapshot_id`` whose key is one of
    ``keys`` (an Arrow table of the key columns); ``__day`` is the UTC day of ``day_column``
    (null for a version without one).

    Cost: the key column of the whole history is read (Iceberg has no index, and random ids
    defeat the files' min/max pruning; the raw syncs keep one of their own and read it instead,
    ``shared.key_index``, falling back to this): only the key and day columns, the files in parallel
    (pyiceberg's scan), streamed through one Arrow (Acero) hash semi-join whose hash table of the
    keys is built once, so only the matching rows are kept. Not an Iceberg ``In`` filter:
    pyiceberg translates and binds it again for every data file (20k keys over 30 files: 4 s,
    where reading and filtering took 0.2 s); nor ``is_in`` per batch, which builds the keys' hash
    set again for every batch (docs/benchmarks.md, "An event that moves to another day").
    """
    import pyarrow as pa
    from pyarrow import acero

    names = list(keys.column_names)
    reader = table.scan(
        snapshot_id=snapshot_id, selected_fields=(*names, day_column)
    ).to_arrow_batch_reader()
    given = keys.schema
    # The keys in the reader's own types (the join needs identical key types).
    keys = keys.cast(pa.schema([reader.schema.field(k) for k in names]))
    history = acero.Declaration(
        "record_batch_reader_source", acero.RecordBatchReaderSourceNodeOptions(reader)
    )
    wanted = acero.Declaration("table_source", acero.TableSourceNodeOptions(keys))
    join = acero.Declaration(
        "hashjoin",
        acero.HashJoinNodeOptions("left semi", left_keys=names, right_keys=names),
        inputs=[history, wanted],
    )
    found = _key_days(join.to_table(use_threads=True).to_batches(), names, day_column)
    return found.cast(pa.schema([*given, found.schema.field(_DAY)]))  # back to the given types


#: The day column in the tables of (key..., day) built here.
_DAY = "__day"


def _key_days(batches: Iterable[Any], keys: Sequence[str], day_column: str) -> Any:
    """The record batches as one Arrow table of the ``keys`` columns and ``__day``, the UTC day
    of ``day_column`` (null where it is null)."""
    import pyarrow as pa

    parts = []
    for batch in batches:
        columns = [batch.column(k) for k in keys]
        parts.append(pa.table([*columns, utc_dates(batch.column(day_column))], names=[*keys, _DAY]))
    if not parts:
        return pa.table(
            {**{k: pa.array([], pa.null()) for k in keys}, _DAY: pa.array([], pa.date32())}
        )
    return pa.concat_tables(parts, promote_options="permissive")


def _days(key_days: Any) -> tuple[dt.date, ...]:
    import pyarrow.compute as pc

    return tuple(sorted(pc.unique(key_days[_DAY]).drop_null().to_pylist()))


def all_valid(table: Any, columns: Sequence[str]) -> Any:
    """The Arrow mask of the rows of ``table`` where every one of ``columns`` is non-null."""
    import pyarrow.compute as pc

    mask = pc.is_valid(table[columns[0]])
    for c in columns[1:]:
        mask = pc.and_(mask, pc.is_valid(table[c]))
    return mask


def _count_distinct(table: Any, keys: Sequence[str]) -> int:
    import pyarrow.compute as pc

    if len(keys) == 1:
        return pc.count_distinct(table[keys[0]]).as_py()
    return table.select(list(keys)).group_by(list(keys)).aggregate([]).num_rows


def changed_days(
    table: Any, since_snapshot_id: int | None, day_column: str, key_columns: Sequence[str] = ()
) -> list[dt.date]:
    """The UTC days (sorted) a sync changed: :attr:`Changes.days` of :func:`sync_changes`."""
    return list(sync_changes(table, since_snapshot_id, day_column, key_columns).days)


def changed_days_metadata(days: Changes | Iterable[dt.date] | Unknown) -> dict[str, Any]:
    """The materialization metadata recording ``days`` (or :data:`UNKNOWN`).

    From a :class:`Changes`, also what operators want to see of re-delivered keys:
    :data:`REDELIVERED_KEYS`, :data:`MOVED_KEYS` and :data:`MOVED_FROM_DAYS` (when looked up).
    """
    from dagster import MetadataValue

    if isinstance(days, Unknown):
        return {CHANGED_EVENT_DAYS: MetadataValue.json(None), CHANGED_EVENT_DAYS_COUNT: -1}
    changes = days if isinstance(days, Changes) else None
    listed = sorted({d.isoformat() for d in (changes.days if changes else days)})
    out: dict[str, Any] = {
        CHANGED_EVENT_DAYS: MetadataValue.json(listed),
        CHANGED_EVENT_DAYS_COUNT: len(listed),
    }
    if changes is not None and changes.redelivered_keys is not None:
        out[REDELIVERED_KEYS] = changes.redelivered_keys
        out[MOVED_KEYS] = changes.moved_keys or 0
        left = sorted(set(changes.days) - set(changes.added_days))
        out[MOVED_FROM_DAYS] = MetadataValue.json([d.isoformat() for d in left])
    return out


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
