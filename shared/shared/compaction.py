"""Compaction of a table's small data files: Iceberg's ``rewrite_data_files``, for raw tables.

Why: a raw table gets one data file per sync. ``raw.users`` synced daily holds, after 180 days,
182 files of about 100 rows, and everything that reads it pays per file (opening, footers,
scan tasks): the raw checks, ``stg_users``, ``stg_user_versions``, ``dim_users``
(docs/benchmarks.md, "History built one sync a day"). Rewriting the small files into a few
files makes those reads cost what the rows cost.

What :func:`compact_small_files` does, for one table:

* picks the data files smaller than :data:`SMALL_FILE_BYTES` (per partition for a partitioned
  table; a file with delete files is left alone), and does nothing unless a partition holds at
  least :data:`MIN_INPUT_FILES` of them;
* reads them one file after the other (``shared.changes.read_files``, the table's current
  schema: a column an old file lacks is written as nulls, as every reader sees it) and writes
  their rows, in commit order, through the platform's streaming writer
  (``shared.iceberg.add_files_streaming``: files of up to ``write.target-file-size-bytes`` of
  Arrow data, capped at ``shared.iceberg.STREAM_BIN_BYTES``; memory bounded by a bin), in row
  groups of about one sync's rows (:func:`row_group_rows`), so a reader filtering on a sync's
  extraction time still skips the other syncs;
* commits ONE snapshot with operation ``replace`` (Iceberg's word for "data files added and
  removed without changing table data") that deletes the old files and adds the new ones: rows
  and schema unchanged, ``total-records`` unchanged (checked before the commit: a row count
  that differs aborts the compaction). Manifests are merged as in an append when the table has
  ``commit.manifest-merge.enabled`` (``shared.iceberg.MERGE_TABLE_PROPERTIES``).

The replaced files are NOT deleted by the compaction: the snapshots that added them still list
them, and the readers of raw history read them there (the rows a sync added,
``shared.changes``; the key index's tail and confirmations, ``shared.key_index``; the raw
checks' latest commit). Snapshot expiry (``shared.maintenance``) deletes no file either: once it
has removed the last snapshot that lists them, the daily orphan-file clean-up
(``shared.orphans``) deletes them, when they are older than its age (72 h) and no version of
the table current within that age lists them.

Every reader of raw history skips ``replace`` snapshots (they add no row):
``shared.changes.is_replace`` and ``shared.changes.latest_data_snapshot`` (the last sync).

Concurrency: the new files are written first, then committed onto the table as it is at the
commit. A writer that appended meanwhile makes the commit fail (the transaction asserts the
snapshot it was built on); the replace is then built again, with the same new files, on the new
snapshot (the appended files are kept: they are not among the files replaced), at most
``attempts`` times. When a replaced file is no longer in the table (a concurrent compaction or
overwrite removed it), the compaction gives up cleanly: nothing is committed, the files it
wrote are deleted, and :class:`CompactionConflict` says why. No row is ever lost or doubled: a
commit replaces exactly the files whose rows it wrote.

pyiceberg 0.12 has no public rewrite: ``update_snapshot().overwrite()`` records ``overwrite``,
and its summary code rejects ``replace``. :class:`_ReplaceFiles` (the one use of pyiceberg's
snapshot-producer internals here) is its overwrite producer with the operation recorded as
``replace`` and manifests merged like its merge append.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from shared.changes import is_replace  # noqa: F401 (re-exported: where readers look first)
from shared.iceberg import IcebergError

log = logging.getLogger(__name__)

#: A data file smaller than this (on storage) is "small": it is rewritten. A daily sync's file of
#: ``raw.users`` is ~10 KB and of ``raw.events`` (20k events) ~1 MB; the files the streaming
#: writer makes are ~40 MB (``shared.iceberg.STREAM_BIN_BYTES``), so 16 MB leaves those alone
#: and takes every sync's file until its day's data is as large as a written file.
SMALL_FILE_BYTES = 16 * 1024 * 1024
#: A partition's small files are rewritten only once there are at least this many (Iceberg's
#: ``min-input-files`` is 5): a compaction per sync would rewrite the same rows again and again.
#: With 8, a daily-synced table is compacted about once a week and holds fewer than 8 small
#: files beside its large ones. What one compaction rewrites is bounded by the threshold, not
#: the history: a file is rewritten (with the next small ones) only until it reaches
#: :data:`SMALL_FILE_BYTES`, then never again.
MIN_INPUT_FILES = 8
#: Snapshot summary property of a compaction: how many files it replaced (for operators).
SUMMARY_PROPERTY = "compaction.files-replaced"


class CompactionConflict(IcebergError):
    """The compaction could not commit (a file it replaces was removed by a concurrent commit);
    nothing was committed."""


@dataclass(frozen=True)
class Compaction:
    """What :func:`compact_small_files` did."""

    identifier: str
    #: The ``replace`` snapshot committed (None: nothing to compact).
    snapshot_id: int | None = None
    files_replaced: int = 0
    files_written: int = 0
    rows: int = 0
    bytes_replaced: int = 0
    bytes_written: int = 0
    #: The partitions compacted (1 for an unpartitioned table).
    partitions: int = 0
    #: Commits attempted (more than 1: a concurrent commit made it build the replace again).
    attempts: int = 0

    def as_metadata(self) -> dict[str, Any]:
        return {
            "iceberg_table": self.identifier,
            "snapshot_id": str(self.snapshot_id),
            "files_replaced": self.files_replaced,
            "files_written": self.files_written,
            "rows_rewritten": self.rows,
            "bytes_replaced": self.bytes_replaced,
            "bytes_written": self.bytes_written,
        }


def plan_compaction(
    table: Any,
    *,
    small_file_bytes: int = SMALL_FILE_BYTES,
    min_files: int = MIN_INPUT_FILES,
) -> list[Any]:
    """The data files of ``table``'s current snapshot to rewrite, in commit order (the data
    sequence number of the commit that added each): the small files of each partition holding
    at least ``min_files`` of them (module docstring). Read from the manifests only."""
    from pyiceberg.manifest import DataFileContent

    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    with_deletes = {
        task.file.file_path
        for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
        if task.delete_files
    }
    groups: dict[tuple, list[tuple[int, str, Any]]] = defaultdict(list)
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            data_file = entry.data_file
            if (
                data_file.content != DataFileContent.DATA
                or data_file.file_size_in_bytes >= small_file_bytes
                or data_file.file_path in with_deletes  # rewriting it would apply its deletes
            ):
                continue
            partition = (data_file.spec_id, tuple(data_file.partition))
            order = entry.sequence_number or 0
            groups[partition].append((order, data_file.file_path, data_file))
    chosen = []
    for files in groups.values():
        if len(files) >= min_files:
            chosen.extend(f for _, _, f in sorted(files, key=lambda t: t[:2]))
    return chosen


def compact_small_files(
    catalog: Any,
    identifier: str,
    *,
    small_file_bytes: int = SMALL_FILE_BYTES,
    min_files: int = MIN_INPUT_FILES,
    attempts: int = 3,
) -> Compaction:
    """Rewrite the small data files of ``identifier`` into few, as ONE ``replace`` snapshot
    (module docstring); a table with too few small files is left as it is. Raises
    :class:`CompactionConflict` when a concurrent commit removed a file it replaces (nothing
    committed, its written files deleted). A missing table is no error (a stream never synced
    yet): nothing is done, as :func:`shared.maintenance.expire_snapshots` does."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        return Compaction(identifier)
    files = plan_compaction(table, small_file_bytes=small_file_bytes, min_files=min_files)
    if not files:
        return Compaction(identifier)
    rows = sum(f.record_count for f in files)
    written = _write(table, files)
    wrote = sum(f.record_count for f in written)
    if wrote != rows:  # never commit a rewrite that would change the row count
        _delete(table, written)
        raise IcebergError(
            f"compaction of {identifier}: wrote {wrote} rows for {rows}: not committed"
        )
    try:
        snapshot_id, tries = _commit_with_rebase(
            catalog, identifier, table, files, written, attempts
        )
    except CompactionConflict:
        # Known not committed: the files are nobody's. (Any other failure may hide a commit that
        # landed, its answer lost: then the files are the table's, and stay.)
        _delete(table, written)
        raise
    result = Compaction(
        identifier=identifier,
        snapshot_id=snapshot_id,
        files_replaced=len(files),
        files_written=len(written),
        rows=rows,
        bytes_replaced=sum(f.file_size_in_bytes for f in files),
        bytes_written=sum(f.file_size_in_bytes for f in written),
        partitions=len({(f.spec_id, tuple(f.partition)) for f in files}),
        attempts=tries,
    )
    log.info(
        "%s: compacted %d files (%d rows, %d bytes) into %d (%d bytes)",
        identifier,
        result.files_replaced,
        rows,
        result.bytes_replaced,
        result.files_written,
        result.bytes_written,
    )
    return result


class _Collect:
    """Stands in for a snapshot producer while the new files are written (what
    ``shared.iceberg.add_files_streaming`` needs of one): the files are committed later, by a
    producer made for the snapshot the commit is built on."""

    def __init__(self) -> None:
        import uuid

        self.commit_uuid = uuid.uuid4()
        self.files: list[Any] = []

    def append_data_file(self, data_file: Any) -> None:
        self.files.append(data_file)


#: Fewest rows in a rewritten file's row group: a table synced in tiny batches (``raw.users``,
#: about 100 rows a day) would otherwise get row groups of a few rows, each with its own
#: metadata and pages, for no pruning a reader needs.
MIN_ROW_GROUP_ROWS = 10_000


def row_group_rows(files: Sequence[Any]) -> int:
    """Rows per row group of the files a compaction writes: the median row count of the files it
    rewrites (one sync's rows, about), at least :data:`MIN_ROW_GROUP_ROWS`."""
    counts = sorted(f.record_count for f in files)
    median = counts[len(counts) // 2] if counts else 0
    return max(MIN_ROW_GROUP_ROWS, median)


def _write(table: Any, files: Sequence[Any]) -> list[Any]:
    """The rows of ``files`` written as new data files (not committed)."""
    from pyiceberg.table import TableProperties

    from shared.changes import read_files
    from shared.iceberg import add_files_streaming

    columns = table.schema().column_names
    tx = table.transaction()  # its metadata only (schema, spec, properties): never committed
    # One sync per row group, about: the rewritten files keep the row groups their inputs were,
    # so a reader filtering on a sync's extraction time (stg_events reads the syncs since the
    # window's earliest extraction) skips every other sync's row group by its statistics. With
    # one row group per file (the writer's default limit is 1M rows), a day's run read a whole
    # compacted file, weeks of syncs, whenever its window began inside one. Set on this
    # transaction only, never committed: the table's own writes keep the table's setting.
    tx.set_properties({TableProperties.PARQUET_ROW_GROUP_LIMIT: str(row_group_rows(files))})
    collect = _Collect()

    def batches() -> Iterator[Any]:
        # One file after the other: memory holds one file's batches (plus the writer's bin).
        yield from read_files(table, files, columns, parallel=False)

    try:
        if table.spec().is_unpartitioned():
            add_files_streaming(collect, tx, table.io, batches())
        else:
            _write_partitioned(collect, tx, table, files, columns)
    except BaseException:
        _delete(table, collect.files)
        raise
    return collect.files


#: A partitioned table's files are rewritten in groups of at most this many bytes on storage
#: (pyiceberg streams only unpartitioned writes: a group is read as one Arrow table, which
#: takes a few times its Parquet size in memory).
PARTITIONED_GROUP_BYTES = 64 * 1024 * 1024


def _write_partitioned(collect: _Collect, tx: Any, table: Any, files: Sequence[Any], columns):
    """The rows of ``files`` of a partitioned table written as new files, partition by
    partition, in groups of :data:`PARTITIONED_GROUP_BYTES` (each group one Arrow table)."""
    import itertools

    import pyarrow as pa
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    from shared.changes import read_files_table

    groups: dict[tuple, list[list[Any]]] = defaultdict(list)
    for f in files:
        bins = groups[(f.spec_id, tuple(f.partition))]
        if not bins or sum(g.file_size_in_bytes for g in bins[-1]) >= PARTITIONED_GROUP_BYTES:
            bins.append([])
        bins[-1].append(f)
    counter = itertools.count(0)
    for bins in groups.values():
        for group in bins:
            data = read_files_table(table, group, columns)
            for data_file in _dataframe_to_data_files(
                table_metadata=tx.table_metadata,
                df=pa.Table.from_batches(data.to_batches(), data.schema),
                io=table.io,
                write_uuid=collect.commit_uuid,
                counter=counter,
            ):
                collect.append_data_file(data_file)


def _commit_with_rebase(
    catalog: Any,
    identifier: str,
    table: Any,
    replaced: Sequence[Any],
    written: Sequence[Any],
    attempts: int,
) -> tuple[int, int]:
    """Commit the replace onto the table as it is; on a conflict, load it again and build the
    replace again on the new snapshot (same files). Returns (snapshot id, commits attempted)."""
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    uuid = table.metadata.table_uuid
    for attempt in range(1, attempts + 1):
        if table.metadata.table_uuid != uuid:
            raise CompactionConflict(f"compaction of {identifier}: the table was replaced")
        try:
            return _commit_replace(table, replaced, written), attempt
        except ValidationException as exc:  # a replaced file is gone: give up
            raise CompactionConflict(
                f"compaction of {identifier}: a file it replaces was removed by a concurrent "
                f"commit, nothing committed: {exc}"
            ) from exc
        except Exception as exc:
            # A conflict: another commit first (or the SQLite catalog's "database is locked").
            if not isinstance(exc, CommitFailedException) and "database is locked" not in str(exc):
                raise
            if attempt == attempts:
                raise CompactionConflict(
                    f"compaction of {identifier}: gave up after {attempts} conflicting commits, "
                    f"nothing committed: {exc}"
                ) from exc
            log.warning("%s: compaction conflicted with a commit, building it again", identifier)
            table = catalog.load_table(identifier)
    raise AssertionError("unreachable")


def _commit_replace(table: Any, replaced: Sequence[Any], written: Sequence[Any]) -> int:
    """One commit of the replace onto ``table``'s current snapshot (asserted by the catalog);
    returns the new snapshot's id. Raises ``ValidationException`` when a file of ``replaced``
    is not in that snapshot."""
    properties = {SUMMARY_PROPERTY: str(len(replaced))}
    with table.transaction() as tx:
        with _replace_producer(tx, table.io, properties) as producer:
            for f in replaced:
                producer.delete_data_file(f)
            for f in written:
                producer.append_data_file(f)
            snapshot_id = producer.snapshot_id
    return snapshot_id


def _replace_producer(tx: Any, io: Any, properties: dict[str, str]) -> Any:
    """A snapshot producer recording operation ``replace``: pyiceberg's overwrite producer (it
    deletes the given files, failing with ``ValidationException`` when one is not in the parent
    snapshot, and adds files), whose summary says ``replace``, with manifests merged like
    pyiceberg's merge append when the table asks for it. Where the library falls short:
    pyiceberg 0.12 has no rewrite API, ``update_snapshot()`` offers no ``replace`` producer and
    its summary update rejects that operation, so the summary is built as an overwrite's (the
    same totals) and its operation changed."""
    from pyiceberg.manifest import ManifestContent
    from pyiceberg.table import TableProperties
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _ManifestMergeManager, _OverwriteFiles
    from pyiceberg.utils.properties import property_as_bool, property_as_int

    class _ReplaceFiles(_OverwriteFiles):
        def _summary(self, snapshot_properties: Any = None) -> Any:
            from pyiceberg.table.snapshots import Summary

            summary = super()._summary(snapshot_properties or {})
            return Summary(Operation.REPLACE, **summary.additional_properties)

        def _process_manifests(self, manifests: list[Any]) -> list[Any]:
            props = self._transaction.table_metadata.properties
            manager = _ManifestMergeManager(
                target_size_bytes=property_as_int(
                    props,
                    TableProperties.MANIFEST_TARGET_SIZE_BYTES,
                    TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT,
                ),
                min_count_to_merge=property_as_int(
                    props,
                    TableProperties.MANIFEST_MIN_MERGE_COUNT,
                    TableProperties.MANIFEST_MIN_MERGE_COUNT_DEFAULT,
                ),
                merge_enabled=property_as_bool(
                    props,
                    TableProperties.MANIFEST_MERGE_ENABLED,
                    TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT,
                ),
                snapshot_producer=self,
            )
            data = [m for m in manifests if m.content == ManifestContent.DATA]
            deletes = [m for m in manifests if m.content == ManifestContent.DELETES]
            return manager.merge_manifests(data) + deletes

    return _ReplaceFiles(
        operation=Operation.OVERWRITE,  # the summary's base; recorded as REPLACE (above)
        transaction=tx,
        io=io,
        snapshot_properties=properties,
    )


def _delete(table: Any, files: Sequence[Any]) -> None:
    """Delete data files written for a compaction that was not committed (orphans otherwise)."""
    for f in files:
        try:
            table.io.delete(f.file_path)
        except Exception as exc:  # already gone, or a store hiccup: an orphan, not an error
            log.info("%s: could not delete an uncommitted compaction file: %s", f.file_path, exc)


def compact_tables(catalog: Any, identifiers: Sequence[str]) -> list[Compaction]:
    """:func:`compact_small_files` of each table, one after the other (the plain function a
    location's maintenance job calls: the ingestion location's raw tables, ``raw.users`` and
    ``raw.events``; not the key indexes, which compact themselves by size tiers, nor dbt's or
    analytics' tables). A table that conflicted is logged and left for the next run; the error
    of the first one is raised after the others were done."""
    results, failed = [], []
    for identifier in identifiers:
        try:
            results.append(compact_small_files(catalog, identifier))
        except CompactionConflict as exc:
            log.warning("%s: not compacted (retried at the next run): %s", identifier, exc)
            failed.append(exc)
    if failed:
        raise failed[0]
    return results
