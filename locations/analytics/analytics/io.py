"""Reading upstream tables into polars and writing outputs, through :mod:`shared` helpers.

Every read projects the columns listed in :mod:`analytics.sources` and pushes a row filter down
to the Iceberg scan (partition and file pruning by column statistics), so a day's metrics read
that day's files, not the table. What was pushed down is returned as metadata so the UI shows it.

pyiceberg plans the scan (pinned snapshot, partition and statistics pruning); polars then reads
the planned Parquet files lazily itself (``pl.scan_parquet`` with the same projection and the row
filter re-applied as a polars predicate), so reading overlaps computing and only the needed
columns and row groups are decoded. Materializing through pyiceberg's Arrow reader first made
the platform 1.4-2x slower than bare polars on the same files (docs/benchmarks.md). Whatever
polars could read differently from Iceberg's semantics (delete files, files not on the local
disk, a column renamed or retyped in the table's history, column types outside a known-safe
set, a filter polars cannot express) falls back to pyiceberg's Arrow read of the same scan, as
``transformation.duckdb_iceberg.scan_sql`` does for DuckDB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    BoundEqualTo,
    BoundGreaterThan,
    BoundGreaterThanOrEqual,
    BoundIn,
    BoundIsNull,
    BoundLessThan,
    BoundLessThanOrEqual,
    BoundNotEqualTo,
    BoundNotIn,
    BoundNotNull,
    BoundPredicate,
    GreaterThanOrEqual,
    LessThan,
    Not,
    Or,
)
from pyiceberg.expressions.visitors import bind
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)

from analytics.sources import Upstream
from shared.iceberg import IcebergError, TableWriteResult, local_path
from shared.resources import IcebergCatalogResource

if TYPE_CHECKING:  # annotations only: keeps pyiceberg.table out of this module's import
    from pyiceberg.table import FileScanTask, Table


#: Iceberg types whose Parquet encoding (as pyiceberg writes it) polars reads as the same dtype
#: that pyiceberg's Arrow read gives, with that dtype. Any other projected type takes the
#: pyiceberg path.
_POLARS_DTYPES: tuple[tuple[type[IcebergType], pl.DataType], ...] = (
    (BooleanType, pl.Boolean()),
    (IntegerType, pl.Int32()),
    (LongType, pl.Int64()),
    (FloatType, pl.Float32()),
    (DoubleType, pl.Float64()),
    (StringType, pl.String()),
    (BinaryType, pl.Binary()),
    (DateType, pl.Date()),
    (TimestamptzType, pl.Datetime("us", "UTC")),
    (TimestampType, pl.Datetime("us")),
)
POLARS_SAFE_TYPES = tuple(t for t, _ in _POLARS_DTYPES)


@dataclass(frozen=True)
class ReadResult:
    """A lazily usable frame plus what was read, for metadata.

    ``reader`` says how the frame reads: ``polars`` (the planned Parquet files, scanned lazily)
    or ``pyiceberg (<why>)`` (materialized through pyiceberg's Arrow reader). ``data_files`` is
    the number of data files left after pruning.
    """

    frame: pl.LazyFrame
    identifier: str
    columns: tuple[str, ...]
    row_filter: str
    snapshot_id: int | None
    reader: str = "pyiceberg"
    data_files: int = 0
    known_rows: int | None = field(default=None, repr=False)

    @cached_property
    def rows(self) -> int:
        """Rows the read returns. Known without reading when nothing is filtered; otherwise
        counted once on demand (polars then reads only the filter's columns)."""
        if self.known_rows is not None:
            return self.known_rows
        return int(self.frame.select(pl.len()).collect().item())

    def as_metadata(self) -> dict[str, Any]:
        return {
            "table": self.identifier,
            "snapshot_id": str(self.snapshot_id),
            "columns": list(self.columns),
            "row_filter": self.row_filter,
            "rows_read": self.rows,
            "data_files": self.data_files,
            "reader": self.reader,
        }


def day_range_filter(
    column: str,
    start: dt.date | None,
    end: dt.date | None,
    field_type: IcebergType | None = None,
) -> BooleanExpression:
    """``start <= column < end`` (either bound optional) as a pyiceberg expression.

    ``field_type`` is the column's Iceberg type (default: date). Timestamp literals are written
    for that type (with a UTC offset for timestamptz, without for a naive timestamp) so the filter
    binds whichever type the upstream chose.
    """

    def literal(day: dt.date) -> str:
        if isinstance(field_type, TimestamptzType):
            return f"{day.isoformat()}T00:00:00+00:00"
        if isinstance(field_type, TimestampType):
            return f"{day.isoformat()}T00:00:00"
        return day.isoformat()

    parts: list[BooleanExpression] = []
    if start is not None:
        parts.append(GreaterThanOrEqual(column, literal(start)))
    if end is not None:
        parts.append(LessThan(column, literal(end)))
    if not parts:
        raise ValueError("day_range_filter: give start, end or both")
    return parts[0] if len(parts) == 1 else And(parts[0], parts[1])


def read_upstream(
    iceberg: IcebergCatalogResource,
    upstream: Upstream,
    *,
    window_column: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    pruning_column: str | None = None,
) -> ReadResult:
    """Read ``upstream``'s columns; with ``window_column``, only rows in ``[start, end)``.

    ``pruning_column`` (e.g. the partition column ``event_date`` when the window is on
    ``event_ts``) adds the same window widened by one day on each side: it lets the scan skip
    whole partitions in the manifests while the exact window decides which rows are returned.

    Columns come back under their analytics names (see :class:`analytics.sources.Column`).
    Raises :class:`shared.iceberg.IcebergError` naming the table and the column when the table
    lacks a column analytics needs.
    """
    identifier = upstream.identifier
    try:
        table = iceberg.load_table(identifier)
    except Exception as exc:
        raise IcebergError(
            f"cannot load upstream table {identifier}: {exc}. "
            f"Materialize {upstream.key.to_user_string()} first."
        ) from exc
    schema = table.schema()
    try:
        physical = upstream.resolve([f.name for f in schema.fields])
    except KeyError as exc:
        raise IcebergError(exc.args[0]) from None
    row_filter: BooleanExpression | None = None
    if window_column is not None:
        column = physical[window_column]
        row_filter = day_range_filter(column, start, end, schema.find_field(column).field_type)
    if pruning_column is not None and row_filter is not None:
        column = physical[pruning_column]
        one_day = dt.timedelta(days=1)
        row_filter = And(
            row_filter,
            day_range_filter(
                column,
                start - one_day if start else None,
                end + one_day if end else None,
                schema.find_field(column).field_type,
            ),
        )
    columns = tuple(physical.values())
    # One scan object: the planned files, the fallback read and the snapshot id all come from
    # the snapshot loaded above, even if a writer commits meanwhile.
    scan = table.scan(
        row_filter=row_filter if row_filter is not None else AlwaysTrue(), selected_fields=columns
    )
    snapshot = scan.snapshot()
    tasks = list(scan.plan_files())
    lazy, reason = polars_scan(table, columns, tasks, row_filter)
    known_rows = None
    if lazy is None:
        arrow = scan.to_arrow()
        lazy, known_rows, reader = (
            pl.from_arrow(arrow).lazy(),
            arrow.num_rows,
            f"pyiceberg ({reason})",
        )
    else:
        reader = "polars"
        if row_filter is None:  # no delete files on this path: the files' counts are exact
            known_rows = sum(task.file.record_count for task in tasks)
    frame = lazy.select([pl.col(p).alias(name) for name, p in physical.items()])
    return ReadResult(
        frame=frame,
        identifier=identifier,
        columns=columns,
        row_filter=str(row_filter) if row_filter is not None else "none (column projection only)",
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        reader=reader,
        data_files=len(tasks),
        known_rows=known_rows,
    )


def polars_scan(
    table: Table,
    columns: Sequence[str],
    tasks: Sequence[FileScanTask],
    row_filter: BooleanExpression | None,
) -> tuple[pl.LazyFrame | None, str]:
    """A lazy polars scan of the planned ``tasks`` equal to pyiceberg's read of them, or
    ``(None, why)`` when polars could read something else than Iceberg means.

    Columns are matched by name, which equals Iceberg's match by field id only if no projected
    column was ever renamed, retyped or dropped and re-added: checked on every schema of the
    table's history. A column added after a file was written reads as nulls (as in Iceberg).
    """
    schema = table.schema()
    projected = [schema.find_field(c) for c in columns]
    obstacle = _obstacle(table, projected, tasks)
    if obstacle:
        return None, obstacle
    try:
        predicate = None if row_filter is None else polars_predicate(bind(schema, row_filter, True))
    except NotImplementedError as exc:
        return None, f"filter not expressible in polars: {exc}"
    # The dtypes pyiceberg's Arrow read gives, so both paths yield the same frame schema.
    target = pl.Schema({f.name: polars_dtype(f.field_type) for f in projected})
    if not tasks:
        lazy = pl.LazyFrame(schema=target)
    else:
        lazy = pl.scan_parquet(
            [local_path(t.file.file_path) for t in tasks],  # type: ignore[misc]
            schema=target,
            missing_columns="insert",  # column added to the table after the file was written
            extra_columns="ignore",  # the columns not projected
            hive_partitioning=False,  # the folder names are Iceberg's, not the data
            glob=False,  # a file name is a name, never a pattern
        )
    return (lazy if predicate is None else lazy.filter(predicate)), ""


def _obstacle(table: Table, projected: list[NestedField], tasks: Sequence[FileScanTask]) -> str:
    """Why polars must not read these files directly ("" if it may)."""
    for f in projected:
        if not isinstance(f.field_type, POLARS_SAFE_TYPES):
            return f"column {f.name} has type {f.field_type}"
    for old in table.metadata.schemas:
        by_name = {f.name: f for f in old.fields}
        for f in projected:
            before = next((o for o in old.fields if o.field_id == f.field_id), None)
            if before is not None and (before.name, before.field_type) != (f.name, f.field_type):
                return f"column {f.name} was {before.name} {before.field_type} in schema {old.schema_id}"
            same_name = by_name.get(f.name)
            if same_name is not None and same_name.field_id != f.field_id:
                return f"column {f.name} was another column in schema {old.schema_id}"
    for task in tasks:
        if task.delete_files:
            return f"data file {task.file.file_path} has delete files"
        if task.file.file_format.name != "PARQUET":
            return f"data file {task.file.file_path} is {task.file.file_format.name}"
        if local_path(task.file.file_path) is None:
            return f"data file {task.file.file_path} is not on the local disk"
    return ""


def _literal(field_type: IcebergType, value: Any) -> pl.Expr:
    """A bound Iceberg literal (days / microseconds since the epoch for dates / timestamps) as a
    polars literal of the column's dtype (a cast constant, folded by polars' optimizer: cheaper
    to build than a literal from a Python datetime)."""
    dtype = polars_dtype(field_type)
    if isinstance(field_type, DateType):
        return pl.lit(value, pl.Int32).cast(dtype)
    if isinstance(field_type, TimestampType | TimestamptzType):
        return pl.lit(value, pl.Int64).cast(dtype)
    return pl.lit(value, dtype)


def polars_dtype(field_type: IcebergType) -> pl.DataType:
    """The polars dtype of a column of a known-safe type, as pyiceberg's Arrow read gives it."""
    for iceberg_type, dtype in _POLARS_DTYPES:
        if isinstance(field_type, iceberg_type):
            return dtype
    raise NotImplementedError(f"type {field_type}")


def polars_predicate(expr: BooleanExpression) -> pl.Expr:
    """The polars predicate of a BOUND pyiceberg expression (same rows kept: a null comparison
    drops the row in both). Raises ``NotImplementedError`` for what it does not translate."""
    if isinstance(expr, AlwaysTrue):
        return pl.lit(True)
    if isinstance(expr, AlwaysFalse):
        return pl.lit(False)
    if isinstance(expr, And):
        return polars_predicate(expr.left) & polars_predicate(expr.right)
    if isinstance(expr, Or):
        return polars_predicate(expr.left) | polars_predicate(expr.right)
    if isinstance(expr, Not):
        return ~polars_predicate(expr.child)
    if not isinstance(expr, BoundPredicate):
        raise NotImplementedError(f"{expr!r}")
    f = expr.term.ref().field
    col = pl.col(f.name)
    if isinstance(expr, BoundIsNull):
        return col.is_null()
    if isinstance(expr, BoundNotNull):
        return col.is_not_null()
    if isinstance(expr, BoundIn | BoundNotIn):
        values = pl.concat([_literal(f.field_type, lit.value) for lit in expr.literals])
        inside = col.is_in(values.implode())
        return inside if isinstance(expr, BoundIn) else ~inside
    compare = {
        BoundEqualTo: pl.Expr.__eq__,
        BoundNotEqualTo: pl.Expr.__ne__,
        BoundLessThan: pl.Expr.__lt__,
        BoundLessThanOrEqual: pl.Expr.__le__,
        BoundGreaterThan: pl.Expr.__gt__,
        BoundGreaterThanOrEqual: pl.Expr.__ge__,
    }.get(type(expr))
    if compare is None:
        raise NotImplementedError(f"{type(expr).__name__} on {f.name}")
    return compare(col, _literal(f.field_type, expr.literal.value))


def to_arrow(frame: pl.DataFrame) -> pa.Table:
    """Arrow with classic (non-view) string types, which pyiceberg writes."""
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def table_schema(frame: pl.DataFrame) -> TableSchema:
    return TableSchema(columns=[TableColumn(n, str(t)) for n, t in frame.schema.items()])


def output_metadata(
    result: TableWriteResult, frame: pl.DataFrame, reads: list[ReadResult], **extra: Any
) -> dict[str, Any]:
    """Materialization metadata: what was written, where, from which upstream snapshots."""
    return {
        **result.as_metadata(),
        "dagster/row_count": result.row_count,
        "dagster/column_schema": table_schema(frame),
        "dagster/table_name": result.identifier,
        "inputs": MetadataValue.json([r.as_metadata() for r in reads]),
        **extra,
    }
