"""How landing files are parsed: read and validated against their stream's schema."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ingestion.landing.batch import LandingFile, LandingRejected
from ingestion.streams import RawStream

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import pyarrow as pa

#: Examples quoted in an error are cut to this many characters.
EXAMPLE_CHARS = 80


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
    if pa.types.is_timestamp(f.type) and (
        pa.types.is_integer(source) or pa.types.is_floating(source)
    ):
        # Arrow would read the numbers in the target's unit (microseconds): epoch seconds
        # became 1970-01-01 00:29. A number carries no unit, so none is guessed.
        raise LandingRejected(
            f"{stream.identifier}: column {f.name} is {source} in {relative}: a number is not a "
            f"timestamp without a unit (seconds? milliseconds?); write {f.name} as a Parquet "
            "timestamp (or an ISO-8601 string); the batch was not loaded",
            table=stream.identifier,
            column=f.name,
            file=relative,
        )
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
