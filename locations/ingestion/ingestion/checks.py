"""Data-quality checks on the raw tables, as Dagster asset checks.

The logic is in pure functions over Arrow data (unit-tested directly); the asset checks only
read the table and call them. Seven checks per raw stream (eight for a stream partitioned by
day downstream), named ``raw_<stream>_<check>``:

* ``primary_key_not_null``: no row lacks its primary key.
* ``primary_key_unique``: what "unique" means on RAW data. Raw tables legitimately repeat a
  primary key: users have one row per version (updates), events may be delivered twice
  (at-least-once), and staging deduplicates both. What must never repeat is one raw record:
  ``_airbyte_raw_id`` (Airbyte gives every delivered record its own id) and the stream's
  version key (users: ``(id, updated_at)``: two rows of one user with the same ``updated_at``
  are the same version twice, which staging could not order). Repeated event_ids are reported
  as metadata, not failed.
* ``freshness``: the table's last sync (its last Iceberg commit that added rows: a compaction
  adds none) is recent enough (``RawStream.freshness``).
* ``schema_drift``: columns added by the source (kept: ``shared.iceberg`` evolves the table),
  expected columns missing from the table, columns the source stopped sending (entirely null in
  the latest batch (the latest commit's rows at their newest ``_airbyte_extracted_at``), or
  listed as missing in a landed batch's ``_airbyte_meta``;
  ``shared.iceberg`` keeps the column and writes nulls), and type changes. The check only reads:
  no data is lost whatever it finds.
* ``timestamps_plausible`` (ERROR): no source timestamp before 1970-01-01 or more than a day
  after the check runs. Such values are kept (raw data is never dropped) but they would corrupt
  "latest version" logic downstream (staging keeps the latest ``updated_at``) and cursors.
  Pushed down to Iceberg's per-file bounds: healthy files are not read. Also flagged: values of
  the latest commit more than a year outside the range of the table's earlier data (from the
  manifests' column bounds), such as epoch seconds read as microseconds (January 1970).
* ``null_keys`` (WARN): rows of the latest commit lacking a column staging needs
  (``RawStream.staging_keys``; events: ``event_id``, ``user_id``, ``event_ts``). The contract:
  such rows stay in raw, staging leaves them out (before deduplication), and marts and
  analytics, built on staging, never see them; this check counts them per column, with
  examples, so the rows left out are visible. Not blocking: the other rows are published.
* ``outside_partitions`` (WARN; streams with ``RawStream.event_time_column``): rows whose day is
  not a partition the platform processes: before the first partition
  (``shared.partitions.FIRST_DAY``) or later than the check's time. They stay in raw and never
  reach the daily models; counted with examples over the whole table (pushed down to Iceberg's
  per-file bounds: healthy files are not read).
* ``string_sizes`` (WARN): no string value of the latest commit is over 64 KiB (UTF-8 bytes),
  what engines and BI tools cope with badly (Airbyte's own destinations null such values).
  Each commit is checked when it lands (reading every string of a large table on every run
  would cost more than the sync).

Incremental: the checks run after every sync and read what that sync added (the data files of
the current snapshot), not the whole table, so their cost does not grow with history.
``primary_key_not_null`` and ``schema_drift`` read the latest commit's rows only;
``primary_key_unique`` compares the new rows' keys with the key columns (only those) of every
row, so a new row repeating an old record is still caught (see its docstring).

"The latest commit" is the latest that added rows: a compaction of the raw table
(``shared.compaction``, a ``replace`` snapshot) rewrites files without adding a row, so a check
run right after one reads the same rows and gives the same result as before it (the files the
sync added, which its snapshot still lists; the earlier range as of the snapshot before it).

A check that cannot read its table (catalog down, table not landed yet) fails with a warning
that says why, rather than erroring the run: the sync itself may have succeeded.
"""

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from ingestion.streams import (
    OPTIONAL_AIRBYTE_COLUMNS,
    OPTIONAL_META_COLUMNS,
    STREAMS,
    RawStream,
    airbyte_column_variant,
    key_index_spec,
)
from shared.changes import all_valid, latest_data_snapshot
from shared.partitions import FIRST_DAY
from shared.resources import IcebergCatalogResource

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import pyarrow as pa

# ---- pure checks -----------------------------------------------------------------------------


def null_counts(table: "pa.Table", columns: Sequence[str]) -> dict[str, int]:
    """Nulls per column (a missing column counts as all null)."""
    return {
        c: (table[c].null_count if c in table.column_names else table.num_rows) for c in columns
    }


def duplicate_groups(
    table: "pa.Table", columns: Sequence[str], examples: int = 5
) -> tuple[int, list]:
    """(number of key values held by more than one row, a few of those values)."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return 0, []
    counts = table.select(list(columns)).group_by(list(columns)).aggregate([([], "count_all")])
    dupes = counts.filter(pc.greater(counts["count_all"], 1))
    sample = dupes.slice(0, examples).select(list(columns)).to_pylist()
    return dupes.num_rows, [tuple(str(v) for v in row.values()) for row in sample]


def duplicate_groups_with(
    new: "pa.Table", table: "pa.Table", columns: Sequence[str], examples: int = 5
) -> tuple[int, list]:
    """:func:`duplicate_groups` restricted to the groups that hold a row of ``new``.

    ``table`` holds every row (``new``'s included) but only needs the key ``columns``. Rows of
    ``table`` whose first key column matches none of ``new``'s are dropped before grouping
    (a hash lookup, far cheaper than grouping the whole table): every group with a new row
    survives whole, since all its rows share that first column's value.
    """
    import pyarrow.compute as pc

    if new.num_rows == 0 or table.num_rows == 0:
        return 0, []
    first = columns[0]
    values = pc.unique(new[first]).cast(table[first].type)
    candidates = table.filter(pc.is_in(table[first], value_set=values))
    return duplicate_groups(candidates, columns, examples)


def repeats_with_earlier(
    new: "pa.Table", column: str, earlier: "pa.Array", examples: int = 5
) -> tuple[int, list]:
    """:func:`duplicate_groups_with` for one column when the earlier rows are known only by
    which of ``new``'s values they hold (``earlier``): the non-null values of ``new[column]``
    held by two new rows, or by a new row and an earlier one."""
    import pyarrow.compute as pc

    rows = new.select([column]).filter(pc.is_valid(new[column]))
    if rows.num_rows == 0:
        return 0, []
    counts = rows.group_by([column]).aggregate([([], "count_all")])
    seen = pc.is_in(counts[column], value_set=earlier.cast(counts[column].type))
    repeated = counts.filter(pc.or_(pc.greater(counts["count_all"], 1), seen))
    sample = repeated[column].slice(0, examples).to_pylist()
    return repeated.num_rows, [(str(v),) for v in sample]


@dataclass(frozen=True)
class Freshness:
    passed: bool
    last_commit: dt.datetime | None
    age: dt.timedelta | None


def freshness(
    last_commit: dt.datetime | None, now: dt.datetime, max_age: dt.timedelta
) -> Freshness:
    """Fresh when the last commit is at most ``max_age`` old (never committed: stale)."""
    if last_commit is None:
        return Freshness(False, None, None)
    age = now - last_commit
    return Freshness(age <= max_age, last_commit, age)


@dataclass(frozen=True)
class SchemaDrift:
    """How a raw table differs from the schema declared in ``ingestion.streams``."""

    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    type_changes: dict[str, str] = field(default_factory=dict)

    @property
    def dropped(self) -> list[str]:
        """Columns the source no longer sends: absent from the table, or null in its latest
        batch although required."""
        return sorted({*self.missing, *self.stopped})

    @property
    def has_drift(self) -> bool:
        return bool(self.added or self.dropped or self.type_changes)


def _normalise_type(t: "pa.DataType") -> str:
    import pyarrow as pa

    if pa.types.is_large_string(t):
        t = pa.string()
    if pa.types.is_large_binary(t):
        t = pa.binary()
    if pa.types.is_timestamp(t):
        tz = "UTC" if t.tz in ("UTC", "+00:00", "Etc/UTC") else t.tz
        return f"timestamp[{t.unit}, tz={tz}]"
    return str(t)


def schema_drift(
    actual: "pa.Schema",
    expected: "pa.Schema",
    latest_batch: "pa.Table | None" = None,
    required: Sequence[str] = (),
) -> SchemaDrift:
    """Compare a table's schema (and its latest batch) with the expected schema."""
    expected_names = set(expected.names)
    # Columns some writers add and others do not (the delivery order): never drift.
    actual_names = set(actual.names) - {name for name, _ in OPTIONAL_META_COLUMNS}
    added = sorted(actual_names - expected_names)
    missing = sorted(expected_names - actual_names)
    # Airbyte v2 variants are not drift (ingestion.streams): a struct _airbyte_meta, and no
    # _airbyte_generation_id from an older destination.
    missing = [c for c in missing if c not in OPTIONAL_AIRBYTE_COLUMNS]
    type_changes = {
        f.name: f"{_normalise_type(expected.field(f.name).type)} -> {_normalise_type(f.type)}"
        for f in actual
        if f.name in expected_names
        and _normalise_type(f.type) != _normalise_type(expected.field(f.name).type)
        and not airbyte_column_variant(f.name, f.type)
    }
    stopped: list[str] = []
    if latest_batch is not None and latest_batch.num_rows:
        stopped = sorted(
            c
            for c in required
            if c in latest_batch.column_names
            and latest_batch[c].null_count == latest_batch.num_rows
        )
    return SchemaDrift(added, missing, stopped, type_changes)


#: Source timestamps before this are implausible (an epoch of 0 or less, a default date).
EARLIEST_PLAUSIBLE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Source timestamps later than the check's time by more than this are implausible.
FUTURE_TOLERANCE = dt.timedelta(days=1)
#: String values longer than this many UTF-8 bytes are flagged.
MAX_STRING_BYTES = 64 * 1024


def timestamp_columns(stream: RawStream) -> list[str]:
    """The stream's source timestamp columns (not Airbyte's ``_airbyte_extracted_at``)."""
    # From the declared type names, not pyarrow: this runs when the definitions load.
    return [name for name, type_name in stream.source_columns if type_name.startswith("timestamp")]


def implausible_timestamps(
    values: "pa.ChunkedArray | pa.Array", earliest: dt.datetime, latest: dt.datetime
) -> tuple[int, int, list[str]]:
    """(values before ``earliest``, values after ``latest``, a few examples)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(values) == 0:
        return 0, 0, []
    early = pc.less(values, pa.scalar(earliest, values.type))
    late = pc.greater(values, pa.scalar(latest, values.type))
    bad = pc.filter(values, pc.or_(early, late))
    examples = [v.isoformat() for v in bad.slice(0, 5).to_pylist() if v is not None]
    return int(pc.sum(early).as_py() or 0), int(pc.sum(late).as_py() or 0), examples


#: A timestamp further than this outside the range of its column's earlier data is implausible.
RANGE_TOLERANCE = dt.timedelta(days=366)


def outside_range(
    values: "pa.ChunkedArray | pa.Array",
    low: dt.datetime,
    high: dt.datetime,
    tolerance: dt.timedelta = RANGE_TOLERANCE,
) -> tuple[int, list[str]]:
    """(values more than ``tolerance`` before ``low`` or after ``high``, a few examples)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(values) == 0:
        return 0, []
    far = pc.or_(
        pc.less(values, pa.scalar(low - tolerance, values.type)),
        pc.greater(values, pa.scalar(high + tolerance, values.type)),
    )
    bad = pc.filter(values, far)
    return len(bad), [v.isoformat() for v in bad.slice(0, 5).to_pylist() if v is not None]


def earlier_range(table: Any, column: str) -> tuple[dt.datetime, dt.datetime] | None:
    """The range of a timestamp column over the data of the table before its latest sync (the
    data files of the snapshot that sync committed onto), from the manifests' per-file bounds
    (no data file read); None without earlier data.

    Not the current snapshot's files minus the latest commit's: after a compaction
    (``shared.compaction``) the latest commit is the compaction, whose files hold the latest
    sync's rows together with earlier ones."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.manifest import DataFileContent

    latest = latest_data_snapshot(table)
    parent = None
    if latest is not None and latest.parent_snapshot_id is not None:
        parent = table.snapshot_by_id(latest.parent_snapshot_id)
    if parent is None:
        return None  # the first commit (or its parent expired): no earlier data to compare
    field = table.schema().find_field(column)
    lows, highs = [], []
    for manifest in parent.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            data = entry.data_file
            if data.content != DataFileContent.DATA:
                continue
            if data.lower_bounds and field.field_id in data.lower_bounds:
                lows.append(from_bytes(field.field_type, data.lower_bounds[field.field_id]))
            if data.upper_bounds and field.field_id in data.upper_bounds:
                highs.append(from_bytes(field.field_type, data.upper_bounds[field.field_id]))
    if not lows or not highs:
        return None
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + dt.timedelta(microseconds=min(lows)), epoch + dt.timedelta(
        microseconds=max(highs)
    )


def oversized_strings(
    table: "pa.Table", limit: int = MAX_STRING_BYTES
) -> dict[str, tuple[int, int]]:
    """``{column: (values over limit bytes, longest in bytes)}`` for string columns that have
    any value over ``limit``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, tuple[int, int]] = {}
    for name in table.column_names:
        column = table[name]
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        if len(column) == 0:
            continue
        lengths = pc.binary_length(column)
        over = int(pc.sum(pc.greater(lengths, limit)).as_py() or 0)
        if over:
            out[name] = (over, int(pc.max(lengths).as_py()))
    return out


def landed_missing_columns(meta_values: Sequence[str | None]) -> list[str]:
    """Columns that landed batches report missing in their ``_airbyte_meta`` (the loader of
    ``ingestion.landing`` lists them there); other meta values are ignored."""
    missing: set[str] = set()
    for value in meta_values:
        if not value or '"missing_columns"' not in value:
            continue
        try:
            meta = json.loads(value)
        except ValueError:
            continue
        if isinstance(meta, dict) and isinstance(meta.get("missing_columns"), list):
            missing.update(str(c) for c in meta["missing_columns"])
    return sorted(missing)


#: Examples given by a check that counts rows.
EXAMPLES = 5


def null_key_rows(
    table: "pa.Table", columns: Sequence[str], examples: int = EXAMPLES
) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
    """(rows with a null in any of ``columns``, nulls per column, a few such rows as dicts of
    every column of ``table``; timestamps as ISO text). A missing column counts as all null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    present = [c for c in columns if c in table.column_names]
    per_column = null_counts(table, columns)
    if len(present) < len(columns):
        return table.num_rows, per_column, _examples(table.slice(0, examples))
    if table.num_rows == 0 or not present:
        return 0, per_column, []
    mask = pa.array([False] * table.num_rows)
    for column in present:
        mask = pc.or_(mask, pc.is_null(table[column]))
    bad = table.filter(mask)
    return bad.num_rows, per_column, _examples(bad.slice(0, examples))


def rows_outside_days(
    table: "pa.Table",
    column: str,
    first: dt.datetime,
    last: dt.datetime,
    examples: int = EXAMPLES,
) -> tuple[int, int, list[dict[str, Any]]]:
    """(rows with ``column`` before ``first``, rows after ``last``, a few of them as dicts)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return 0, 0, []
    values = table[column]
    early = pc.fill_null(pc.less(values, pa.scalar(first, values.type)), False)
    late = pc.fill_null(pc.greater(values, pa.scalar(last, values.type)), False)
    bad = table.filter(pc.or_(early, late))
    return (
        int(pc.sum(early).as_py() or 0),
        int(pc.sum(late).as_py() or 0),
        _examples(bad.slice(0, examples)),
    )


def _examples(table: "pa.Table") -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (timestamps and dates as ISO text)."""
    return [
        {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in row.items()}
        for row in table.to_pylist()
    ]


def partition_start() -> dt.datetime:
    """The start of the first daily partition (UTC): ``shared.partitions.FIRST_DAY``, the one
    setting every daily asset's partitions are built from."""
    return dt.datetime.combine(FIRST_DAY, dt.time(), tzinfo=dt.UTC)


# ---- asset checks ----------------------------------------------------------------------------


def _unreadable(exc: Exception, identifier: str) -> AssetCheckResult:
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.WARN,
        description=f"Could not read Iceberg table {identifier}: {exc}",
        metadata={"error": str(exc)[:1000]},
    )


def unique_keys(stream: RawStream) -> list[tuple[str, ...]]:
    """The column sets that must be unique in the raw table (see the module docstring)."""
    keys: list[tuple[str, ...]] = [("_airbyte_raw_id",)]
    if stream.unique_version_key != ("_airbyte_raw_id",):
        keys.append(stream.unique_version_key)
    return keys


def check_primary_key_not_null(stream: RawStream, iceberg: IcebergCatalogResource):
    """No row of the latest commit lacks its primary key.

    Only the rows the current snapshot added are read (``rows`` in the metadata): rows of
    earlier commits were checked when they landed, and rows are never updated in place, so
    re-reading the whole table on every sync (its cost growing with history) finds nothing new.
    """
    table = iceberg.load_table(stream.identifier)
    rows = latest_commit_rows(table, stream.primary_key)
    nulls = null_counts(rows, stream.primary_key)
    return AssetCheckResult(
        passed=not any(nulls.values()),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows": MetadataValue.int(rows.num_rows),
            "scope": "rows added by the latest commit",
            **{f"null_{c}": MetadataValue.int(n) for c, n in nulls.items()},
        },
    )


def check_primary_key_unique(stream: RawStream, iceberg: IcebergCatalogResource):
    """No raw record is stored twice, including a NEW row repeating an OLD one.

    Incremental: the key values of the rows the latest commit added are compared with the key
    columns of the whole table (a projection of one or two columns, no other column is read),
    and only the rows sharing a new key's first column are grouped. Every duplicate that
    involves a new row is found (a new row repeating an old one, or two new rows); duplicates
    among old rows alone were reported when the later of them landed. When the latest commit
    rewrote the whole table (a full refresh), its rows are the table and nothing else is read.
    """
    keys = unique_keys(stream)
    columns = sorted({c for k in (*keys, stream.primary_key) for c in k})
    handle = iceberg.load_table(stream.identifier)
    new = latest_commit_rows(handle, columns)
    snapshot = handle.current_snapshot()
    total = _total_records(snapshot)
    if new.num_rows == 0:
        table = new  # nothing landed: nothing new can repeat anything
    elif total is not None and total == new.num_rows:
        table = new  # the latest commit holds every row of the table (full refresh)
    elif (indexed := _unique_by_key_index(stream, iceberg, handle, new)) is not None:
        table = None  # answered from the key index: no other row is read
    else:
        # The key columns of every row, at the same snapshot as ``new``.
        table = handle.scan(selected_fields=tuple(columns), snapshot_id=snapshot.snapshot_id)
        table = table.to_arrow()
    if table is None:
        scope, duplicates, n_pk = indexed
        rows_read = new.num_rows
    else:
        scope = "rows added by the latest commit, against every row's key"
        duplicates = {key: duplicate_groups_with(new, table, key) for key in keys}
        # A null key is no key (``null_keys`` counts those rows): not counted as a repeat.
        with_key = new.filter(all_valid(new, stream.primary_key)) if new.num_rows else new
        n_pk, _ = duplicate_groups_with(with_key, table, stream.primary_key)
        rows_read = table.num_rows
    metadata: dict[str, Any] = {
        "rows": MetadataValue.int(new.num_rows),
        "rows_in_table": MetadataValue.int(total if total is not None else rows_read),
        "scope": scope,
    }
    passed = True
    for key, (n, sample) in duplicates.items():
        name = "_".join(k.lstrip("_") for k in key)
        metadata[f"duplicate_{name}"] = MetadataValue.int(n)
        if n:
            passed = False
            metadata[f"duplicate_{name}_examples"] = MetadataValue.json(sample)
    metadata["repeated_primary_keys_info"] = MetadataValue.int(n_pk)
    return AssetCheckResult(passed=passed, severity=AssetCheckSeverity.ERROR, metadata=metadata)


def _unique_by_key_index(
    stream: RawStream,
    iceberg: IcebergCatalogResource,
    handle: Any,
    new: "pa.Table",
) -> tuple[str, dict[tuple[str, ...], tuple[int, list]], int] | None:
    """The findings of :func:`check_primary_key_unique` (its scope, ``(n, sample)`` of
    :func:`duplicate_groups_with` per unique key, and the repeated primary keys), answered from
    the stream's hashed key index (``shared.key_index``) instead of the key columns of every
    row; None when they cannot be
    (no index for the stream, a latest commit that deleted rows, a null record id, an index that
    cannot answer): the caller reads every row.

    The new rows are compared with the table as of the snapshot before the latest commit. A
    repeated ``_airbyte_raw_id`` fails the check only once CONFIRMED on raw: the index's hash
    matches point to the raw commits that hold them, whose files are read and the ids compared
    (a hash collision can never fail it). Repeated primary keys are information: counted from
    hash matches (a collision, about one in 2^64, could add one)."""
    from shared import key_index

    spec = key_index_spec(stream)
    snapshot = latest_data_snapshot(handle)  # the commit whose rows ``new`` are
    raw_id = spec.raw_id_column if spec is not None else None
    if (
        spec is None
        or unique_keys(stream) != [(raw_id,)]
        or snapshot.parent_snapshot_id is None
        or not key_index.append_only(snapshot)
        or new[raw_id].null_count
    ):
        return None
    catalog = iceberg.catalog()
    before = snapshot.parent_snapshot_id
    # One plan and one read of the index for both look-ups.
    earlier = key_index.repeats(catalog, handle, spec, before, new[raw_id], new[spec.key_column])
    if earlier is None:
        return None
    scope = (
        "rows added by the latest commit, against every row's key (hashed key index; "
        "repeated record ids confirmed on raw)"
    )
    n_pk, _ = repeats_with_earlier(new, spec.key_column, earlier.keys)
    return scope, {(raw_id,): repeats_with_earlier(new, raw_id, earlier.raw_ids)}, n_pk


def check_freshness(stream: RawStream, iceberg: IcebergCatalogResource):
    # The last sync, not the last commit: a compaction brings no new data.
    snapshot = latest_data_snapshot(iceberg.load_table(stream.identifier))
    last = dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=dt.UTC) if snapshot else None
    result = freshness(last, dt.datetime.now(dt.UTC), stream.freshness)
    metadata: dict[str, Any] = {"max_age_hours": stream.freshness.total_seconds() / 3600}
    if result.last_commit is not None and result.age is not None:
        metadata["last_commit"] = result.last_commit.isoformat()
        metadata["age_hours"] = round(result.age.total_seconds() / 3600, 3)
    return AssetCheckResult(
        passed=result.passed, severity=AssetCheckSeverity.WARN, metadata=metadata
    )


def check_schema_drift(stream: RawStream, iceberg: IcebergCatalogResource):
    """Columns added, dropped (missing, or stopped: entirely null in the latest batch although
    required, or reported missing by a landed file) and type changes.

    The latest batch is the rows of the latest commit at its newest ``_airbyte_extracted_at``
    (one sync), read from the files that commit added: not the whole table's
    ``_airbyte_extracted_at`` column, whose reading grew with history.
    """
    import pyarrow.compute as pc

    table = iceberg.load_table(stream.identifier)
    actual = table.schema().as_arrow()
    latest = None
    if "_airbyte_extracted_at" in actual.names and table.current_snapshot():
        present = [c for c in stream.required_fields if c in actual.names]
        present = [*present, "_airbyte_meta"] if "_airbyte_meta" in actual.names else present
        rows = latest_commit_rows(table, [*present, "_airbyte_extracted_at"])
        newest = pc.max(rows["_airbyte_extracted_at"]) if rows.num_rows else None
        if newest is not None and newest.is_valid:
            latest = rows.filter(pc.equal(rows["_airbyte_extracted_at"], newest)).select(present)
    result = schema_drift(actual, stream.schema, latest, stream.required_fields)
    if latest is not None and _is_text(latest.schema, "_airbyte_meta"):
        # A landed file says which declared columns it lacked, required or not.
        reported = landed_missing_columns(pc.unique(latest["_airbyte_meta"]).to_pylist())
        declared = set(stream.schema.names)
        stopped = sorted({*result.stopped, *(c for c in reported if c in declared)})
        result = dataclasses.replace(result, stopped=stopped)
    return AssetCheckResult(
        passed=not result.has_drift,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"added: {result.added or 'none'}; dropped: {result.dropped or 'none'}; "
            f"type changes: {result.type_changes or 'none'}"
        ),
        metadata={
            "added_columns": MetadataValue.json(result.added),
            "dropped_columns": MetadataValue.json(result.dropped),
            "type_changes": MetadataValue.json(result.type_changes),
            "columns": MetadataValue.json(actual.names),
        },
    )


def _is_text(schema: "pa.Schema", name: str) -> bool:
    """Whether ``schema`` has column ``name`` as text (``_airbyte_meta`` may be a struct)."""
    import pyarrow as pa

    if name not in schema.names:
        return False
    kind = schema.field(name).type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def check_timestamps_plausible(stream: RawStream, iceberg: IcebergCatalogResource):
    from pyiceberg.expressions import GreaterThan, LessThan, Or

    now = dt.datetime.now(dt.UTC)
    latest = now + FUTURE_TOLERANCE
    table = iceberg.load_table(stream.identifier)
    present = set(table.schema().as_arrow().names)
    metadata: dict[str, Any] = {
        "earliest_allowed": EARLIEST_PLAUSIBLE.isoformat(),
        "latest_allowed": latest.isoformat(timespec="seconds"),
    }
    failing = []
    for column in timestamp_columns(stream):
        if column not in present:
            continue
        # Only rows outside the range are read: Iceberg's per-file min/max prune the rest.
        rows = iceberg.read(
            stream.identifier,
            columns=[column],
            row_filter=Or(
                LessThan(column, EARLIEST_PLAUSIBLE.isoformat()),
                GreaterThan(column, latest.isoformat()),
            ),
        )
        early, late, examples = implausible_timestamps(rows[column], EARLIEST_PLAUSIBLE, latest)
        metadata[f"before_1970_{column}"] = MetadataValue.int(early)
        metadata[f"future_{column}"] = MetadataValue.int(late)
        reference = earlier_range(table, column)
        far = 0
        if reference is not None:
            far, far_examples = outside_range(
                latest_commit_rows(table, [column])[column], *reference
            )
            examples = examples + [e for e in far_examples if e not in examples]
            metadata[f"far_outside_earlier_range_{column}"] = MetadataValue.int(far)
        if early or late or far:
            failing.append(column)
            metadata[f"examples_{column}"] = MetadataValue.json(examples[:5])
    return AssetCheckResult(
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"implausible timestamps in {', '.join(failing)} (kept in the table)"
            if failing
            else None
        ),
        metadata=metadata,
    )


def _total_records(snapshot: Any) -> int | None:
    """The table's row count after ``snapshot``, from its summary (None when not recorded)."""
    if snapshot is None or snapshot.summary is None:
        return None
    value = snapshot.summary["total-records"]
    return int(value) if value is not None else None


def added_data_files(table: Any) -> list:
    """The data files the table's latest sync added (``shared.changes.latest_data_snapshot``:
    the compactions after it skipped; none without one), as that commit wrote them (a later
    compaction rewrote their rows, but the snapshot still lists them); read from the manifests that snapshot wrote only, so the cost follows
    the commit, not the history."""
    from shared.changes import added_data_files as added_by

    snapshot = latest_data_snapshot(table)
    return [] if snapshot is None else added_by(table, snapshot)


def latest_commit_rows(table: Any, columns: Sequence[str]) -> "pa.Table":
    """The rows the table's latest sync added (its new data files), ``columns`` only.

    Read by ``shared.changes.read_files_table`` (columns matched by field id; a column a file
    lacks comes back as nulls, typed as in the table). Columns the table does not have are left
    out."""
    from shared.changes import read_files_table

    names = table.schema().column_names
    present = [c for c in columns if c in names]
    return read_files_table(table, added_data_files(table), present)


def check_null_keys(stream: RawStream, iceberg: IcebergCatalogResource):
    """Rows of the latest commit that staging leaves out (a null in ``stream.staging_keys``),
    counted per column, with examples (their ``_airbyte_raw_id`` and keys)."""
    table = iceberg.load_table(stream.identifier)
    columns = list(dict.fromkeys([*stream.primary_key, *stream.staging_keys, "_airbyte_raw_id"]))
    rows = latest_commit_rows(table, columns)
    total, per_column, examples = null_key_rows(rows, stream.staging_keys)
    keys = ", ".join(stream.staging_keys)
    return AssetCheckResult(
        passed=total == 0,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{total} row(s) of {stream.identifier} with a null {keys}: kept in raw, left out "
            "of staging (and so of marts and analytics)"
            if total
            else None
        ),
        metadata={
            "rows": MetadataValue.int(rows.num_rows),
            "scope": "rows added by the latest commit",
            "rows_left_out_of_staging": MetadataValue.int(total),
            **{f"null_{c}": MetadataValue.int(n) for c, n in per_column.items()},
            **({"examples": MetadataValue.json(examples)} if examples else {}),
        },
    )


def check_outside_partitions(stream: RawStream, iceberg: IcebergCatalogResource):
    """Rows whose ``event_time_column`` lies before the first daily partition or after the
    check's time: they never reach the daily models. Whole table, pushed down to file bounds."""
    from pyiceberg.expressions import GreaterThan, LessThan, Or

    column = stream.event_time_column
    if column is None:
        return AssetCheckResult(passed=True, metadata={"partitioned": False})
    first, now = partition_start(), dt.datetime.now(dt.UTC)
    metadata: dict[str, Any] = {
        "event_time_column": column,
        "first_partition_start": first.isoformat(),
        "latest_allowed": now.isoformat(timespec="seconds"),
    }
    present = set(iceberg.load_table(stream.identifier).schema().as_arrow().names)
    if column not in present:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"{stream.identifier} has no column {column}",
            metadata=metadata,
        )
    columns = [c for c in (*stream.primary_key, column, "_airbyte_raw_id") if c in present]
    rows = iceberg.read(
        stream.identifier,
        columns=columns,
        row_filter=Or(LessThan(column, first.isoformat()), GreaterThan(column, now.isoformat())),
    )
    before, after, examples = rows_outside_days(rows, column, first, now)
    metadata["before_first_partition"] = MetadataValue.int(before)
    metadata["in_the_future"] = MetadataValue.int(after)
    if examples:
        metadata["examples"] = MetadataValue.json(examples)
    return AssetCheckResult(
        passed=not (before or after),
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{before} row(s) of {stream.identifier} before the first partition "
            f"({FIRST_DAY.isoformat()}) and {after} in the future: kept in raw, never processed"
            if before or after
            else None
        ),
        metadata=metadata,
    )


def check_string_sizes(stream: RawStream, iceberg: IcebergCatalogResource):
    import pyarrow as pa

    table = iceberg.load_table(stream.identifier)
    schema = table.schema().as_arrow()
    columns = [
        f.name
        for f in schema
        if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
        and not f.name.startswith("_airbyte_")
    ]
    rows = latest_commit_rows(table, columns)
    found = oversized_strings(rows)
    metadata: dict[str, Any] = {
        "max_bytes": MAX_STRING_BYTES,
        "rows_checked": MetadataValue.int(rows.num_rows),
        "oversized_columns": MetadataValue.json(sorted(found)),
    }
    for column, (count, longest) in found.items():
        metadata[f"oversized_{column}"] = MetadataValue.int(count)
        metadata[f"longest_bytes_{column}"] = MetadataValue.int(longest)
    return AssetCheckResult(
        passed=not found,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"values over {MAX_STRING_BYTES} bytes in {', '.join(sorted(found))} (kept)"
            if found
            else None
        ),
        metadata=metadata,
    )


#: Check name suffix -> (function, description template).
CHECKS: dict[str, tuple[Callable[..., AssetCheckResult], str]] = {
    "primary_key_not_null": (
        check_primary_key_not_null,
        "Every row of {table} has its primary key ({pk}).",
    ),
    "primary_key_unique": (
        check_primary_key_unique,
        "No raw record of {table} is stored twice: unique {unique}. A repeated {pk} alone is "
        "legitimate on raw data (versions, at-least-once delivery) and only reported.",
    ),
    "freshness": (
        check_freshness,
        "{table} was committed to within the last {hours:g} hours.",
    ),
    "schema_drift": (
        check_schema_drift,
        "{table} has exactly the columns declared in ingestion.streams; reports columns the "
        "source added or dropped (all data is kept).",
    ),
    "timestamps_plausible": (
        check_timestamps_plausible,
        "No source timestamp of {table} ({timestamps}) is before 1970, more than a day in "
        "the future, or (latest commit) a year outside the earlier data's range (such rows are "
        "kept and reported).",
    ),
    "string_sizes": (
        check_string_sizes,
        "No string value in {table}'s latest commit is over 64 KiB (such values are kept and "
        "reported).",
    ),
    "null_keys": (
        check_null_keys,
        "Counts, with examples, the rows of {table}'s latest commit with a null {keys}: they "
        "stay in raw and staging leaves them out (the other rows are published).",
    ),
    "outside_partitions": (
        check_outside_partitions,
        "Counts, with examples, the rows of {table} whose {event_time_column} is before the first "
        "daily partition ({first_day}) or in the future: they stay in raw and no daily run "
        "processes them.",
    ),
}


def checks_for(stream: RawStream) -> list[str]:
    """The check suffixes that apply to ``stream`` (``outside_partitions`` needs a partition
    column)."""
    return [s for s in CHECKS if s != "outside_partitions" or stream.event_time_column]


def check_name(stream: RawStream, suffix: str) -> str:
    return f"raw_{stream.name}_{suffix}"


def run_check(stream: RawStream, suffix: str, iceberg: IcebergCatalogResource) -> AssetCheckResult:
    """Evaluate one check; a table that cannot be read gives a WARN failure saying why."""
    fn, _ = CHECKS[suffix]
    try:
        result = fn(stream, iceberg)
    except Exception as exc:  # catalog down, table missing, settings incomplete
        result = _unreadable(exc, stream.identifier)
    return AssetCheckResult(
        asset_key=stream.key,
        check_name=check_name(stream, suffix),
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
    )


def build_checks(stream: RawStream) -> AssetChecksDefinition:
    """The raw-table checks of ``stream``, as one multi-check: one step (one process under
    the multiprocess executor) per table instead of one per check (see ``CHECKS``)."""
    fmt = {
        "table": stream.identifier,
        "pk": ", ".join(stream.primary_key),
        "unique": " and ".join(f"({', '.join(k)})" for k in unique_keys(stream)),
        "hours": stream.freshness.total_seconds() / 3600,
        "timestamps": ", ".join(timestamp_columns(stream)),
        "keys": ", ".join(stream.staging_keys),
        "event_time_column": stream.event_time_column,
        "first_day": FIRST_DAY.isoformat(),
    }
    specs = [
        AssetCheckSpec(
            name=check_name(stream, suffix), asset=stream.key, description=template.format(**fmt)
        )  # fmt: skip
        for suffix, (_, template) in CHECKS.items()
        if suffix in checks_for(stream)
    ]

    @multi_asset_check(specs=specs, name=f"raw_{stream.name}_checks", can_subset=True)
    def raw_checks(context: AssetCheckExecutionContext, iceberg: IcebergCatalogResource):
        """Data-quality checks of a raw table (primary key, uniqueness, freshness, drift,
        plausible timestamps, string sizes, rows staging leaves out, rows outside the days)."""
        selected = {key.name for key in context.selected_asset_check_keys}
        for suffix in checks_for(stream):
            if check_name(stream, suffix) in selected:
                yield run_check(stream, suffix, iceberg)

    return raw_checks


RAW_CHECKS: list[AssetChecksDefinition] = [build_checks(s) for s in STREAMS]
