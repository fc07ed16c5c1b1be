"""dbt-duckdb plugin: the local dbt target reads and writes the platform's Iceberg tables.

DuckDB is only the engine here; the Iceberg catalog (the same one every location uses, from
:func:`shared.settings.load_settings`) holds all the state, and the DuckDB database is in memory.

* A table dbt reads becomes a DuckDB view ``<namespace>.<table>`` over the table's current
  snapshot the first time a node of the run resolves it (``dbt/macros/iceberg_refs.sql``: dbt's
  ``ref``/``source``, extended to call :meth:`Plugin.store` with action ``register``). Only the
  tables a run reads are loaded, once per dbt process; connecting opens no table. A run that
  builds only ``fct_daily_events`` reads the full ``stg_events`` built by earlier runs.
* The ``iceberg`` materialization (``dbt/macros/materializations/iceberg_duckdb.sql``) hands each
  model's rows to :meth:`Plugin.store`, which writes them with :func:`shared.iceberg.write_table`
  (one atomic commit, retried on conflicts): the whole table, or for a daily model exactly the rows
  of the day window, then points the model's view at the new snapshot.

Wired in ``dbt/profiles.yml``::

    plugins:
      - module: transformation.duckdb_iceberg
        alias: iceberg
        config: {home: ...}
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from shared import iceberg
from shared.iceberg import local_path
from shared.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: The Iceberg namespaces the dbt models write (their dbt schemas; see shared.keys.NAMESPACES).
MODEL_NAMESPACES = ("staging", "marts")
#: The namespaces dbt reads: its sources (raw) and its own models. Other layers (ml, analytics)
#: are downstream of dbt and are not exposed, which keeps connecting cheap.
READ_NAMESPACES = ("raw", *MODEL_NAMESPACES)
#: Rows per chunk written to Iceberg (bounded memory for large models; a daily model's chunks
#: end at a day's end, see :func:`day_chunks`).
BATCH_ROWS = 200_000
#: Rows per batch read from the model's parquet output (a chunk holds up to BATCH_ROWS of them
#: plus one batch).
READ_ROWS = 50_000


class IcebergStoreError(RuntimeError):
    """A model could not be stored as its Iceberg table; the message names the table."""


def settings_for(home: str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The platform settings, with ``home`` (if given) overriding ``DATA_PLATFORM_HOME``."""
    return load_settings(environ, home=home)


def window_filter(column: str, start: str, end: str) -> str:
    """The Iceberg row filter of the day window ``[start, end)`` on date column ``column``."""
    return f"{column} >= '{start}' and {column} < '{end}'"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def scan_sql(table: Table, scratch_dir: Path) -> str:
    """A DuckDB table expression reading ``table``'s current snapshot.

    The fast path reads the snapshot's parquet data files in place: our writer
    (pyiceberg, copy-on-write) never writes delete files, and ``union_by_name`` fills columns
    added by schema evolution with nulls in older files. Anything else (delete files written by
    another engine, remote files, an empty table) is read through pyiceberg and copied to a
    scratch parquet file, which is always correct, just slower.
    """
    tasks = list(table.scan().plan_files())
    paths = [local_path(task.file.file_path) for task in tasks]
    simple = tasks and all(paths) and not any(task.delete_files for task in tasks)
    if simple:
        files = ", ".join(sql_string(p) for p in paths)  # type: ignore[arg-type]
        return f"read_parquet([{files}], union_by_name = true)"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    copy = scratch_dir / f"{'.'.join(table.name())}-{uuid.uuid4().hex}.parquet"
    pq.write_table(table.scan().to_arrow(), copy)
    return f"read_parquet({sql_string(str(copy))})"


_SCRATCH: Path | None = None
_SCRATCH_LOCK = threading.Lock()


def scratch_dir() -> Path:
    """This process's scratch folder (model batches, snapshot copies), removed at exit.

    One per process, not one per plugin: dbt runs in the step's process
    (``transformation.dbt_run``) and builds a new plugin for every invocation, so a folder (and
    an exit handler) per plugin would pile up in a long-lived worker. Files are uniquely named;
    :func:`clear_scratch` empties the folder after each invocation.
    """
    global _SCRATCH
    with _SCRATCH_LOCK:
        if _SCRATCH is None:
            _SCRATCH = Path(tempfile.mkdtemp(prefix="dbt-duckdb-iceberg-"))
            atexit.register(shutil.rmtree, _SCRATCH, True)
        _SCRATCH.mkdir(parents=True, exist_ok=True)
        return _SCRATCH


def clear_scratch() -> None:
    """Remove what the scratch folder holds: called once a dbt invocation is over (its DuckDB
    database, whose views read the snapshot copies, is closed; batches are already written)."""
    with _SCRATCH_LOCK:
        if _SCRATCH is not None and _SCRATCH.exists():
            for child in _SCRATCH.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


class Plugin(BasePlugin):
    """Expose the Iceberg tables a run reads to DuckDB as views; store models as Iceberg tables."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self._settings = settings_for(plugin_config.get("home") or None)
        self._catalog: Catalog | None = None
        self._conn: Any = None
        #: Tables with a view in this process (registered, or just written by a model).
        self._registered: set[str] = set()
        self._lock = threading.Lock()
        self._scratch = scratch_dir()

    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = iceberg.open_catalog(self._settings)
        return self._catalog

    def configure_connection(self, conn: Any) -> None:
        """Create the namespaces and the DuckDB schemas; tables are registered when read."""
        catalog = self.catalog()
        # Create our namespaces up front, from this one thread: two models of a new namespace
        # committing in parallel would otherwise race to create it (SQLite UNIQUE violation).
        for ns in MODEL_NAMESPACES:
            iceberg.ensure_namespace(catalog, ns)
        for ns in READ_NAMESPACES:
            conn.execute(f"create schema if not exists {quote_identifier(ns)}")
        # The process's one in-memory database (dbt-duckdb hands every thread a cursor of it):
        # views registered later on a cursor of it are visible to every thread.
        self._conn = conn

    def register(self, identifier: str) -> bool:
        """Make ``<ns>.<table>`` a view over the Iceberg table's current snapshot, once per process.

        Called when a node of the run resolves the table (ref/source). False when there is no
        such table yet (a model this run builds first: its materialization creates the view).
        """
        namespace = identifier.split(".", 1)[0]
        if self._conn is None or namespace not in READ_NAMESPACES:
            return False
        with self._lock:  # two threads resolving the same table register it once
            if identifier in self._registered:
                return True
            try:
                table = self.catalog().load_table(identifier)
            except NoSuchTableError:
                return False
            ns, name = identifier.split(".", 1)
            relation = f"{quote_identifier(ns)}.{quote_identifier(name)}"
            cursor = self._conn.cursor()
            try:
                cursor.execute(
                    f"create or replace view {relation} as select * from "
                    f"{scan_sql(table, self._scratch)}"
                )
            finally:
                cursor.close()
            self._registered.add(identifier)
            return True

    def store(self, target_config: TargetConfig) -> None:
        """Two steps of the ``iceberg`` materialization, told apart by ``request['action']``.

        ``prepare``: choose the parquet file the model's rows are copied to (``request['path']``).
        ``store``: write that file to the Iceberg table and set ``request['scan_sql']`` (how
        DuckDB reads the new snapshot) and ``request['result']`` (a summary for the log).
        """
        request = target_config.config
        if not isinstance(request, dict) or "identifier" not in request:
            raise IcebergStoreError(
                "the iceberg plugin stores models built by the `iceberg` materialization only "
                f"(got config {type(request).__name__} for {target_config.relation})"
            )
        identifier = request["identifier"]
        if request.get("action") == "register":
            request["registered"] = self.register(identifier)
            return
        if request.get("action") == "prepare":
            request["path"] = str(self._scratch / f"{identifier}-{uuid.uuid4().hex}.parquet")
            return
        path = Path(request["path"])
        try:
            result = store_batch(
                self.catalog(),
                identifier,
                path,
                day_partition_column=request.get("day_partition_column"),
                window_start=request.get("window_start"),
                window_end=request.get("window_end"),
            )
        finally:
            path.unlink(missing_ok=True)
        table = self.catalog().load_table(identifier)
        request["scan_sql"] = scan_sql(table, self._scratch)
        # The materialization points the view at the new snapshot: later reads must not reload it.
        with self._lock:
            self._registered.add(identifier)
        request["result"] = (
            f"snapshot {result.snapshot_id}, {result.rows_written} rows written, "
            f"{result.row_count} rows in table"
        )


def store_batch(
    catalog: Catalog,
    identifier: str,
    path: Path,
    *,
    day_partition_column: str | None = None,
    window_start: str | None = None,
    window_end: str | None = None,
) -> iceberg.TableWriteResult:
    """Write the parquet batch at ``path`` to Iceberg table ``identifier`` in one commit.

    Without a window the batch replaces the whole table. With a window (daily models) it replaces
    exactly the rows whose ``day_partition_column`` lies in ``[window_start, window_end)``: a
    re-run of a day replaces that day and never duplicates it, other days are untouched.
    """
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    overwrite_filter = None
    if window_start or window_end:
        if not (day_partition_column and window_start and window_end):
            raise IcebergStoreError(
                f"{identifier}: a day window needs day_partition_column, window_start and "
                f"window_end (got {day_partition_column!r}, {window_start!r}, {window_end!r})"
            )
        if day_partition_column not in schema.names:
            raise IcebergStoreError(
                f"{identifier}: day_partition_column {day_partition_column!r} is not a column "
                f"of the model (columns: {', '.join(schema.names)})"
            )
        overwrite_filter = window_filter(day_partition_column, window_start, window_end)

    def batches() -> Iterator[pa.RecordBatch]:
        # Streamed a batch at a time: memory stays bounded by a chunk, the commit is one.
        for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_ROWS):
            if overwrite_filter is not None:
                outside = _rows_outside_window(
                    batch, day_partition_column, window_start, window_end
                )
                if outside:
                    # Such rows would land in days this run does not own (and a re-run of those
                    # days would not replace them): a bug in the model's window filter. Raised
                    # before the commit, so the table is left as it was.
                    raise IcebergStoreError(
                        f"{identifier}: {outside} rows have {day_partition_column} outside the "
                        f"window [{window_start}, {window_end}); the model must filter on it"
                    )
            yield batch

    def chunks() -> Iterator[pa.Table | pa.RecordBatch]:
        if day_partition_column:  # one data file per day (day_chunks)
            yield from day_chunks(batches(), day_partition_column, BATCH_ROWS)
        else:
            yield from batches()

    return iceberg.write_table(
        catalog,
        identifier,
        chunks,
        schema=schema,
        mode="overwrite",
        overwrite_filter=overwrite_filter,
        partition_by_day=day_partition_column,
    )


def day_chunks(batches: Iterable[pa.RecordBatch], column: str, max_rows: int) -> Iterator[pa.Table]:
    """Regroup ``batches`` into chunks of whole days of ``column``, each of about ``max_rows``.

    The Iceberg writer makes one data file per (chunk, day): a day cut across two chunks gets
    two files, and a many-day run in fixed-size batches got ~18 files a day (3,207 files for
    181 days of stg_events, each one footer every later read opens). With rows in day order
    (the materialization sorts a daily model's rows), a chunk ends where a day ends, so each
    day is one file. A chunk is cut at ``max_rows`` anyway when one day alone is larger, so
    memory stays bounded by ``max_rows`` plus one batch. Rows out of order are still written,
    each exactly once, only in more files.
    """
    import pyarrow.compute as pc

    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows < max_rows:
            continue
        table = pa.Table.from_batches(pending)
        values = table.column(column)
        last = values[len(values) - 1]
        # Rows of the buffer's last day may continue in the next batch: keep them back.
        if last.is_valid:
            tail = int(pc.sum(pc.equal(values, last)).as_py() or 0)
        else:
            tail = values.null_count
        cut = table.num_rows - tail if tail < table.num_rows else table.num_rows
        yield table.slice(0, cut)
        pending = table.slice(cut).to_batches()
        rows = table.num_rows - cut
    if rows:
        yield pa.Table.from_batches(pending)


def _rows_outside_window(data: Any, column: str, start: str, end: str) -> int:
    import datetime as dt

    import pyarrow.compute as pc

    values = data.column(data.schema.get_field_index(column))
    lo = dt.date.fromisoformat(start)
    hi = dt.date.fromisoformat(end)
    inside = pc.and_(pc.greater_equal(values, lo), pc.less(values, hi))
    return int(pc.sum(pc.invert(pc.fill_null(inside, False))).as_py() or 0)
