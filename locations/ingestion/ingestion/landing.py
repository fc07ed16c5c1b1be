"""The LANDING-BATCH LOADER: the local stand-in for Airbyte's file / S3 source connector.

In production, files dropped under ``landing/`` on Garage are read by an Airbyte source
connector. Locally there is no Airbyte, so when an ingestion run carries a landing batch (the
``ingestion/landing_batch`` tag the landing sensor sets), the local stand-in loads that batch's
files into the raw tables with this module instead of generating data.

Landing format (see the README): ``landing/<batch>/<stream>[.<anything>].<jsonl|csv|parquet>``;
the stream is the file name up to its first dot. ``jsonl``: one JSON object per line (UTF-8);
``csv``: a header row, UTF-8, empty cell = null; ``parquet``: any Arrow-readable types.

What happens to bad input (every rule names the table, the column and the file):

* the whole batch is validated before anything is written: one bad file rejects the batch and
  no table changes (:class:`LandingRejected`); the caller then moves the batch to
  ``landing/_rejected/<batch>/`` with an ``_error.txt``: nothing is ever deleted;
* rejected: a value that cannot be cast to its declared column type (with an example value and
  its line), bytes that are not UTF-8 (Iceberg strings are UTF-8; replacing them would alter raw
  data silently), unparseable lines, reserved ``_airbyte_*`` columns, unknown streams/formats;
* accepted and flagged by a named check: null or duplicate keys, added columns (kept as strings
  for jsonl/csv, typed for parquet), dropped columns (nulls, and listed in ``_airbyte_meta``),
  timestamps before 1970 or in the future, oversized strings;
* empty files: accepted as a no-op and reported in the materialization metadata.

Loading is idempotent: ``_airbyte_raw_id`` is derived from (batch, file, row), so a re-executed
run sees its rows already in the table and skips them instead of appending them twice.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ingestion.streams import STREAMS_BY_NAME, RawStream

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

    from shared import iceberg

#: Run tag naming the landing batch a run loads (set by ``ingestion.jobs.landing_sensor``).
LANDING_BATCH_TAG = "ingestion/landing_batch"
#: Top-level folder (under ``landing/``) of rejected batches; the sensor ignores ``_`` names.
REJECTED_DIR = "_rejected"
#: Written beside a rejected batch's files: why it was rejected.
ERROR_FILE = "_error.txt"
FORMATS = ("jsonl", "ndjson", "json", "csv", "parquet")
#: Every ``_airbyte_meta`` value of a landed row starts with this (the stand-in's generated rows
#: start with ``{"sync_id"``): lets the stand-in's cursor ignore landed rows cheaply.
LANDING_META_PREFIX = '{"landing_batch":'
#: Namespace of the deterministic ``_airbyte_raw_id`` of landed rows.
RAW_ID_NAMESPACE = uuid.UUID("5a0c2a57-6d1e-4c53-9a8e-6c2b1f0d4e11")
#: Examples quoted in an error are cut to this many characters.
EXAMPLE_CHARS = 80


class LandingRejected(ValueError):
    """A landing batch that cannot be loaded; the message names table, column, file and value."""

    def __init__(self, message: str, *, table: str | None = None, column: str | None = None,
                 file: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.table = table
        self.column = column
        self.file = file


@dataclass(frozen=True)
class LandingFile:
    """One file of a batch: its path relative to ``landing/``, stream and format."""

    relative: str
    stream: RawStream
    fmt: str


@dataclass
class ParsedFile:
    """A landing file read and validated against its stream's schema."""

    file: LandingFile
    #: Declared source columns (typed, nulls where the file lacks them), then added columns.
    data: pa.Table
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.data.num_rows


def _example(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "..."


# ---- batch layout ----------------------------------------------------------------------------


def classify(relative: str) -> LandingFile:
    """The stream and format of a landing file from its name (``<stream>[.x].<ext>``)."""
    name = relative.rsplit("/", 1)[-1]
    stem, _, ext = name.partition(".")
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in FORMATS:
        raise LandingRejected(
            f"landing file {relative}: unknown format {ext or '(no extension)'!r}; name files "
            f"<stream>.<{'|'.join(FORMATS)}>",
            file=relative,
        )
    stream = STREAMS_BY_NAME.get(stem)
    if stream is None:
        raise LandingRejected(
            f"landing file {relative}: no raw stream named {stem!r} (the file name up to its "
            f"first dot); known streams: {', '.join(sorted(STREAMS_BY_NAME))}",
            file=relative,
        )
    return LandingFile(relative, stream, ext)


def is_marker(relative: str) -> bool:
    """Files named ``_*`` (``_SUCCESS`` of Spark and Hadoop writers, ``_error.txt``) are
    markers, not data: never loaded (and not a reason to reject the batch)."""
    return relative.rsplit("/", 1)[-1].startswith("_")


def plan_batch(files: Iterable[str]) -> dict[str, list[LandingFile]]:
    """``{stream name: [files]}`` of a batch (``files`` relative to ``landing/``); any file
    that does not name a stream and format rejects the whole batch (markers, ``_*``, are
    skipped)."""
    plan: dict[str, list[LandingFile]] = {}
    for relative in sorted(files):
        if is_marker(relative):
            continue
        f = classify(relative)
        plan.setdefault(f.stream.name, []).append(f)
    return plan


def streams_named_by(files: Iterable[str]) -> list[str]:
    """The streams a batch's file names refer to (unknown names are left out, not rejected:
    the sensor uses this only to select assets; the loader rejects them)."""
    names = set()
    for relative in files:
        if is_marker(relative):
            continue
        try:
            names.add(classify(relative).stream.name)
        except LandingRejected:
            continue
    return sorted(names)


# ---- value conversion (jsonl and csv) --------------------------------------------------------

_INT = re.compile(r"[+-]?\d+")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _Bad(Exception):
    """A value its column cannot hold (internal; turned into a LandingRejected)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _to_int(v: Any) -> int | None:
    if isinstance(v, bool):
        raise _Bad("a boolean")
    if isinstance(v, int):
        out = v
    elif isinstance(v, float):
        if not v.is_integer():
            raise _Bad("not a whole number")
        out = int(v)
    elif isinstance(v, str) and _INT.fullmatch(v.strip()):
        out = int(v.strip())
    else:
        raise _Bad("not a whole number")
    if not INT64_MIN <= out <= INT64_MAX:
        raise _Bad("out of the 64-bit integer range")
    return out


def _to_float(v: Any) -> float | None:
    if isinstance(v, bool):
        raise _Bad("a boolean")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise _Bad("not a number") from None
    raise _Bad("not a number")


def _to_string(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool | int | float):
        return json.dumps(v)  # a scalar's exact JSON text: nothing lost
    raise _Bad(f"a JSON {'object' if isinstance(v, dict) else 'array'}, not a string")


def _to_timestamp(v: Any) -> dt.datetime | None:
    if not isinstance(v, str):
        raise _Bad("not an ISO-8601 timestamp string")
    try:
        ts = dt.datetime.fromisoformat(v.strip())
    except ValueError:
        raise _Bad("not an ISO-8601 timestamp") from None
    # A timestamp without a zone is read as UTC, as Airbyte does for timestamp_with_timezone.
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def converter(t: pa.DataType) -> Callable[[Any], Any]:
    """The function casting one JSON/CSV value to Arrow type ``t`` (raises on a bad value)."""
    import pyarrow as pa

    if pa.types.is_integer(t):
        return _to_int
    if pa.types.is_floating(t):
        return _to_float
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _to_string
    if pa.types.is_timestamp(t):
        return _to_timestamp
    raise NotImplementedError(f"the landing loader cannot convert to {t}")


def _column(stream: RawStream, f: pa.Field, values: Sequence[Any], relative: str,
            rows: Sequence[int], row_label: str) -> pa.Array:  # fmt: skip
    import pyarrow as pa

    convert = converter(f.type)
    out = []
    for value, row in zip(values, rows, strict=True):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except _Bad as bad:
            raise LandingRejected(
                f"{stream.identifier}: column {f.name} ({f.type}) cannot hold {_example(value)} "
                f"({bad.why}) in {relative}, {row_label} {row}; the batch was not loaded",
                table=stream.identifier,
                column=f.name,
                file=relative,
            ) from None
    return pa.array(out, type=f.type)


def _added_column(values: Sequence[Any]) -> pa.Array:
    """A column the stream does not declare, kept as text: strings as they are, other values
    as their JSON text, so no batch can conflict with another over its type."""
    import pyarrow as pa

    return pa.array(
        [v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string()
    )


def _reject_reserved(stream: RawStream, names: Iterable[str], relative: str) -> None:
    for name in names:
        if not name or not name.strip():
            raise LandingRejected(
                f"{stream.identifier}: a column with no name in {relative}",
                table=stream.identifier, column=name, file=relative,
            )  # fmt: skip
        if name.startswith(("_airbyte_", "_ab_")):
            raise LandingRejected(
                f"{stream.identifier}: column {name} in {relative} is reserved for Airbyte's "
                "metadata (the loader writes it); rename or remove it",
                table=stream.identifier,
                column=name,
                file=relative,
            )


def _records_table(stream: RawStream, columns: Mapping[str, list[Any]], n: int, relative: str,
                   rows: Sequence[int], row_label: str) -> ParsedFile:  # fmt: skip
    """Declared columns cast (nulls when absent), then the added ones."""
    import pyarrow as pa

    declared = {f.name for f in stream.source_fields}
    arrays, fields = [], []
    missing = []
    for f in stream.source_fields:
        if f.name in columns:
            arrays.append(_column(stream, f, columns[f.name], relative, rows, row_label))
        else:
            missing.append(f.name)
            arrays.append(pa.nulls(n, f.type))
        fields.append(f)
    added = [c for c in columns if c not in declared]
    for name in added:
        arrays.append(_added_column(columns[name]))
        fields.append(pa.field(name, pa.string()))
    data = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return ParsedFile(LandingFile(relative, stream, ""), data, added, missing)


def _non_utf8(stream: RawStream, relative: str, where: str, column: str | None,
              raw: bytes) -> LandingRejected:  # fmt: skip
    col = f"column {column}" if column else "a value"
    return LandingRejected(
        f"{stream.identifier}: {col} in {relative}, {where}, is not valid UTF-8 "
        f"({_example(raw)}); Iceberg strings are UTF-8, so the batch was not loaded: "
        "re-export the file as UTF-8",
        table=stream.identifier,
        column=column,
        file=relative,
    )


def _surrogate_field(obj: Any) -> tuple[str | None, bytes]:
    """The first key whose value (or name) holds undecodable bytes, and those bytes."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            for text in (key, value):
                if isinstance(text, str) and any("\udc80" <= ch <= "\udcff" for ch in text):
                    return key.encode("utf-8", "surrogateescape").decode(
                        "utf-8", "replace"
                    ), text.encode("utf-8", "surrogateescape")
    return None, b""


def parse_json(data: bytes, stream: RawStream, relative: str) -> ParsedFile:
    """``.json``: a JSON array of objects, or JSON lines."""
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not body.lstrip().startswith(b"["):
        return parse_jsonl(body, stream, relative)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        return _reject_array_bytes(body, stream, relative, line)
    try:
        records = json.loads(text)
    except ValueError as exc:
        raise LandingRejected(
            f"{stream.identifier}: {relative} is not JSON ({exc})",
            table=stream.identifier, file=relative,
        ) from None  # fmt: skip
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise LandingRejected(
            f"{stream.identifier}: {relative} is not a JSON array of objects",
            table=stream.identifier, file=relative,
        )  # fmt: skip
    lines = "\n".join(json.dumps(r) for r in records).encode("utf-8")
    return parse_jsonl(lines, stream, relative, row_label="record")


def _reject_array_bytes(body: bytes, stream: RawStream, relative: str, line: int) -> ParsedFile:
    text = body.decode("utf-8", "surrogateescape")
    column, raw = None, b""
    try:
        for record in json.loads(text):
            column, raw = _surrogate_field(record)
            if column:
                break
    except ValueError:
        pass
    raise _non_utf8(stream, relative, f"line {line}", column, raw or body[:EXAMPLE_CHARS])


def parse_jsonl(
    data: bytes, stream: RawStream, relative: str, row_label: str = "line"
) -> ParsedFile:
    """One JSON object per line; blank lines are skipped."""
    records: list[dict[str, Any]] = []
    line_numbers: list[int] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", "surrogateescape")
            try:
                column, raw = _surrogate_field(json.loads(text))
            except ValueError:
                column, raw = None, line
            raise _non_utf8(stream, relative, f"line {number}", column, raw or line) from None
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise LandingRejected(
                f"{stream.identifier}: {relative}, line {number} is not JSON ({exc}): "
                f"{_example(text)}",
                table=stream.identifier,
                file=relative,
            ) from None
        if not isinstance(record, dict):
            raise LandingRejected(
                f"{stream.identifier}: {relative}, line {number} is not a JSON object: "
                f"{_example(record)}",
                table=stream.identifier,
                file=relative,
            )
        records.append(record)
        line_numbers.append(number)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    _reject_reserved(stream, names, relative)
    columns = {name: [r.get(name) for r in records] for name in names}
    return _records_table(stream, columns, len(records), relative, line_numbers, row_label)


def parse_csv(data: bytes, stream: RawStream, relative: str) -> ParsedFile:
    """A header row, then one record per row; an empty cell is null."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        end = data.find(b"\n", exc.start)
        raw_line = data[start : end if end >= 0 else len(data)]
        column = None
        header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip("\r")
        names = next(csv.reader([header]), [])
        cells = next(csv.reader([raw_line.decode("utf-8", "surrogateescape")]), [])
        for name, cell in zip(names, cells, strict=False):
            if any("\udc80" <= ch <= "\udcff" for ch in cell):
                column = name
                raw_line = cell.encode("utf-8", "surrogateescape")
                break
        raise _non_utf8(stream, relative, f"line {line}", column, raw_line) from None
    # The csv module refuses cells over 128 KiB by default; an oversized value is accepted
    # and flagged by the string_sizes check instead, like in the other formats.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    try:
        return _parse_csv_text(text, stream, relative)
    except csv.Error as exc:
        raise LandingRejected(
            f"{stream.identifier}: {relative} is not valid CSV: {exc}",
            table=stream.identifier, file=relative,
        ) from None  # fmt: skip


def _parse_csv_text(text: str, stream: RawStream, relative: str) -> ParsedFile:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = next(reader, None)
    if header is None:
        return _records_table(stream, {}, 0, relative, [], "line")
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise LandingRejected(
            f"{stream.identifier}: {relative} repeats the header column(s) {dupes}",
            table=stream.identifier, column=dupes[0], file=relative,
        )  # fmt: skip
    _reject_reserved(stream, header, relative)
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise LandingRejected(
                f"{stream.identifier}: {relative}, line {reader.line_num} has {len(row)} cells "
                f"for {len(header)} header columns",
                table=stream.identifier,
                file=relative,
            )
        rows.append(row)
        line_numbers.append(reader.line_num)
    columns = {
        name: [row[i] if row[i] != "" else None for row in rows] for i, name in enumerate(header)
    }
    return _records_table(stream, columns, len(rows), relative, line_numbers, "line")


def parse_parquet(data: bytes, stream: RawStream, relative: str) -> ParsedFile:
    """A Parquet file: declared columns are cast to their type (a lossy or impossible cast
    rejects), added columns keep their Parquet type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:
        raise LandingRejected(
            f"{stream.identifier}: {relative} is not a readable Parquet file: {exc}",
            table=stream.identifier,
            file=relative,
        ) from None
    _reject_reserved(stream, table.column_names, relative)
    for name in table.column_names:
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                values = column.cast(pa.binary() if pa.types.is_string(column.type)
                                     else pa.large_binary()).to_pylist()  # fmt: skip
                for row, raw in enumerate(values, start=1):
                    if raw is not None:
                        try:
                            raw.decode("utf-8")
                        except UnicodeDecodeError:
                            raise _non_utf8(stream, relative, f"row {row}", name, raw) from None
    declared = {f.name: f for f in stream.source_fields}
    arrays, fields, missing = [], [], []
    for f in stream.source_fields:
        if f.name not in table.column_names:
            missing.append(f.name)
            arrays.append(pa.nulls(table.num_rows, f.type))
        else:
            arrays.append(_cast_parquet(stream, f, table[f.name], relative))
        fields.append(f)
    added = [c for c in table.column_names if c not in declared]
    for name in added:
        arrays.append(table[name])
        fields.append(table.schema.field(name))
    data_table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return ParsedFile(LandingFile(relative, stream, "parquet"), data_table, added, missing)


def _cast_parquet(stream: RawStream, f: pa.Field, column: pa.ChunkedArray,
                  relative: str) -> pa.ChunkedArray:  # fmt: skip
    import pyarrow as pa

    source = column.type
    if pa.types.is_timestamp(source) and pa.types.is_timestamp(f.type) and source.tz is None:
        column = column.cast(pa.timestamp(source.unit, tz="UTC"))  # naive: read as UTC
    try:
        return column.cast(f.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    # Find the first value that does not convert, to name it.
    convert = converter(f.type)
    for row, value in enumerate(column.to_pylist(), start=1):
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        try:
            convert(value)
        except _Bad as bad:
            raise LandingRejected(
                f"{stream.identifier}: column {f.name} ({f.type}) cannot hold {_example(value)} "
                f"({bad.why}) in {relative}, row {row}; the batch was not loaded",
                table=stream.identifier, column=f.name, file=relative,
            ) from None  # fmt: skip
    raise LandingRejected(
        f"{stream.identifier}: column {f.name} is {source} in {relative}, which does not cast to "
        f"{f.type}; the batch was not loaded",
        table=stream.identifier,
        column=f.name,
        file=relative,
    )


PARSERS: dict[str, Callable[[bytes, RawStream, str], ParsedFile]] = {
    "jsonl": parse_jsonl,
    "ndjson": parse_jsonl,
    "json": parse_json,
    "csv": parse_csv,
    "parquet": parse_parquet,
}


def parse_file(f: LandingFile, data: bytes) -> ParsedFile:
    """Read and validate one landing file (raises :class:`LandingRejected`)."""
    parsed = PARSERS[f.fmt](data, f.stream, f.relative)
    parsed.file = f
    return parsed


# ---- to raw rows -----------------------------------------------------------------------------


def raw_ids(batch: str, relative: str, n: int) -> pa.Array:
    """Deterministic ``_airbyte_raw_id`` values of a file's rows (uuid5 of batch, file, row)."""
    import pyarrow as pa

    return pa.array(
        [str(uuid.uuid5(RAW_ID_NAMESPACE, f"{batch}\x00{relative}\x00{i}")) for i in range(n)],
        pa.string(),
    )


def airbyte_meta(batch: str, parsed: ParsedFile) -> str:
    """``_airbyte_meta`` of a landed file's rows: where they came from and what the file lacked
    or added, beside Airbyte's usual ``changes`` list. Starts with :data:`LANDING_META_PREFIX`."""
    meta = {
        "landing_batch": batch,
        "landing_file": parsed.file.relative,
        "missing_columns": parsed.missing,
        "added_columns": parsed.added,
        "changes": [],
    }
    return json.dumps(meta, separators=(",", ":"))


def to_raw(batch: str, parsed: ParsedFile, extracted_at: dt.datetime) -> pa.Table:
    """The file's rows with Airbyte's three metadata columns, in the raw table's column order
    (declared source columns, Airbyte's columns, then added columns)."""
    import pyarrow as pa

    from ingestion.streams import AIRBYTE_META_FIELDS, TIMESTAMP

    n = parsed.rows
    source = parsed.data
    declared = [f.name for f in parsed.file.stream.source_fields]
    meta = airbyte_meta(batch, parsed)
    columns = [source[name] for name in declared]
    columns += [
        raw_ids(batch, parsed.file.relative, n),
        pa.array([extracted_at] * n, TIMESTAMP),
        pa.array([meta] * n, pa.string()),
    ]
    fields = [source.schema.field(name) for name in declared] + list(AIRBYTE_META_FIELDS)
    for name in parsed.added:
        columns.append(source[name])
        fields.append(source.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def with_record_index(data: pa.Table) -> pa.Table:
    """``data`` (a stream's rows of one batch, files in name order) with the delivery order in
    ``_ab_record_index``: staging resolves conflicting duplicates of one batch (same key, same
    extraction time) to the record delivered last (see ``ingestion.streams``)."""
    import pyarrow as pa

    from ingestion.streams import RECORD_INDEX_COLUMN

    index = pa.array(range(data.num_rows), pa.int64())
    return data.append_column(pa.field(RECORD_INDEX_COLUMN, pa.int64()), index)


def align_to_table(stream: RawStream, raw: pa.Table, table_schema: pa.Schema | None,
                   relative: str) -> pa.Table:  # fmt: skip
    """Cast columns the raw table already has to the table's types (an added column may exist
    from an earlier batch): a value that does not fit rejects, naming the column."""
    import pyarrow as pa

    if table_schema is None:
        return raw
    for i, name in enumerate(raw.column_names):
        if name not in table_schema.names:
            continue
        target = table_schema.field(name).type
        if raw.schema.field(name).type == target:
            continue
        try:
            raw = raw.set_column(i, pa.field(name, target), raw[name].cast(target, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise LandingRejected(
                f"{stream.identifier}: column {name} of {relative} ({raw.schema.field(name).type}) "
                f"does not fit the table's {target}: {exc}",
                table=stream.identifier,
                column=name,
                file=relative,
            ) from None
    return raw


def combine(tables: Sequence[pa.Table], stream: RawStream) -> pa.Table:
    """One table from the files of one stream (added columns unioned by name)."""
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LandingRejected(
            f"{stream.identifier}: the batch's files disagree on a column's type: {exc}",
            table=stream.identifier,
        ) from None


# ---- loading a batch (I/O) ------------------------------------------------------------------


@dataclass
class StreamLoad:
    """What loading one stream of a batch did, for logs and Dagster metadata."""

    stream: RawStream
    files: list[str]
    empty_files: list[str]
    rows: int
    added: list[str]
    missing: list[str]
    #: The batch's rows were already in the table (a re-executed run): nothing appended.
    already_loaded: bool = False
    write: iceberg.TableWriteResult | None = None

    def as_metadata(self, batch: str) -> dict[str, Any]:
        meta: dict[str, Any] = dict(self.write.as_metadata()) if self.write else {}
        meta.update(
            {
                "source": "local Airbyte stand-in: landing batch loader",
                "landing_batch": batch,
                "landing_files": ", ".join(self.files),
                "landing_rows": self.rows,
                "landing_empty_files": ", ".join(self.empty_files) or "none",
                "landing_added_columns": ", ".join(self.added) or "none",
                "landing_missing_columns": ", ".join(self.missing) or "none",
                "landing_already_loaded": self.already_loaded,
            }
        )
        if not self.write or self.already_loaded:
            meta["rows_written"] = 0
        return meta


def _join(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}"


def _table_schema(catalog: Catalog, stream: RawStream) -> pa.Schema | None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table(stream.identifier).schema().as_arrow()
    except NoSuchTableError:
        return None


def _already_loaded(catalog: Catalog, stream: RawStream, first_raw_id: str) -> bool:
    """Whether a row with this (deterministic) raw id is in the table: pushed down, so only
    files whose id bounds could hold it are read."""
    from pyiceberg.expressions import EqualTo

    from shared import iceberg

    try:
        found = iceberg.read_table(
            catalog,
            stream.identifier,
            columns=["_airbyte_raw_id"],
            row_filter=EqualTo("_airbyte_raw_id", first_raw_id),
        )
    except iceberg.IcebergError:
        return False
    return found.num_rows > 0


def load_batch(catalog: Catalog, fs: Any, root: str, batch: str, files: Sequence[str],
               extracted_at: dt.datetime) -> dict[str, StreamLoad]:  # fmt: skip
    """Load landing batch ``batch`` (``files`` relative to ``root``, the landing prefix).

    Every file is read and validated, and aligned with its table, before anything is written:
    a bad file raises :class:`LandingRejected` with no table changed. Then each stream is
    appended in one Iceberg commit, unless the batch's rows are already there.
    """
    from pyiceberg.exceptions import NoSuchTableError

    from shared import iceberg

    plan = plan_batch(files)
    prepared: dict[str, tuple[pa.Table | None, StreamLoad]] = {}
    for name, stream_files in plan.items():
        stream = STREAMS_BY_NAME[name]
        schema = _table_schema(catalog, stream)
        raws: list[pa.Table] = []
        empty: list[str] = []
        added: set[str] = set()
        missing: set[str] = set()
        for f in stream_files:
            parsed = parse_file(f, fs.cat_file(_join(root, f.relative)))
            if parsed.rows == 0:
                empty.append(f.relative)
                continue
            added.update(parsed.added)
            missing.update(parsed.missing)
            raws.append(align_to_table(stream, to_raw(batch, parsed, extracted_at), schema,
                                       f.relative))  # fmt: skip
        data = with_record_index(combine(raws, stream)) if raws else None
        load = StreamLoad(
            stream=stream,
            files=[f.relative for f in stream_files],
            empty_files=empty,
            rows=data.num_rows if data is not None else 0,
            added=sorted(added),
            missing=sorted(missing),
        )
        prepared[name] = (data, load)

    loads: dict[str, StreamLoad] = {}
    for name, (data, load) in prepared.items():
        stream = load.stream
        if data is not None and _already_loaded(
            catalog, stream, data["_airbyte_raw_id"][0].as_py()
        ):
            load.already_loaded = True
        elif data is not None:
            load.write = iceberg.write_table(catalog, stream.identifier, data, mode="append")
        if load.write is None:
            try:
                table = catalog.load_table(stream.identifier)
                load.write = iceberg.describe_write(table, stream.identifier, 0)
            except NoSuchTableError:
                pass
        loads[name] = load
    return loads


def previous_rejection(fs: Any, root: str, batch: str) -> str | None:
    """The recorded reason if ``batch`` was rejected before (its ``_error.txt`` exists)."""
    path = _join(root, f"{REJECTED_DIR}/{batch}/{ERROR_FILE}")
    try:
        return fs.cat_file(path).decode("utf-8", "replace").strip() if fs.exists(path) else None
    except FileNotFoundError:
        return None


def quarantine(fs: Any, root: str, batch: str, files: Sequence[str], error: str, *,
               resume: bool = False) -> str:  # fmt: skip
    """Move a rejected batch's files to ``<root>/_rejected/<batch>/`` with ``_error.txt``
    saying why; returns that folder. Nothing is deleted; a name already used gets a suffix.

    ``_error.txt`` is written first, so a quarantine interrupted halfway is recognised by the
    next run of the batch (:func:`previous_rejection`), which finishes it with ``resume=True``
    instead of loading the files left behind (a part of a rejected batch).
    """
    dest = _join(root, f"{REJECTED_DIR}/{batch}")
    if not resume:
        if fs.exists(dest):
            dest = f"{dest}.{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
        fs.makedirs(dest, exist_ok=True)
        fs.pipe_file(_join(dest, ERROR_FILE), (error.rstrip() + "\n").encode("utf-8"))
    prefix = f"{batch}/"
    for relative in files:
        inside = relative[len(prefix) :] if relative.startswith(prefix) else relative
        target = _join(dest, inside)
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(_join(root, relative), target)
    # Remove the batch's now empty folders (local folders; object stores have none).
    folder = _join(root, batch)
    try:
        if fs.isdir(folder) and not fs.find(folder):
            fs.rm(folder, recursive=True)
    except OSError:
        pass
    return dest
