"""Table maintenance: expire old snapshots so a table's metadata stops growing with its history.

Why: every commit writes a metadata file listing every snapshot the table ever had, and pyiceberg
deep-copies that metadata several times per commit (0.15 s per copy at 182 snapshots), so one
more append cost more after 180 daily syncs than after one, though it adds as much data. Nothing
expired the raw tables' snapshots (the daily tables expire theirs in their own commits,
``shared.iceberg.DAILY_TABLE_PROPERTIES``, only once they are an hour old).

What: :func:`expire_snapshots` removes, in one metadata commit, the snapshots that are BOTH beyond
the newest ``keep_last`` AND older than ``min_age`` (``shared.settings.snapshot_retention``, the one
place that decides them), never:

* the current snapshot or any branch or tag head (pyiceberg refuses those too);
* a snapshot a marker still needs (:func:`marker_snapshots`): the key index of a raw table
  (``shared.key_index``) names the raw snapshot it indexed through; that snapshot and every later
  one stay until the index has caught up past them, so the index's readers can still walk raw's
  ancestry from any snapshot to the marker.

It uses pyiceberg's own API (``table.maintenance.expire_snapshots().by_ids(...)``), which writes
metadata only: it removes the snapshots, their snapshot-log entries and statistics and the refs
pointing at them, and DELETES NO FILE. Raw tables are append-only, so their data files stay live
in the current snapshot, except those a compaction replaced (``shared.compaction``); files only an
expired snapshot referenced (those, a daily table's overwritten partitions, the expired
snapshots' manifests) stay on storage as orphans until the orphan-file clean-up
(``shared.orphans``, an op of the same job, daily) deletes them, days later: a reader that
planned an expired snapshot, e.g. a query in flight, still reads its files meanwhile.

Other metadata that grows per commit, checked (pyiceberg 0.12):

* the snapshot log: pruned with the snapshots (above);
* the metadata log (previous metadata files): capped by Iceberg's
  ``write.metadata.previous-versions-max``, which pyiceberg applies at every commit; its default
  (100) made it 60% of the metadata once snapshots expire, so every table the platform writes
  sets 16 (``shared.iceberg.MERGE_TABLE_PROPERTIES``). A commit deletes no old metadata FILE
  (``write.metadata.delete-after-commit.enabled`` is off): the orphan-file clean-up deletes
  one once it is older than its age (3 days) and out of the log of every version current
  within that age, so a reader holding an older metadata location (DuckDB's
  ``iceberg_scan``, a ``metadata_location`` in a materialization's metadata) has it for at
  least that long;
* statistics files: we write none; removed with their snapshot anyway.

Concurrency: the expiry commit removes snapshot ids from the table's metadata as the catalog has it
at commit time, so an append committed meanwhile is kept (tested). A concurrent expiry that removed
one of the same snapshots first makes the commit fail: it is planned again on the table as it now
is (:func:`shared.iceberg._retry_commit`), and gives up with one clear error after ``attempts``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.settings import SnapshotRetention, snapshot_retention

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expired:
    """What :func:`expire_snapshots` did to one table."""

    identifier: str
    #: Snapshots removed from the metadata (0: nothing to expire, or no such table).
    expired: int
    #: Snapshots the table has now.
    kept: int
    #: Of those, kept only because a marker needs them (:func:`marker_snapshots`).
    held_by_markers: int = 0
    #: False when the table does not exist (nothing done).
    exists: bool = True

    def as_metadata(self) -> dict[str, Any]:
        return {
            "table": self.identifier,
            "expired": self.expired,
            "kept": self.kept,
            "held_by_markers": self.held_by_markers,
            "exists": self.exists,
        }


def expirable(
    table: Any,
    retention: SnapshotRetention,
    now_ms: int,
    protected: Iterable[int] = (),
) -> list[int]:
    """The ids of ``table``'s snapshots to expire: beyond the newest ``retention.keep_last``
    (by sequence number, then time) AND older than ``retention.min_age_ms`` at ``now_ms``; never
    a branch or tag head, the current snapshot, or one of ``protected``."""
    snapshots = sorted(
        table.metadata.snapshots, key=lambda s: (s.sequence_number or 0, s.timestamp_ms)
    )
    keep = {ref.snapshot_id for ref in table.metadata.refs.values()}
    current = table.current_snapshot()
    if current is not None:
        keep.add(current.snapshot_id)
    keep |= set(protected)
    cutoff = now_ms - retention.min_age_ms
    old = snapshots[: max(0, len(snapshots) - retention.keep_last)]
    return [s.snapshot_id for s in old if s.timestamp_ms <= cutoff and s.snapshot_id not in keep]


def marker_snapshots(catalog: Any, table: Any, identifier: str) -> set[int]:
    """The snapshots of ``table`` a marker needs: for a raw table with a key index, the index's
    marker (``shared.key_index.MARKER``) and every snapshot committed after it (the unindexed
    tail the index's readers and its next catch-up walk). Empty when no marker names this table
    (the marker's snapshot is gone, the index is missing or describes another table: the index
    is then rebuilt from raw's current files and needs no old snapshot)."""
    from shared import key_index

    spec_identifier = key_index.index_identifier(identifier) if "." in identifier else None
    if spec_identifier is None or identifier.startswith(f"{key_index.INDEX_NAMESPACE}."):
        return set()
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        index = catalog.load_table(spec_identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        return set()
    props = index.properties
    if props.get(key_index.RAW_UUID) != str(table.metadata.table_uuid):
        return set()
    try:
        marker = int(props[key_index.MARKER])
    except (KeyError, ValueError):
        return set()
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    if marker not in by_id:
        return set()
    since = by_id[marker].sequence_number or 0
    return {s.snapshot_id for s in table.metadata.snapshots if (s.sequence_number or 0) >= since}


def latest_sync_snapshots(table: Any) -> set[int]:
    """The snapshots the checks of the latest sync read, always kept: from the current snapshot
    back to the latest one that added rows (``shared.changes.latest_data_snapshot``: the
    compactions after it are the newest), and its parent (the snapshot the sync committed onto,
    which the raw checks read the earlier range and the uniqueness look-up as of). Without it, a
    compaction after the sync would make the pre-sync snapshot third newest, and a ``keep_last``
    of 2 would expire it."""
    from shared.changes import ancestry, current_snapshot_id, latest_data_snapshot

    latest = latest_data_snapshot(table)
    if latest is None:
        return set()
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    compactions, _ = ancestry(by_id, current_snapshot_id(table), latest.snapshot_id)
    held = {s.snapshot_id for s in compactions} | {latest.snapshot_id}
    if latest.parent_snapshot_id is not None:
        held.add(latest.parent_snapshot_id)
    return held


def expire_snapshots(
    catalog: Any,
    identifier: str,
    retention: SnapshotRetention | None = None,
    *,
    now_ms: int | None = None,
    markers: Callable[[Any, Any, str], set[int]] = marker_snapshots,
    attempts: int = 8,
) -> Expired:
    """Expire ``identifier``'s old snapshots (module docstring) in one metadata commit, planned
    again on a conflict. ``retention`` defaults to the settings'
    (``shared.settings.snapshot_retention``); ``now_ms`` to the current time. A missing table is
    no error (a stream never synced yet): nothing is done."""
    from pyiceberg.exceptions import NoSuchTableError

    from shared.iceberg import _retry_commit

    retention = retention or snapshot_retention()
    outcome: list[Expired] = []

    def attempt() -> None:
        try:
            table = catalog.load_table(identifier)
        except NoSuchTableError:
            outcome[:] = [Expired(identifier, 0, 0, exists=False)]
            return
        now = int(time.time() * 1000) if now_ms is None else now_ms
        held = markers(catalog, table, identifier) | latest_sync_snapshots(table)
        ids = expirable(table, retention, now, held)
        freed = expirable(table, retention, now)
        n = len(table.metadata.snapshots)
        if ids:
            # pyiceberg applies the removal to the metadata the catalog has at commit time: a
            # snapshot a concurrent expiry removed first "does not exist" there, which
            # _retry_commit takes as a conflict (planned again on the table as it is now).
            table.maintenance.expire_snapshots().by_ids(ids).commit()
        outcome[:] = [Expired(identifier, len(ids), n - len(ids), len(set(freed) - set(ids)))]

    _retry_commit(f"expire snapshots of {identifier}", attempt, attempts)
    return outcome[0]


def expire_tables(
    catalog: Any,
    identifiers: Sequence[str],
    retention: SnapshotRetention | None = None,
    *,
    now_ms: int | None = None,
) -> list[Expired]:
    """:func:`expire_snapshots` of each table, one after the other (the plain function a
    location's maintenance job and the benchmark call). The retention is read once for all."""
    retention = retention or snapshot_retention()
    results = []
    for identifier in identifiers:
        result = expire_snapshots(catalog, identifier, retention, now_ms=now_ms)
        if result.expired:
            log.info("%s: expired %d snapshots, %d kept", identifier, result.expired, result.kept)
        results.append(result)
    return results


#: When the maintenance jobs run: hourly, between the raw syncs (:15, ``ingestion.jobs``), so a
#: table never holds more than ``keep_last`` plus an hour of commits; but for 03:45, when the
#: daily run (:data:`ORPHAN_CLEANUP_CRON`) does the same and removes orphan files too (two runs
#: of the job at once would only race each other).
MAINTENANCE_CRON = "45 0-2,4-23 * * *"
#: When the maintenance jobs also remove orphan files (``shared.orphans``): daily, at night.
#: Listing a table's location costs a request per 1,000 files on S3 and reading its metadata,
#: while what it frees only becomes deletable days after it was written (the age, 3 days), so
#: once a day bounds storage as well as hourly would, at a 24th of the cost.
ORPHAN_CLEANUP_CRON = "45 3 * * *"


def _each_table(
    dg: Any, context: Any, identifiers: Sequence[str], run: Callable[[str], Any], not_done: str
) -> list[dict[str, Any]]:
    """``run(identifier)`` for each table, in order: a table's error is logged (``not_done``
    says what was not done) and does not stop the others; after all of them, one ``Failure``
    naming the tables that failed, carrying what the others did. Returns the metadata of each
    result (``None``: the table was skipped)."""
    done, errors = [], []
    for identifier in identifiers:
        try:
            result = run(identifier)
        except Exception as exc:  # one table's failure does not stop the others
            context.log.error(f"{identifier}: {not_done}: {exc}")
            errors.append(identifier)
            continue
        if result is not None:
            done.append(result.as_metadata())
    if errors:
        raise dg.Failure(
            f"{not_done}: {', '.join(errors)} (the others were); retried at the next run",
            metadata={"tables": dg.MetadataValue.json(done)},
        )
    return done


def _read_setting(dg: Any, read: Callable[[], Any]) -> Any:
    """``read()`` of a setting in an op: a bad value fails the run with the settings' message
    (which variable, which values), not a traceback."""
    from shared.settings import SettingsError

    try:
        return read()
    except SettingsError as exc:
        raise dg.Failure(str(exc)) from None


def maintenance_definitions(
    location: str,
    tables: Sequence[str],
    *,
    compact: Sequence[str] = (),
    cron_schedule: str = MAINTENANCE_CRON,
    orphan_cron_schedule: str = ORPHAN_CLEANUP_CRON,
) -> Any:
    """A location's table maintenance as Dagster definitions: the job
    ``<location>_table_maintenance`` (the op ``<location>_expire_snapshots``, looping over
    ``tables``, the Iceberg tables this location owns: :func:`expire_tables`) and its hourly
    schedule ``<location>_table_maintenance_hourly``.

    ``compact``: tables whose small files are rewritten first (``shared.compaction``; the raw
    tables, which get a small file per sync), by the op ``<location>_compact_small_files``,
    which the expiry follows. A compaction that lost a race with a sync is left for the next
    run (logged, not a failure: the sync won and nothing was lost); any other error fails the
    op after the other tables were done, and the expiry then waits for the next run too.

    The op ``<location>_remove_orphan_files`` deletes each table's files that no metadata
    references any more and are older than ``DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS``
    (``shared.orphans``): what earlier expiries stopped referencing, the files of killed
    writes. It runs when its config says so (``remove_orphan_files``, true by default: a run
    launched by hand does all of the maintenance): the daily schedule
    ``<location>_table_maintenance_daily`` (:data:`ORPHAN_CLEANUP_CRON`) runs the job with it,
    the hourly one without (listing storage costs requests; :data:`ORPHAN_CLEANUP_CRON`).
    It depends on no other op: a compaction or an expiry that failed (for one table, or a bad
    setting) does not skip the clean-up of every table of the location that day. Nothing is
    lost by not waiting for them: what this run's expiry stops referencing was referenced by
    the version current until now, which keeps its files for the age (``shared.orphans``), and
    the clean-up is safe alongside commits (it checks the table again before deleting).

    The schedules ship RUNNING, unlike the syncs' (which start external work): expiry only
    removes metadata beyond the retention the settings give, and a stopped one bounds nothing;
    the clean-up only deletes what no metadata references. Each table's outcome is logged and
    attached to the op's output metadata; a table whose expiry gave up (conflicts) fails the
    op after the others were done."""
    import dagster as dg

    names = tuple(tables)
    compacted = tuple(compact)

    @dg.op(
        name=f"{location}_compact_small_files",
        description=f"Rewrite the small data files of the {location} location's "
        f"{', '.join(compacted) or 'tables'} as one Iceberg replace snapshot each "
        "(shared.compaction).",
        required_resource_keys={"iceberg"},
        out=dg.Out(dg.Nothing),
    )
    def compact_op(context):  # type: ignore[no-untyped-def]
        """Compact each table's small files (rows unchanged), before the expiry."""
        from shared.compaction import CompactionConflict, compact_small_files

        catalog = context.resources.iceberg.catalog()

        def compact(identifier: str) -> Any:
            try:
                result = compact_small_files(catalog, identifier)
            except CompactionConflict as exc:  # a sync committed first: next run
                context.log.warning(f"{identifier}: not compacted, retried next run: {exc}")
                return None
            context.log.info(
                f"{identifier}: {result.files_replaced} small files rewritten as "
                f"{result.files_written} ({result.rows} rows)"
                if result.snapshot_id is not None
                else f"{identifier}: nothing to compact"
            )
            return result

        done = _each_table(dg, context, compacted, compact, "not compacted")
        yield dg.Output(None, metadata={"tables": dg.MetadataValue.json(done)})

    # No annotations on the op: this module imports Dagster only here (the benchmark imports
    # it without), and Dagster resolves an op's annotations at definition time.
    @dg.op(
        name=f"{location}_expire_snapshots",
        description=f"Expire old snapshots of the {location} location's tables "
        "(shared.maintenance; retention: DATA_PLATFORM_SNAPSHOT_*).",
        required_resource_keys={"iceberg"},
        ins={"after": dg.In(dg.Nothing)},
        out=dg.Out(dg.Nothing),
    )
    def expire_op(context):  # type: ignore[no-untyped-def]
        """Expire the old snapshots of each of this location's tables (shared.maintenance)."""
        retention = _read_setting(dg, snapshot_retention)
        catalog = context.resources.iceberg.catalog()

        def expire(identifier: str) -> Any:
            result = expire_snapshots(catalog, identifier, retention)
            context.log.info(
                f"{identifier}: {result.expired} expired, {result.kept} kept"
                + (f" ({result.held_by_markers} held by markers)" if result.held_by_markers else "")
            )
            return result

        done = _each_table(dg, context, names, expire, "snapshots not expired")
        return dg.Output(
            None,
            metadata={
                "tables": dg.MetadataValue.json(done),
                "expired": sum(r["expired"] for r in done),
                "keep_last": retention.keep_last,
                "min_age_minutes": retention.min_age_ms // 60_000,
            },
        )

    orphan_op_name = f"{location}_remove_orphan_files"

    @dg.op(
        name=orphan_op_name,
        description=f"Delete the files of the {location} location's tables that no metadata "
        "references, once older than DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS (shared.orphans).",
        required_resource_keys={"iceberg"},
        config_schema={
            "remove_orphan_files": dg.Field(
                bool,
                default_value=True,
                description="False: skip the clean-up (the hourly schedule; the daily runs it).",
            ),
            "dry_run": dg.Field(
                bool, default_value=False, description="List what would be deleted, delete nothing."
            ),
        },
    )
    def orphans_op(context):  # type: ignore[no-untyped-def]
        """Remove each table's orphan files (shared.orphans); runs whether or not the
        compaction and the expiry succeed (no input from them)."""
        import datetime as dt

        from shared.orphans import remove_orphan_files
        from shared.settings import orphan_min_age_hours

        if not context.op_config["remove_orphan_files"]:
            context.log.info("orphan files: not this run (daily schedule)")
            return dg.Output(None, metadata={"skipped": True})
        hours = _read_setting(dg, orphan_min_age_hours)
        dry_run = context.op_config["dry_run"]
        catalog = context.resources.iceberg.catalog()
        neighbours: dict[Any, Any] = {}  # each table's neighbours read once per run, not per pair

        def clean(identifier: str) -> Any:
            result = remove_orphan_files(
                catalog,
                identifier,
                older_than=dt.timedelta(hours=hours),
                dry_run=dry_run,
                neighbours=neighbours,
            )
            verb = "would delete" if dry_run else "deleted"
            count = len(result.orphans) if dry_run else result.deleted
            size = result.orphan_bytes if dry_run else result.deleted_bytes
            context.log.info(
                f"{identifier}: {verb} {count} orphan files ({size} bytes) of {result.files}; "
                f"{result.too_young} unreferenced but younger than {hours} h, "
                f"{result.kept_for_readers} kept for readers of recent versions"
            )
            return result

        done = _each_table(dg, context, names, clean, "orphan files not removed")
        return dg.Output(
            None,
            metadata={
                "tables": dg.MetadataValue.json(done),
                "dry_run": dry_run,
                "deleted": sum(r["deleted"] for r in done),
                "deleted_bytes": sum(r["deleted_bytes"] for r in done),
                "min_age_hours": hours,
            },
        )

    @dg.job(
        name=f"{location}_table_maintenance",
        description=(
            f"Compact small files then expire old snapshots, and remove orphan files, of "
            f"the {location} location's Iceberg tables."
            if compacted
            else f"Expire old snapshots and remove orphan files of the {location} "
            "location's Iceberg tables."
        ),
        tags={"data-platform/maintenance": location},
    )
    def maintenance_job():  # type: ignore[no-untyped-def]
        if compacted:
            expire_op(after=compact_op())
        else:
            expire_op()
        # Not after the expiry: one table's failed expiry must not skip every clean-up.
        orphans_op()

    def with_orphans(remove: bool) -> dict[str, Any]:
        return {"ops": {orphan_op_name: {"config": {"remove_orphan_files": remove}}}}

    hourly = dg.ScheduleDefinition(
        name=f"{location}_table_maintenance_hourly",
        job=maintenance_job,
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        run_config=with_orphans(False),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Table maintenance of the {location} location's tables, hourly "
        "(without the orphan-file clean-up, which runs daily).",
    )
    daily = dg.ScheduleDefinition(
        name=f"{location}_table_maintenance_daily",
        job=maintenance_job,
        cron_schedule=orphan_cron_schedule,
        execution_timezone="UTC",
        run_config=with_orphans(True),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Table maintenance of the {location} location's tables with the "
        "orphan-file clean-up, daily.",
    )
    return dg.Definitions(jobs=[maintenance_job], schedules=[hourly, daily])
