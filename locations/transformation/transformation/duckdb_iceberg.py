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
import datetime as dt
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


def scan_sql(table: Table, scratch_dir: Path, window: tuple[dt.date, dt.date] | None = None) -> str:
    """A DuckDB table expression reading ``table``'s current snapshot.

    The fast path reads the snapshot's parquet data files in place: our writer (pyiceberg,
    copy-on-write) never writes delete files. Columns are matched by Iceberg field id
    (``read_parquet``'s ``schema``: :func:`field_id_schema`), as Iceberg readers do: a column
    added by schema evolution reads as null in older files, a renamed one keeps its data. A table
    whose files may lack field ids (it has a name mapping: files imported with ``add_files``), or
    a type the mapping does not cover, is read with ``union_by_name`` instead (columns matched by
    name), which must read every file's footer whenever a query binds the view.

    ``window`` (the run's day window, :func:`run_window`): a day-partitioned table is read as the
    window's files plus the files before and after it, each group under a predicate its
    partition values make true (:func:`day_partition_groups`). The view is the same table for any
    query; one that filters on the window lets DuckDB drop the other groups' scans without
    opening their files, so a day's models and tests open the window's files, not one per day of
    history (docs/benchmarks.md, "Views that open the window's files").

    Anything else (delete files written by another engine, remote files, an empty table) is read
    through pyiceberg and copied to a scratch parquet file, which is always correct, just slower.
    """
    tasks = list(table.scan().plan_files())
    paths = [local_path(task.file.file_path) for task in tasks]
    simple = tasks and all(paths) and not any(task.delete_files for task in tasks)
    if simple:
        schema = field_id_schema(table)
        groups = None if schema is None else day_partition_groups(table, tasks, paths, window)
        if groups is None:
            return _read_files(paths, schema)  # type: ignore[arg-type]
        branches = [
            f"select * from {_read_files(group_paths, schema)}"
            + (f" where {predicate}" if predicate else "")
            for predicate, group_paths in groups
        ]
        return "(" + " union all ".join(branches) + ")"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    copy = scratch_dir / f"{'.'.join(table.name())}-{uuid.uuid4().hex}.parquet"
    pq.write_table(table.scan().to_arrow(), copy)
    return f"read_parquet({sql_string(str(copy))})"


def _read_files(paths: Iterable[str], schema: str | None) -> str:
    """``read_parquet`` of ``paths``: columns by field id (``schema``, :func:`field_id_schema`),
    or by name (``union_by_name``) without one."""
    files = ", ".join(sql_string(p) for p in paths)
    how = "union_by_name = true" if schema is None else f"schema = {schema}"
    return f"read_parquet([{files}], {how})"


#: Iceberg primitive types and their DuckDB names (decimal is added with its precision).
_DUCKDB_TYPES = {
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "date": "DATE",
    "time": "TIME",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "string": "VARCHAR",
    "binary": "BLOB",
}
# Not mapped (read by name instead): uuid and fixed, stored as fixed-length byte arrays whose
# conversion DuckDB's field-id schema does not promise; nested types.

#: The table property that says some data files may have no field ids (Iceberg's name mapping).
NAME_MAPPING_PROPERTY = "schema.name-mapping.default"


def field_id_schema(table: Table) -> str | None:
    """``read_parquet``'s ``schema`` argument for ``table``'s current schema: a DuckDB map from
    each column's Iceberg field id to its name and type, in the schema's order; None when the
    files cannot be read that way (see :func:`scan_sql`).

    DuckDB reads a file without field ids as all nulls under such a map (checked, DuckDB 2.0):
    so a table with a name mapping, the sign of imported files without ids, is never read by id.
    Every file an Iceberg writer writes (pyiceberg, Trino, Spark) carries the ids."""
    from pyiceberg.types import DecimalType, PrimitiveType

    if NAME_MAPPING_PROPERTY in table.properties:
        return None
    entries = []
    for field in table.schema().fields:
        ftype = field.field_type
        if isinstance(ftype, DecimalType):
            duck = f"DECIMAL({ftype.precision}, {ftype.scale})"
        elif isinstance(ftype, PrimitiveType) and str(ftype) in _DUCKDB_TYPES:
            duck = _DUCKDB_TYPES[str(ftype)]
        else:
            return None  # nested or fixed types: read by name
        entries.append(
            f"{field.field_id}: {{name: {sql_string(field.name)}, type: {sql_string(duck)}, "
            "default_value: NULL}"
        )
    return "map {" + ", ".join(entries) + "}"


_EPOCH = dt.date(1970, 1, 1)


def day_partition_groups(
    table: Table, tasks: list[Any], paths: list[str], window: tuple[dt.date, dt.date] | None
) -> list[tuple[str, list[str]]] | None:
    """The table's files (``tasks``, planned; ``paths``, their local paths in the same order) in
    groups around the day ``window`` ``[start, end)``, each with a
    predicate on the partition's source column that its files' partition values make true:
    ``(predicate, paths)``, the window's files first (no predicate needed), then those before
    (``column < start``), after (``column >= end``) and of a null partition (none). None when
    nothing is to be gained or it cannot be done safely: no window, not one ``day`` or
    ``identity`` partition of a date column, or a file of another partition spec.

    The predicates cost nothing to a query of the window: DuckDB sees that ``column < start``
    contradicts the query's ``column >= start`` and plans no scan of that group."""
    from pyiceberg.transforms import DayTransform, IdentityTransform
    from pyiceberg.types import DateType

    if window is None:
        return None
    spec = table.spec()
    if len(spec.fields) != 1:
        return None
    part = spec.fields[0]
    source = table.schema().find_field(part.source_id)
    if not isinstance(part.transform, DayTransform | IdentityTransform) or not isinstance(
        source.field_type, DateType
    ):
        return None
    if any(task.file.spec_id != spec.spec_id for task in tasks):
        return None
    start, end = window
    column = quote_identifier(source.name)
    groups: dict[str, list[str]] = {"window": [], "before": [], "after": [], "null": []}
    for task, path in zip(tasks, paths, strict=True):
        value = task.file.partition[0]
        if value is None:
            group = "null"
        else:
            day = _EPOCH + dt.timedelta(days=int(value))
            group = "before" if day < start else "after" if day >= end else "window"
        groups[group].append(path)
    predicates = {
        "window": "",
        "before": f"{column} < DATE '{start.isoformat()}'",
        "after": f"{column} >= DATE '{end.isoformat()}'",
        "null": "",
    }
    return [(predicates[name], paths) for name, paths in groups.items() if paths]


def run_window() -> tuple[dt.date, dt.date] | None:
    """The day window of the running dbt invocation, as ``dbt/macros/day_window.sql`` reads it
    (the vars ``window_start``/``window_end``, else dbt's ``--event-time-start/--event-time-end``
    flags), as dates: the start's day, and the end's day (the next one when the end is not at
    midnight). None outside a dbt invocation or without a window.

    Only a hint for :func:`scan_sql`'s grouping: the views are the same tables whatever it says."""
    try:
        from dbt.flags import get_flags

        flags = get_flags()
    except Exception:  # noqa: BLE001 - no dbt invocation: no window
        return None
    found = dict(getattr(flags, "VARS", None) or {})
    start = found.get("window_start")
    end = found.get("window_end")
    if start is None and end is None:
        start = getattr(flags, "EVENT_TIME_START", None)
        end = getattr(flags, "EVENT_TIME_END", None)
    try:
        first = _as_date(start, up=False)
        last = _as_date(end, up=True)
    except (TypeError, ValueError):
        return None
    if first is None or last is None or first >= last:
        return None
    return first, last


def _as_date(value: Any, *, up: bool) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        day = value.date()
        return day + dt.timedelta(days=1) if up and value.time() != dt.time(0) else day
    if isinstance(value, dt.date):
        return value
    text = str(value)
    day = dt.date.fromisoformat(text[:10])
    if up and len(text) > 10 and dt.datetime.fromisoformat(text).time() != dt.time(0):
        day += dt.timedelta(days=1)
    return day


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
        #: The invocation's day window (dbt builds a plugin per invocation): the views' grouping.
        self._window = run_window()

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
                    f"{scan_sql(table, self._scratch, self._window)}"
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
        request["scan_sql"] = scan_sql(table, self._scratch, self._window)
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
