"""Reading upstream tables into polars and writing outputs, through :mod:`shared` helpers.

Every read projects the columns listed in :mod:`analytics.sources` and filters rows by a day
window, lazily: polars' own Iceberg reader (``pl.scan_iceberg``, pinned to the snapshot loaded
here) pushes the projection and the window down, pruning partitions and files by Iceberg's
statistics and reading the remaining Parquet files with polars' native reader (Iceberg
semantics: columns matched by field id, delete files applied, schema evolution), so reading
overlaps computing. What was read is returned as metadata so the UI shows it.

What polars does not do, and this module keeps (nothing of it is about reading Iceberg): naming
the columns the analytics code expects after the upstream's names (:mod:`analytics.sources`),
the day window as a predicate of the column's type, the partition-pruning twin of a window on a
timestamp column, the snapshot id for the metadata, and the clear error naming a missing table
or column.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import polars as pl
import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema

from analytics.sources import Upstream
from shared.iceberg import IcebergError, TableWriteResult
from shared.resources import IcebergCatalogResource


@dataclass(frozen=True)
class ReadResult:
    """A lazily usable frame plus what was read, for metadata.

    ``reader`` names the reader (``polars.scan_iceberg``).
    """

    frame: pl.LazyFrame
    identifier: str
    columns: tuple[str, ...]
    row_filter: str
    snapshot_id: int | None
    reader: str = "polars.scan_iceberg"
    #: When the snapshot read was committed (ms since the epoch; None for an empty table).
    snapshot_timestamp_ms: int | None = field(default=None, repr=False)
    known_rows: int | None = field(default=None, repr=False)

    @cached_property
    def rows(self) -> int:
        """Rows the read returns, counted once on demand (polars answers from Iceberg's metadata
        when nothing is filtered, and otherwise reads only the filter's columns)."""
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
            "reader": self.reader,
        }


def day_range_filter(
    column: str,
    start: dt.date | None,
    end: dt.date | None,
    dtype: pl.DataType | None = None,
) -> pl.Expr:
    """``start <= column < end`` (either bound optional) as a polars predicate.

    ``dtype`` is the column's polars type (default: date); for a timestamp column the bounds are
    midnights in the column's time zone (UTC for Iceberg's timestamptz), so the predicate
    compares like with like and polars can push it into the Iceberg scan.
    """

    def literal(day: dt.date) -> pl.Expr:
        if isinstance(dtype, pl.Datetime):
            midnight = dt.datetime.combine(day, dt.time())
            return (
                pl.lit(midnight)
                .dt.cast_time_unit(dtype.time_unit or "us")
                .dt.replace_time_zone(dtype.time_zone)
            )
        return pl.lit(day)

    parts: list[pl.Expr] = []
    if start is not None:
        parts.append(pl.col(column) >= literal(start))
    if end is not None:
        parts.append(pl.col(column) < literal(end))
    if not parts:
        raise ValueError("day_range_filter: give start, end or both")
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


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
    try:
        physical = upstream.resolve([f.name for f in table.schema().fields])
    except KeyError as exc:
        raise IcebergError(exc.args[0]) from None
    snapshot = table.current_snapshot()
    # The table object holds the metadata loaded above, so the scan reads exactly that snapshot
    # even if a writer commits meanwhile. Not passed as snapshot_id: a time-travel read uses the
    # snapshot's own schema, so a column renamed since the last write would go by its old name.
    lazy = pl.scan_iceberg(table)
    columns = tuple(physical.values())
    schema = lazy.collect_schema()
    predicate: pl.Expr | None = None
    if window_column is not None:
        column = physical[window_column]
        predicate = day_range_filter(column, start, end, schema[column])
    if pruning_column is not None and predicate is not None:
        column = physical[pruning_column]
        one_day = dt.timedelta(days=1)
        predicate = predicate & day_range_filter(
            column,
            start - one_day if start else None,
            end + one_day if end else None,
            schema[column],
        )
    lazy = lazy.select(columns)
    if predicate is not None:
        lazy = lazy.filter(predicate)
    frame = lazy.select([pl.col(p).alias(name) for name, p in physical.items()])
    return ReadResult(
        frame=frame,
        identifier=identifier,
        columns=columns,
        row_filter=str(predicate) if predicate is not None else "none (column projection only)",
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        snapshot_timestamp_ms=snapshot.timestamp_ms if snapshot else None,
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


def metadata_max(
    iceberg: IcebergCatalogResource, read: ReadResult, upstream: Upstream, column: str
) -> Any:
    """The largest value of ``upstream``'s ``column`` (an analytics name) in the snapshot ``read``
    read, from the table's manifests: no data file is opened (a max over the read scanned every
    file, and its cost grew with history). Raises :class:`LookupError` when the metadata cannot
    tell (:func:`shared.iceberg.column_max`): the caller then computes it from ``read.frame``.
    """
    from shared.iceberg import column_max

    table = iceberg.load_table(upstream.identifier)
    physical = upstream.resolve([f.name for f in table.schema().fields])[column]
    if read.snapshot_id is None:
        return None
    return column_max(table, physical, snapshot_id=read.snapshot_id)
