"""Reading upstream tables into polars and writing outputs, through :mod:`shared` helpers.

Every read projects the columns listed in :mod:`analytics.sources` and pushes a row filter down
to the Iceberg scan (partition and file pruning by column statistics), so a day's metrics read
that day's files, not the table. What was pushed down is returned as metadata so the UI shows it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.types import IcebergType, TimestampType, TimestamptzType

from analytics.sources import Upstream
from shared.iceberg import IcebergError, TableWriteResult
from shared.resources import IcebergCatalogResource


@dataclass(frozen=True)
class ReadResult:
    """A lazily usable frame plus what was read, for metadata."""

    frame: pl.LazyFrame
    identifier: str
    columns: tuple[str, ...]
    row_filter: str
    snapshot_id: int | None
    rows: int

    def as_metadata(self) -> dict[str, Any]:
        return {
            "table": self.identifier,
            "snapshot_id": str(self.snapshot_id),
            "columns": list(self.columns),
            "row_filter": self.row_filter,
            "rows_read": self.rows,
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
    snapshot = table.current_snapshot()
    arrow = iceberg.read(identifier, columns=list(physical.values()), row_filter=row_filter)
    frame = (
        pl.from_arrow(arrow).lazy().select([pl.col(p).alias(name) for name, p in physical.items()])
    )
    return ReadResult(
        frame=frame,
        identifier=identifier,
        columns=tuple(physical.values()),
        row_filter=str(row_filter) if row_filter is not None else "none (column projection only)",
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        rows=arrow.num_rows,
    )


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
