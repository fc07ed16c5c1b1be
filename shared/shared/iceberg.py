"""Reading and writing Iceberg tables: the one write path every location uses.

Why one path: both modes (SQLite catalog locally, REST catalog in prod) and all three locations
must write tables the same way, so that the same guarantees hold everywhere:

* a write is one Iceberg commit: a reader sees the old snapshot or the new one, never part of a
  write (a process killed mid-write leaves the table at its previous snapshot);
* commit conflicts with a concurrent writer are retried with backoff, a bounded number of times,
  by re-planning the write against the table as it now is (never by replaying a stale plan):
  an append planned from a cursor commits only if the table is still at the snapshot the cursor
  was read from (:func:`append_new`), an overwrite is planned again on the new snapshot;
* a table is created together with its first commit: a reader never sees a registered table
  with no snapshot because a first write failed half-way (disk full, killed process);
* new source columns are added to the table (schema evolution), never dropped on the floor;
* nanosecond timestamps are cast to microseconds, which is all Iceberg v2 stores.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.io import load_file_io
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform

from shared.settings import Settings, ensure_home, load_settings

log = logging.getLogger(__name__)

WriteMode = Literal["overwrite", "append"]


class IcebergError(RuntimeError):
    """A table could not be read or written; the message names the table and the catalog."""


def open_catalog(settings: Settings | None = None, *, attempts: int = 4) -> Catalog:
    """Open the platform's Iceberg catalog (no network call in local mode).

    A REST catalog that is unreachable or answers 5xx is retried ``attempts`` times with
    backoff, then fails with an :class:`IcebergError` naming the endpoint.
    """
    from shared import pyiceberg_fixes

    # Every write of the platform goes through a catalog opened here: a commit's cost stops
    # growing with the snapshots a table keeps (shared.pyiceberg_fixes says why and how).
    pyiceberg_fixes.install()
    settings = settings or load_settings()
    if settings.is_local:
        ensure_home(settings)  # a home that is a file or not writable: one clear error
        settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    catalog = _with_retries(
        f"open the Iceberg catalog at {_redact(settings.catalog.uri)}",
        lambda: load_catalog(settings.catalog.name, **settings.catalog_properties()),
        attempts=attempts,
    )
    if settings.is_local:
        _enable_sqlite_wal(catalog)
    return catalog


def _redact(uri: str) -> str:
    """A URI without any ``user:password@`` part, for messages."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _with_retries(what: str, fn: Callable[[], Any], *, attempts: int, base_delay: float = 0.5):
    """Call ``fn``; retry transient failures with exponential backoff, then fail clearly."""
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not _is_transient(exc):
                raise IcebergError(f"cannot {what} (attempt {attempt}/{attempts}): {exc}") from exc
            log.warning("cannot %s (attempt %d/%d), retrying: %s", what, attempt, attempts, exc)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _is_transient(exc: Exception) -> bool:
    """Connection failures, timeouts and 5xx answers are worth retrying; the rest is not."""
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    from pyiceberg.exceptions import ServerError, ServiceUnavailableError

    return isinstance(exc, (ServerError, ServiceUnavailableError))


def _enable_sqlite_wal(catalog: Catalog) -> None:
    """WAL lets readers proceed while one writer commits; it is a property of the file."""
    engine = getattr(catalog, "engine", None)
    if engine is None:
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")


@dataclass(frozen=True)
class TableWriteResult:
    """What a write produced, for logs and Dagster metadata."""

    identifier: str
    snapshot_id: int | None
    row_count: int
    rows_written: int
    metadata_location: str

    def as_metadata(self) -> dict[str, Any]:
        return {
            "iceberg_table": self.identifier,
            "snapshot_id": str(self.snapshot_id),
            "row_count": self.row_count,
            "rows_written": self.rows_written,
            "metadata_location": self.metadata_location,
        }


def to_iceberg_compatible(data: pa.Table) -> pa.Table:
    """Cast what Iceberg cannot store to what it can (ns timestamps to us, large types kept)."""
    fields = []
    changed = False
    for f in data.schema:
        t = f.type
        if pa.types.is_timestamp(t) and t.unit == "ns":
            t = pa.timestamp("us", tz=t.tz)
            changed = True
        elif pa.types.is_dictionary(t):
            t = t.value_type
            changed = True
        fields.append(pa.field(f.name, t, nullable=f.nullable, metadata=f.metadata))
    if not changed:
        return data
    return data.cast(pa.schema(fields, metadata=data.schema.metadata))


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create ``namespace`` unless it exists, also when another writer creates it concurrently.

    The SQL catalog checks then inserts, so a concurrent creation surfaces as a database
    integrity error rather than NamespaceAlreadyExistsError: the namespace existing afterwards is
    what matters.
    """
    try:
        catalog.create_namespace_if_not_exists(namespace)
    except Exception:
        if (namespace,) not in {tuple(ns) for ns in catalog.list_namespaces()}:
            raise


def ensure_table(
    catalog: Catalog,
    identifier: str,
    schema: pa.Schema,
    *,
    partition_by_day: str | None = None,
) -> Table:
    """Load ``identifier``, creating it (and its namespace) from ``schema`` if missing.

    The table is created empty (no snapshot); writes create their table together with its first
    commit instead (:func:`write_table`). An existing table gains any column of ``schema`` that
    it lacks (schema evolution by name), so a source that adds a column never loses that
    column's data.
    """
    namespace = identifier.split(".", 1)[0]
    try:
        return _evolve(catalog.load_table(identifier), schema)
    except NoSuchTableError:
        ensure_namespace(catalog, namespace)
        # Every column optional: a lakehouse table outlives the batch that created it, and a
        # column that had no nulls on day one (a user's first event, say) may have them later.
        table = catalog.create_table_if_not_exists(
            identifier,
            schema=_all_optional(schema),
            properties=_table_properties(bool(partition_by_day)),
        )
        if partition_by_day and len(table.spec().fields) == 0:
            with table.update_spec() as spec:
                spec.add_field(partition_by_day, DayTransform(), f"{partition_by_day}_day")
            table = catalog.load_table(identifier)
        return table


def _all_optional(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)


#: Table properties of every table the platform creates. pyiceberg's own commit retry re-bases
#: a failed commit onto the new head as it is: a fast append is then committed on top of a
#: concurrent one (both syncs appended the same days: issue "concurrent runs duplicate raw
#: rows"), and an overwrite fails its re-validation ("Added data files were found matching the
#: filter"). The platform's write path retries itself instead, by planning the whole write again
#: on the new snapshot (:func:`_retry_commit`), so pyiceberg's retry is off.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0"}

#: Manifest merging, for every table the platform creates (set where absent: a count set on
#: purpose on a table is kept). A fast append adds a manifest per commit: after 180 one-day
#: commits planning a scan opens 180+ manifests (docs/benchmarks.md, "File layout and
#: history-flat reads"), and a raw table synced hourly gets 24 a day: every scan of it, and
#: every append (which rewrites the manifest list), then costs more with each sync. A merge
#: append (pyiceberg's, chosen by this property) folds the manifests into one once there are
#: ``min-count-to-merge`` of them, so their number stays below that count whatever the history.
#: What a commit added stays readable: a merged manifest keeps each file's entry with the
#: snapshot that added it (``shared.changes.added_data_files`` reads the entries ADDED by a
#: snapshot, not whole manifests).
#:
#: Also the metadata log (the previous metadata files each metadata file lists): Iceberg's
#: default keeps 100 entries, so until a table's 100th commit every commit's metadata, which
#: pyiceberg copies several times per commit, grows by one; once snapshots expire
#: (``shared.maintenance``) it is most of the metadata (60% at 16 snapshots). Sixteen, as the
#: snapshots kept: one append at 16 snapshots took 0.023 s instead of 0.030 s. Only the log is
#: cut: a commit deletes no old metadata FILE (``write.metadata.delete-after-commit.enabled`` is
#: off); the daily orphan-file clean-up (``shared.orphans``) deletes one once it is older than
#: its age (72 h) and out of the log of every version current within that age, so a reader
#: holding an older metadata location still reads it for at least that long.
MERGE_TABLE_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "16",
    "write.metadata.previous-versions-max": "16",
}

#: Table properties of every day-partitioned table, on top of :data:`TABLE_PROPERTIES`: manifest
#: merging (:data:`MERGE_TABLE_PROPERTIES`) and snapshot expiry.
#:
#: The snapshots themselves are the other thing a daily table accumulates: every commit writes
#: a metadata file listing all of them, and pyiceberg deep-copies that metadata many times per
#: write (measured: a one-day overwrite took 0.06 s on a new table and over 1.6 s after 360
#: daily commits). Each write to a table with ``history.expire.*`` set expires, in the same
#: commit, the snapshots older than ``max-snapshot-age-ms`` beyond the newest
#: ``min-snapshots-to-keep`` (Iceberg's own property names; here applied by our writer at each
#: commit, :func:`_expired_snapshots`). Only daily tables get them: raw tables' history is read
#: by shared.changes and the landing loader.
DAILY_TABLE_PROPERTIES = {
    **MERGE_TABLE_PROPERTIES,
    "history.expire.min-snapshots-to-keep": "16",
    "history.expire.max-snapshot-age-ms": str(60 * 60 * 1000),
}


def _table_properties(partitioned: bool) -> dict[str, str]:
    return {
        **TABLE_PROPERTIES,
        **(DAILY_TABLE_PROPERTIES if partitioned else MERGE_TABLE_PROPERTIES),
    }


#: Conflicts a new attempt (re-planned on the table as it now is) resolves.
_CONFLICTS = (CommitFailedException, ValidationException, TableAlreadyExistsError)


def _ensure_properties(table: Table) -> Table:
    """Set :data:`TABLE_PROPERTIES` (and those it lacks of :data:`DAILY_TABLE_PROPERTIES` on a
    partitioned table, of :data:`MERGE_TABLE_PROPERTIES` on another) on a table made before they
    existed: one metadata commit, once. Two writers doing it at once conflict like any two
    commits; the loser's write is retried (:func:`_retry_commit`) and finds the properties set."""
    props = table.properties
    missing = {k: v for k, v in TABLE_PROPERTIES.items() if props.get(k) != v}
    # The others only where absent: a value set on purpose on a table (a merge count) is kept.
    wanted = _table_properties(not table.spec().is_unpartitioned())
    missing.update({k: v for k, v in wanted.items() if k not in props and k not in missing})
    if not missing:
        return table
    with table.transaction() as tx:
        tx.set_properties(missing)
    return table.refresh()


def _lost_snapshot_race(exc: ValueError) -> bool:
    """Whether ``exc`` is pyiceberg's "Snapshot with snapshot id ... does not exist" raised when
    a commit's snapshot removal is applied to the catalog's current metadata."""
    message = str(exc)
    return message.startswith("Snapshot with snapshot id") and "does not exist" in message


def _retry_commit(what: str, attempt_fn: Callable[[], Table | None], attempts: int) -> Table | None:
    """Run ``attempt_fn`` and run it again on Iceberg commit conflicts and SQLite lock errors.

    Each attempt loads the table and plans its write again: a conflict means another writer
    committed first, so what to write may have changed (an append's cursor moved, an
    overwrite's files were replaced).
    """
    delay = 0.05
    for attempt in range(1, attempts + 1):
        try:
            return attempt_fn()
        except _CONFLICTS as exc:
            err: Exception = exc
        except ValueError as exc:
            # A commit that expires snapshots (a daily write's, shared.maintenance's) applied
            # onto metadata where a concurrent expiry already removed one: pyiceberg raises
            # this when it applies the removal at commit time. Planned again, it is a conflict.
            if not _lost_snapshot_race(exc):
                raise
            err = exc
        except Exception as exc:  # SQLAlchemy OperationalError: "database is locked"
            if "database is locked" not in str(exc):
                raise
            err = exc
        if attempt == attempts:
            raise IcebergError(f"{what}: gave up after {attempts} conflicting commits: {err}")
        log.warning(
            "%s: commit conflict (attempt %d/%d), retrying: %s", what, attempt, attempts, err
        )
        time.sleep(delay + random.uniform(0, delay))
        delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


#: What a write plan returns: the chunks to write (called once per attempt), or None when there
#: is nothing to write.
Chunks = Callable[[], Iterable[pa.Table]]


def write_table(
    catalog: Catalog,
    identifier: str,
    data: pa.Table | Callable[[], Iterable[pa.RecordBatch | pa.Table]],
    *,
    mode: WriteMode = "overwrite",
    overwrite_filter: BooleanExpression | str | None = None,
    schema: pa.Schema | None = None,
    partition_by_day: str | None = None,
    attempts: int = 8,
    snapshot_properties: dict[str, str] | None = None,
    precondition: Callable[[Table], None] | None = None,
) -> TableWriteResult:
    """Write ``data`` to ``identifier`` in one atomic Iceberg commit.

    * ``mode="overwrite"`` without a filter replaces the table's contents.
    * ``mode="overwrite"`` with ``overwrite_filter`` replaces only the rows matching it (for
      example one day), so re-running a partition replaces it and never duplicates it.
    * ``mode="append"`` adds rows (unconditionally: an append that depends on what the table
      holds, such as a sync from a cursor, uses :func:`append_new`).

    ``data`` is one Arrow table, or a function returning an iterable of batches (``schema``
    required then). Batches are written one data file at a time inside a single transaction, so
    memory stays bounded by a batch while the commit stays atomic; on a commit conflict the
    write is planned again on the table as it now is (an overwrite deletes what the filter now
    matches) and ``data`` is called again.

    ``snapshot_properties`` are recorded in the new snapshot's summary (in the same commit as the
    rows: a fact about the write that is true exactly when the rows are there). ``precondition``
    is called with the table as loaded for each attempt, before anything is written (not when
    the table does not exist yet: it has no history); it may raise to abort the write. The
    commit asserts that the table is still at that snapshot, so a precondition that looks at the
    table's history holds at the moment of the commit.
    """
    if mode not in ("overwrite", "append"):
        raise ValueError(f"write_table: unknown mode {mode!r}")
    arrow_schema, chunks = _chunks_of(data, schema, "write_table")
    overwrite: BooleanExpression | str | None = None
    if mode == "overwrite":
        overwrite = overwrite_filter if overwrite_filter is not None else AlwaysTrue()

    def plan(table: Table | None) -> Chunks:
        if precondition is not None and table is not None:
            precondition(table)
        return chunks

    return _write(
        catalog,
        identifier,
        plan,
        arrow_schema,
        overwrite=overwrite,
        partition_by_day=partition_by_day,
        attempts=attempts,
        snapshot_properties=snapshot_properties,
    )


def append_new(
    catalog: Catalog,
    identifier: str,
    new_data: Callable[[Table | None], pa.Table | Callable[[], Iterable[Any]] | None],
    *,
    schema: pa.Schema,
    attempts: int = 8,
) -> TableWriteResult:
    """Append what ``new_data`` says the table lacks, only onto the snapshot it was told about.

    ``new_data(table)`` gets the table as loaded (``None`` if it does not exist yet), reads its
    cursor from it (what the table already holds) and returns the rows to append: an Arrow table,
    a function returning batches, or ``None`` for nothing. The append commits only if the table
    is still at that snapshot; if another writer committed in between (a concurrent sync of the
    same stream), the table is loaded again and ``new_data`` asked again, so rows already there
    are skipped instead of appended twice (optimistic concurrency: Iceberg's snapshot
    requirement, checked by the catalog at commit, is the guard).
    """
    arrow_schema = to_iceberg_compatible(schema.empty_table()).schema

    def plan(table: Table | None) -> Chunks | None:
        data = new_data(table)
        if data is None:
            return None
        return _chunks_of(data, schema, "append_new")[1]

    return _write(catalog, identifier, plan, arrow_schema, overwrite=None, attempts=attempts)


def _chunks_of(
    data: pa.Table | Callable[[], Iterable[pa.RecordBatch | pa.Table]],
    schema: pa.Schema | None,
    caller: str,
) -> tuple[pa.Schema, Chunks]:
    """The Iceberg-compatible Arrow schema of ``data`` and a function yielding its chunks."""
    if isinstance(data, pa.Table):
        table_data = to_iceberg_compatible(data)
        return table_data.schema, lambda: [table_data]
    if schema is None:
        raise ValueError(f"{caller}: pass schema= when writing batches")

    def chunks() -> Iterable[pa.Table]:
        for b in data():
            t = b if isinstance(b, pa.Table) else pa.Table.from_batches([b])
            yield to_iceberg_compatible(t)

    return to_iceberg_compatible(schema.empty_table()).schema, chunks


def _write(
    catalog: Catalog,
    identifier: str,
    plan: Callable[[Table | None], Chunks | None],
    arrow_schema: pa.Schema,
    *,
    overwrite: BooleanExpression | str | None,
    partition_by_day: str | None = None,
    attempts: int,
    snapshot_properties: dict[str, str] | None = None,
) -> TableWriteResult:
    """One write, planned and committed per attempt (see :func:`_retry_commit`).

    Each attempt loads the table, asks ``plan`` what to write on that snapshot and commits in
    one transaction based on it. A missing table is created *in the same commit* as its first
    data (pyiceberg's create-table transaction): a failure before the commit (disk full, a kill)
    leaves no table rather than a registered table with no snapshot.
    """
    rows_written = 0
    properties = dict(snapshot_properties or {})

    def attempt() -> Table | None:
        nonlocal rows_written
        rows_written = 0
        try:
            table: Table | None = _evolve(catalog.load_table(identifier), arrow_schema)
        except NoSuchTableError:
            table = None
        chunks = plan(table)
        if chunks is None:
            return table

        def counted() -> Iterable[pa.Table]:
            nonlocal rows_written
            for chunk in chunks():
                rows_written += chunk.num_rows
                yield chunk

        if table is None:
            ensure_namespace(catalog, identifier.split(".", 1)[0])
            tx = catalog.create_table_transaction(
                identifier,
                schema=_all_optional(arrow_schema),
                properties=_table_properties(bool(partition_by_day)),
            )
            if partition_by_day:
                with tx.update_spec() as spec:
                    spec.add_field(partition_by_day, DayTransform(), f"{partition_by_day}_day")
            metadata = tx.table_metadata
            io = load_file_io({**catalog.properties, **metadata.properties}, metadata.location)
            with tx:
                _add_chunks(tx, io, counted(), properties)
        else:
            expired = _expired_snapshots(table, int(time.time() * 1000))
            with table.transaction() as tx:
                if expired:
                    from pyiceberg.table.update.snapshot import ExpireSnapshots

                    with ExpireSnapshots(tx) as expire:
                        expire.by_ids(expired)
                if overwrite is not None:
                    with warnings.catch_warnings():
                        # "Delete operation did not match any records" is expected on a first
                        # write.
                        warnings.simplefilter("ignore", UserWarning)
                        tx.delete(overwrite)
                _add_chunks(tx, table.io, counted(), properties)
        return catalog.load_table(identifier)

    table = _retry_commit(f"write {identifier}", attempt, attempts)
    if table is None:
        return TableWriteResult(identifier, None, 0, 0, "")
    return describe_write(table, identifier, rows_written)


def _expired_snapshots(table: Table, now_ms: int) -> list[int]:
    """The snapshots a write to ``table`` expires (see :data:`DAILY_TABLE_PROPERTIES`): none
    unless the table has both ``history.expire.*`` properties; never the newest
    ``min-snapshots-to-keep``, one younger than ``max-snapshot-age-ms``, or a branch or tag head,
    and never less than the platform's retention keeps (``DATA_PLATFORM_SNAPSHOT_KEEP_LAST``,
    ``DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES``: the larger of the two counts and of the two ages).
    Expiring removes snapshots from the metadata only and deletes no file, so a reader that
    planned an expired snapshot still reads it; the files only expired snapshots listed are
    deleted later by the orphan-file clean-up (``shared.orphans``), once older than its age
    and unreferenced by every version of the table current within it."""
    from shared.settings import snapshot_retention

    props = table.properties
    keep = props.get("history.expire.min-snapshots-to-keep")
    max_age = props.get("history.expire.max-snapshot-age-ms")
    if keep is None or max_age is None:
        return []
    # One retention policy: the platform's (shared.settings.snapshot_retention, which the
    # maintenance jobs apply to every table) is never undercut here; the table's own properties
    # (Iceberg's names, which other engines' expiry reads too) can only keep more.
    retention = snapshot_retention()
    keep = max(int(keep), retention.keep_last)
    max_age = max(int(max_age), retention.min_age_ms)
    snapshots = sorted(
        table.metadata.snapshots, key=lambda s: (s.sequence_number or 0, s.timestamp_ms)
    )
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    cutoff = now_ms - int(max_age)
    old = snapshots[: max(0, len(snapshots) - int(keep))]
    return [
        s.snapshot_id for s in old if s.timestamp_ms < cutoff and s.snapshot_id not in protected
    ]


def _evolve(table: Table, schema: pa.Schema) -> Table:
    """``table`` with pyiceberg's own retry off and every column of ``schema`` it lacks added
    (by name, optional): a source that adds a column never loses that column's data."""
    table = _ensure_properties(table)
    existing = {f.name for f in table.schema().fields}
    required = [f.name for f in table.schema().fields if f.required]
    if required or any(name not in existing for name in schema.names):
        with table.update_schema() as update:
            # Tables made before columns were created optional: relax them once.
            for name in required:
                update.make_column_optional(name)
            update.union_by_name(_all_optional(schema))
        table = table.refresh()
    return table


def _add_chunks(tx: Any, io: Any, chunks: Iterable[pa.Table], properties: dict[str, str]) -> None:
    """Add ``chunks`` to ``tx`` with the table's schema and spec as ``tx`` sees them."""
    iceberg_schema = tx.table_metadata.schema()
    if not tx.table_metadata.spec().is_unpartitioned():
        _append_partitioned(tx, io, chunks, iceberg_schema, properties)
        return

    # One streaming append: one snapshot, memory bounded by one data file's batches.
    def aligned() -> Iterable[pa.RecordBatch]:
        for chunk in chunks:
            yield from _align(chunk, iceberg_schema).to_batches()

    _append_streaming(tx, io, aligned(), properties)


def _append_producer(tx: Any, properties: dict[str, str]) -> Any:
    """The snapshot producer of an append, as pyiceberg's ``Transaction.append`` picks it: a
    merge append when the table has ``commit.manifest-merge.enabled`` (see
    :data:`MERGE_TABLE_PROPERTIES`), else a fast append (one new manifest per commit)."""
    from pyiceberg.table import TableProperties
    from pyiceberg.utils.properties import property_as_bool

    update = tx.update_snapshot(snapshot_properties=properties)
    merge = property_as_bool(
        tx.table_metadata.properties,
        TableProperties.MANIFEST_MERGE_ENABLED,
        TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT,
    )
    return update.merge_append() if merge else update.fast_append()


def _append_partitioned(
    tx: Any, io: Any, chunks: Iterable[pa.Table], iceberg_schema: Any, properties: dict[str, str]
) -> None:
    """Append the chunks of a partitioned write as ONE snapshot (one new manifest), each chunk
    split into one data file per partition it holds.

    pyiceberg takes whole Arrow tables for partitioned tables (it streams only unpartitioned
    ones), so memory is bounded by a chunk. ``tx.append`` per chunk (what this replaced) made a
    snapshot and a manifest per chunk: a many-day write of 3.6M rows in 200k-row chunks added 18
    snapshots and manifests. How many files a day gets is up to the chunks: a writer that sends
    each day whole in one chunk (``transformation.duckdb_iceberg.day_chunks``) gets one file per
    day. No chunk with rows, no snapshot (as before: an overwrite by nothing is only its delete).
    """
    from contextlib import ExitStack

    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    counter = itertools.count(0)
    with ExitStack() as stack:
        append_files = None
        for chunk in chunks:
            if not chunk.num_rows:
                continue
            if append_files is None:
                append_files = stack.enter_context(_append_producer(tx, properties))
            for data_file in _dataframe_to_data_files(
                table_metadata=tx.table_metadata,
                df=_align(chunk, iceberg_schema),
                io=io,
                write_uuid=append_files.commit_uuid,
                counter=counter,
            ):
                append_files.append_data_file(data_file)


#: Largest in-memory Arrow size written as one data file by a streaming (batches) write.
STREAM_BIN_BYTES = 128 * 1024 * 1024


def _append_streaming(
    tx: Any, io: Any, batches: Iterable[pa.RecordBatch], properties: dict[str, str]
) -> None:
    """Append ``batches`` as one snapshot, writing one data file at a time.

    Why not ``tx.append(RecordBatchReader)``: pyiceberg 0.12 hands the reader's bins to
    ``ThreadPoolExecutor.map``, which submits every bin up front, so the whole stream is pulled
    into memory while the first files are still being written (measured: 2.0 GB peak RSS for
    10M raw events, growing with the row count). Here each bin (``write.target-file-size-bytes``
    of in-memory Arrow data, as pyiceberg sizes files) is written and its file closed before the
    next bin is read, so peak memory stays at a few bins' worth whatever the total size. Bins
    are capped at :data:`STREAM_BIN_BYTES`: writing a bin takes about 2.5 times its size (the
    Parquet writer's buffers and pyarrow's pool), so pyiceberg's 512 MiB default would still peak
    near 1.7 GB; 128 MiB of Arrow data makes ~40 MB zstd files and peaks under 0.7 GB.
    """
    with _append_producer(tx, properties) as append_files:
        add_files_streaming(append_files, tx, io, batches)


def add_files_streaming(producer: Any, tx: Any, io: Any, batches: Iterable[pa.RecordBatch]) -> None:
    """Add ``batches`` to the snapshot ``producer`` (an append, or an overwrite that also deletes
    files) as data files written one at a time, each bin of rows written and closed before the
    next is read (:func:`_append_streaming` says why and how bins are sized)."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files, bin_pack_record_batches
    from pyiceberg.table import TableProperties
    from pyiceberg.utils.properties import property_as_int

    target_size = min(
        STREAM_BIN_BYTES,
        property_as_int(
            tx.table_metadata.properties,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
        ),
    )
    arrow_schema = tx.table_metadata.schema().as_arrow()
    counter = itertools.count(0)
    for bin_batches in bin_pack_record_batches(batches, target_size):
        # The bin's own schema (string columns may be `string`, see _align); a batch that
        # differs (a source switching types mid-stream) is cast to the bin's first.
        bin_schema = bin_batches[0].schema if bin_batches else arrow_schema
        bin_batches = [b if b.schema == bin_schema else b.cast(bin_schema) for b in bin_batches]
        files = _dataframe_to_data_files(
            table_metadata=tx.table_metadata,
            df=pa.RecordBatchReader.from_batches(bin_schema, bin_batches),
            io=io,
            write_uuid=producer.commit_uuid,
            counter=counter,
        )
        for data_file in files:  # waits for this bin's file before reading the next bin
            producer.append_data_file(data_file)


def _align(chunk: pa.Table, iceberg_schema: Any) -> pa.Table:
    """Order columns as the table does; columns the batch lacks are written as nulls.

    A source that drops a column keeps the column in the table (with nulls from then on) rather
    than failing the sync or rewriting history.

    A column whose Arrow type already stores the table's Iceberg type is kept as it is, without a
    copy: pyiceberg reports strings and binaries as ``large_string``/``large_binary``, but writes
    ``string``/``binary`` columns to the same Iceberg type, and casting every string of a batch
    to 64-bit offsets made Parquet writes about 14% slower (docs/benchmarks.md). Other types are
    cast to the table's (e.g. int32 to a long column).
    """
    arrow_schema = iceberg_schema.as_arrow()
    fields = []
    cols = []
    for target in arrow_schema:
        if target.name in chunk.column_names:
            column = chunk.column(target.name)
            if _same_storage(column.type, target.type):
                fields.append(target.with_type(column.type))
                cols.append(column)
            else:
                fields.append(target)
                cols.append(column.cast(target.type))
        else:
            fields.append(target)
            cols.append(pa.nulls(chunk.num_rows, target.type))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields, metadata=arrow_schema.metadata))


def _same_storage(actual: pa.DataType, target: pa.DataType) -> bool:
    """True if ``actual`` holds the Iceberg type of ``target`` as it is: equal types, or the
    32-bit-offset variant of a ``large_string``/``large_binary`` target."""
    if actual == target:
        return True
    if pa.types.is_large_string(target):
        return pa.types.is_string(actual)
    if pa.types.is_large_binary(target):
        return pa.types.is_binary(actual)
    return False


def describe_write(table: Table, identifier: str, rows_written: int) -> TableWriteResult:
    snapshot = table.current_snapshot()
    return TableWriteResult(
        identifier=identifier,
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        row_count=row_count(table),
        rows_written=rows_written,
        metadata_location=table.metadata_location,
    )


def row_count(table: Table) -> int:
    """Rows in the current snapshot, from its summary (no data files read)."""
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.additional_properties.get("total-records", 0))


def column_max(table: Table, column: str, *, snapshot_id: int | None = None) -> Any:
    """The largest value of ``column`` in a snapshot of ``table`` (the current one by default),
    from the upper bounds the manifests keep for each data file: no data file is opened, so the
    cost follows the number of manifests, not the rows (a max over a scan read every file's
    footer and column: 0.96 s for stg_events after 180 days, docs/benchmarks.md).

    For date, timestamp and integer columns, whose bounds are exact (string bounds may be
    truncated). Returns ``None`` when the snapshot holds no non-null value. Raises
    :class:`LookupError` when the metadata cannot tell: a data file with delete files (its bound
    may be a deleted row's), or one holding non-null values without an upper bound (metrics
    turned off by its writer). Callers then compute the max from the data.
    """
    from pyiceberg.conversions import from_bytes
    from pyiceberg.types import DateType, IntegerType, LongType, TimestampType, TimestamptzType
    from pyiceberg.utils.datetime import days_to_date, micros_to_timestamp, micros_to_timestamptz

    field = table.schema().find_field(column)
    convert: dict[type, Callable[[Any], Any]] = {
        DateType: days_to_date,
        TimestampType: micros_to_timestamp,
        TimestamptzType: micros_to_timestamptz,
        IntegerType: int,
        LongType: int,
    }
    to_python = convert.get(type(field.field_type))
    if to_python is None:
        raise LookupError(f"{column} is {field.field_type}: its bounds may be inexact")
    if snapshot_id is None and table.current_snapshot() is None:
        return None
    best = None
    for task in table.scan(snapshot_id=snapshot_id, selected_fields=(column,)).plan_files():
        data_file = task.file
        if task.delete_files:
            raise LookupError(f"{data_file.file_path} has delete files")
        nulls = (data_file.null_value_counts or {}).get(field.field_id)
        if data_file.record_count == 0 or nulls == data_file.record_count:
            continue  # no non-null value in this file
        bound = (data_file.upper_bounds or {}).get(field.field_id)
        if bound is None:
            raise LookupError(f"{data_file.file_path} has no upper bound for {column}")
        value = from_bytes(field.field_type, bound)
        best = value if best is None else max(best, value)
    return to_python(best) if best is not None else None


def read_table(
    catalog: Catalog,
    identifier: str,
    *,
    columns: Sequence[str] | None = None,
    row_filter: BooleanExpression | str | None = None,
) -> pa.Table:
    """Read ``identifier`` as Arrow, projecting ``columns`` and pushing ``row_filter`` down."""
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError as exc:
        raise IcebergError(
            f"Iceberg table {identifier} does not exist yet: materialize its asset first"
        ) from exc
    scan = table.scan(
        row_filter=row_filter if row_filter is not None else AlwaysTrue(),
        selected_fields=tuple(columns) if columns else ("*",),
    )
    return scan.to_arrow()


def local_path(uri: str) -> str | None:
    """The local filesystem path of a data file URI, or None if it is not on the local disk.

    Readers that scan a snapshot's planned files in place (polars, DuckDB) use it to tell the
    files they can open directly from those that need pyiceberg's FileIO.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "" and uri.startswith("/"):
        return uri
    return None


def list_tables(catalog: Catalog) -> list[dict[str, Any]]:
    """Every table of the catalog: identifier, metadata location, snapshot id, row count."""
    out = []
    for ns in sorted(catalog.list_namespaces()):
        for ident in sorted(catalog.list_tables(ns)):
            name = ".".join(ident)
            table = catalog.load_table(name)
            snap = table.current_snapshot()
            out.append(
                {
                    "identifier": name,
                    "metadata_location": table.metadata_location,
                    "snapshot_id": snap.snapshot_id if snap else None,
                    "row_count": row_count(table),
                }
            )
    return out
