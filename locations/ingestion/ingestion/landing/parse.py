"""How landing files are parsed: read and validated against their stream's schema."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

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


def _cannot_hold(stream: RawStream, f: pa.Field, value: Any, bad: _Bad, relative: str,
                 where: str) -> LandingRejected:  # fmt: skip
    """The rejection of a value its column cannot hold, worded once for every format (JSON
    lines, CSV, Parquet); ``where`` is the value's place in the file (``line 3``, ``row 3``)."""
    return LandingRejected(
        f"{stream.identifier}: column {f.name} ({f.type}) cannot hold {_example(value)} "
        f"({bad.why}) in {relative}, {where}; the batch was not loaded",
        table=stream.identifier,
        column=f.name,
        file=relative,
    )


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
            raise _cannot_hold(stream, f, value, bad, relative, f"{row_label} {row}") from None
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
    data: bytes, stream: RawStream, relative: str, row_label: str = "line", first_line: int = 1
) -> ParsedFile:
    """One JSON object per line; blank lines are skipped. The row-by-row reading, which words
    every rejection (what, where, which value): used where pyarrow's reader fails
    (:func:`_jsonl_arrow`), and for ``.json`` arrays."""
    records: list[dict[str, Any]] = []
    line_numbers: list[int] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark
    for number, line in enumerate(data.split(b"\n"), start=first_line):
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


def parse_parquet(data: bytes, stream: RawStream, relative: str) -> ParsedFile:
    """A Parquet file: declared columns are cast to their type (a lossy or impossible cast
    rejects), added columns keep their Parquet type."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:
        raise _unreadable_parquet(stream, relative, exc) from None
    return parse_parquet_table(table, stream, relative)


def _unreadable_parquet(stream: RawStream, relative: str, exc: Exception) -> LandingRejected:
    return LandingRejected(
        f"{stream.identifier}: {relative} is not a readable Parquet file: {exc}",
        table=stream.identifier,
        file=relative,
    )


def parse_parquet_table(table: pa.Table, stream: RawStream, relative: str,
                        first_row: int = 1) -> ParsedFile:  # fmt: skip
    """Validate rows of a Parquet file (``first_row``: the number of the first, for messages)."""
    import pyarrow as pa

    _reject_reserved(stream, table.column_names, relative)
    for name in table.column_names:
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                values = column.cast(pa.binary() if pa.types.is_string(column.type)
                                     else pa.large_binary()).to_pylist()  # fmt: skip
                for row, raw in enumerate(values, start=first_row):
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
            arrays.append(_cast_parquet(stream, f, table[f.name], relative, first_row))
        fields.append(f)
    added = [c for c in table.column_names if c not in declared]
    for name in added:
        arrays.append(table[name])
        fields.append(table.schema.field(name))
    data_table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return ParsedFile(LandingFile(relative, stream, "parquet"), data_table, added, missing)


def _cast_parquet(stream: RawStream, f: pa.Field, column: pa.ChunkedArray,
                  relative: str, first_row: int = 1) -> pa.ChunkedArray:  # fmt: skip
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
    for row, value in enumerate(column.to_pylist(), start=first_row):
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        try:
            convert(value)
        except _Bad as bad:
            raise _cannot_hold(stream, f, value, bad, relative, f"row {row}") from None
    raise LandingRejected(
        f"{stream.identifier}: column {f.name} is {source} in {relative}, which does not cast to "
        f"{f.type}; the batch was not loaded",
        table=stream.identifier,
        column=f.name,
        file=relative,
    )


# ---- bounded reading: chunks -----------------------------------------------------------------

#: Bytes of JSON lines parsed at once (a chunk ends at a line end): memory follows this, not the
#: file's size.
CHUNK_BYTES = 16 * 1024 * 1024
#: Rows per chunk of the row-by-row CSV reading and of Parquet.
CHUNK_ROWS = 65_536
#: A ``.json`` file (one JSON array, which has no line to cut at) is read whole: larger ones are
#: refused (write JSON lines instead).
MAX_JSON_ARRAY_BYTES = 256 * 1024 * 1024

Opener = Callable[[], BinaryIO]


def iter_chunks(f: LandingFile, open_file: Opener) -> Iterator[ParsedFile]:
    """Read and validate one landing file in bounded chunks, in row order (raises
    :class:`LandingRejected`). ``missing`` of a chunk: declared columns none of its rows has;
    a file lacks a column if every chunk lacks it."""
    readers: dict[str, Callable[[LandingFile, Opener], Iterator[ParsedFile]]] = {
        "jsonl": _jsonl_chunks,
        "ndjson": _jsonl_chunks,
        "json": _json_array_chunks,
        "csv": _csv_chunks,
        "parquet": _parquet_chunks,
    }
    for chunk in readers[f.fmt](f, open_file):
        chunk.file = f
        yield chunk


def parse_file(f: LandingFile, data: bytes) -> ParsedFile:
    """Read and validate a whole landing file held in memory (tests, small files)."""
    import pyarrow as pa

    chunks = list(iter_chunks(f, lambda: io.BytesIO(data)))
    if len(chunks) == 1:
        return chunks[0]
    missing = [c for c in chunks[0].missing if all(c in k.missing for k in chunks)]
    added = list(dict.fromkeys(c for k in chunks for c in k.added))
    table = pa.concat_tables([k.data for k in chunks], promote_options="default")
    return ParsedFile(f, table, added, missing)


def _line_blocks(handle: BinaryIO, size: int) -> Iterator[tuple[int, bytes]]:
    """``(number of its first line, block)``: the file cut after a line end every ``size``
    bytes or so (a longer line makes a longer block); a byte order mark is dropped."""
    line, rest, first = 1, b"", True
    while block := handle.read(size):
        data = rest + block
        if first:
            data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
            first = False
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        yield line, data[: cut + 1]
        line += data.count(b"\n", 0, cut + 1)
        rest = data[cut + 1 :]
    if rest:
        yield line, rest


def _jsonl_chunks(f: LandingFile, open_file: Opener) -> Iterator[ParsedFile]:
    empty = True
    with open_file() as handle:
        for first_line, block in _line_blocks(handle, CHUNK_BYTES):
            parsed = _jsonl_arrow(block, f.stream, f.relative)
            if parsed is None:  # words the rejection, or reads what pyarrow is stricter about
                parsed = parse_jsonl(block, f.stream, f.relative, first_line=first_line)
            empty = False
            yield parsed
    if empty:
        yield parse_jsonl(b"", f.stream, f.relative)


def _arrow_read_type(t: pa.DataType) -> pa.DataType:
    """Timestamps are read as text, then cast (their zones and forms are checked there)."""
    import pyarrow as pa

    return pa.string() if pa.types.is_timestamp(t) else t


def _declared_arrays(stream: RawStream, table: pa.Table) -> list[pa.ChunkedArray] | None:
    """The declared columns cast to their types, or None where the row-by-row reading must
    decide: a value pyarrow will not cast, or a column null in every row (absent, or present
    with nulls: only the row-by-row reading tells, and reports a dropped column)."""
    import pyarrow as pa

    arrays = []
    for f in stream.source_fields:
        column = table[f.name]
        if column.null_count == len(column):
            return None
        if column.type != f.type:
            try:
                column = column.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                return None
        arrays.append(column)
    return arrays


def _added_as_text(stream: RawStream, table: pa.Table) -> tuple[list[str], list[Any]] | None:
    """Added columns (not declared) as text, like the row-by-row reading keeps them; None if
    one is not text in the file (its JSON text is what is kept: the row-by-row reading)."""
    import pyarrow as pa

    declared = {f.name for f in stream.source_fields}
    added = [c for c in table.column_names if c not in declared]
    arrays = []
    for name in added:
        if not name.strip() or name.startswith("_airbyte_"):
            return None  # rejected, with its wording, by the row-by-row reading
        column = table[name]
        if pa.types.is_null(column.type):
            column = column.cast(pa.string())
        elif not pa.types.is_string(column.type):
            return None
        arrays.append(column)
    return added, arrays


def _arrow_chunk(stream: RawStream, relative: str, table: pa.Table) -> ParsedFile | None:
    import pyarrow as pa

    if table.num_rows == 0:
        return None
    declared = _declared_arrays(stream, table)
    added = _added_as_text(stream, table)
    if declared is None or added is None:
        return None
    names, added_arrays = added
    fields = [*stream.source_fields, *(pa.field(n, pa.string()) for n in names)]
    data = pa.Table.from_arrays([*declared, *added_arrays], schema=pa.schema(fields))
    return ParsedFile(LandingFile(relative, stream, ""), data, names, [])


def _jsonl_arrow(block: bytes, stream: RawStream, relative: str) -> ParsedFile | None:
    """JSON lines through pyarrow's JSON reader against the stream's schema; None when the
    row-by-row reading must decide (any error: it names the line, column and value)."""
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([pa.field(f.name, _arrow_read_type(f.type)) for f in stream.source_fields])
    try:
        table = pj.read_json(
            io.BytesIO(block),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="infer"
            ),
        )
    except Exception:  # any parse or conversion error: the row-by-row reading words it
        return None
    return _arrow_chunk(stream, relative, table)


def _json_array_chunks(f: LandingFile, open_file: Opener) -> Iterator[ParsedFile]:
    with open_file() as handle:
        data = handle.read(MAX_JSON_ARRAY_BYTES + 1)
    if len(data) > MAX_JSON_ARRAY_BYTES:
        raise LandingRejected(
            f"{f.stream.identifier}: {f.relative} is over {MAX_JSON_ARRAY_BYTES // 2**20} MiB; a "
            ".json file (one array) is read whole, so larger ones are refused: write JSON lines "
            "(.jsonl, one object per line), which are read in bounded chunks",
            table=f.stream.identifier,
            file=f.relative,
        )
    yield parse_json(data, f.stream, f.relative)


def _csv_chunks(f: LandingFile, open_file: Opener) -> Iterator[ParsedFile]:
    """pyarrow's CSV reader, chunk by chunk; from the first chunk it cannot read, the
    row-by-row reading takes over (it words the rejection, or accepts what pyarrow is stricter
    about), continuing after the rows already given."""
    header = _csv_header(f, open_file)
    done = 0
    if header:
        try:
            for chunk in _csv_arrow(f, open_file, header):
                yield chunk
                done += chunk.rows
            return
        except _ArrowGaveUp:
            pass
    yield from _csv_rows(f, open_file, skip=done)


class _ArrowGaveUp(Exception):
    """pyarrow could not read a chunk: the row-by-row reading decides."""


def _csv_header(f: LandingFile, open_file: Opener) -> list[str] | None:
    """The header row, validated (no duplicate, empty or reserved name); None for an empty
    file (or one pyarrow should not read: the row-by-row reading then decides)."""
    with open_file() as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="strict", newline="")
        try:
            header = next(csv.reader(text, strict=True), None)
        except (UnicodeDecodeError, csv.Error):
            return None
    if header is None:
        return None
    if len(set(header)) != len(header):
        return None  # rejected with its wording by the row-by-row reading
    # pyarrow reads an unterminated quote to the end of the file where the csv module (strict)
    # rejects it: well-formed quoting has an even number of quote characters.
    quotes = 0
    with open_file() as handle:
        while block := handle.read(CHUNK_BYTES):
            quotes += block.count(b'"')
    return header if quotes % 2 == 0 else None


def _csv_arrow(f: LandingFile, open_file: Opener, header: list[str]) -> Iterator[ParsedFile]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    stream = f.stream
    _reject_reserved(stream, header, f.relative)
    declared = {x.name for x in stream.source_fields}
    with open_file() as handle:
        try:
            reader = pacsv.open_csv(
                handle,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=CHUNK_BYTES),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                    null_values=[""],
                ),
            )
        except Exception:
            raise _ArrowGaveUp from None
        missing = [x.name for x in stream.source_fields if x.name not in header]
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except Exception:
                raise _ArrowGaveUp from None
            table = pa.Table.from_batches([batch])
            for name in missing:  # absent from the header: nulls, reported missing
                table = table.append_column(
                    name, pa.nulls(table.num_rows, _arrow_read_type(stream.schema.field(name).type))
                )
            present = [x for x in stream.source_fields if x.name in header]
            arrays = []
            for x in stream.source_fields:
                column = table[x.name]
                if x in present and column.null_count == len(column):
                    arrays.append(column.cast(x.type))  # present, all empty: nulls
                    continue
                try:
                    arrays.append(column.cast(x.type, safe=True))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    raise _ArrowGaveUp from None
            added = [name for name in header if name not in declared]
            fields = [*stream.source_fields, *(pa.field(n, pa.string()) for n in added)]
            data = pa.Table.from_arrays(
                [*arrays, *(table[n] for n in added)], schema=pa.schema(fields)
            )
            yield ParsedFile(LandingFile(f.relative, stream, ""), data, added, missing)


def _csv_rows(f: LandingFile, open_file: Opener, skip: int = 0) -> Iterator[ParsedFile]:
    """The row-by-row CSV reading, in chunks of :data:`CHUNK_ROWS` rows (after ``skip`` rows
    already read): names the line, column and value of any rejection."""
    stream, relative = f.stream, f.relative
    # The csv module refuses cells over 128 KiB by default; an oversized value is accepted
    # and flagged by the string_sizes check instead, like in the other formats.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with open_file() as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape",
                                newline="")  # fmt: skip
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                yield _records_table(stream, {}, 0, relative, [], "line")
                return
            header = [_no_surrogates(stream, relative, reader.line_num, None, h) for h in header]
            if len(set(header)) != len(header):
                dupes = sorted({h for h in header if header.count(h) > 1})
                raise LandingRejected(
                    f"{stream.identifier}: {relative} repeats the header column(s) {dupes}",
                    table=stream.identifier, column=dupes[0], file=relative,
                )  # fmt: skip
            _reject_reserved(stream, header, relative)
            rows: list[list[str]] = []
            line_numbers: list[int] = []
            seen = 0
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise LandingRejected(
                        f"{stream.identifier}: {relative}, line {reader.line_num} has "
                        f"{len(row)} cells for {len(header)} header columns",
                        table=stream.identifier,
                        file=relative,
                    )
                for name, cell in zip(header, row, strict=True):
                    _no_surrogates(stream, relative, reader.line_num, name, cell)
                seen += 1
                if seen <= skip:
                    continue
                rows.append(row)
                line_numbers.append(reader.line_num)
                if len(rows) == CHUNK_ROWS:
                    yield _csv_table(stream, relative, header, rows, line_numbers)
                    rows, line_numbers = [], []
            if rows or not seen:
                yield _csv_table(stream, relative, header, rows, line_numbers)
        except csv.Error as exc:
            raise LandingRejected(
                f"{stream.identifier}: {relative} is not valid CSV: {exc}",
                table=stream.identifier, file=relative,
            ) from None  # fmt: skip


def _no_surrogates(stream: RawStream, relative: str, line: int, column: str | None,
                   cell: str) -> str:  # fmt: skip
    """``cell``, unless it holds bytes that were not UTF-8 (rejected, naming them)."""
    if any("\udc80" <= ch <= "\udcff" for ch in cell):
        raw = cell.encode("utf-8", "surrogateescape")
        raise _non_utf8(stream, relative, f"line {line}", column, raw)
    return cell


def _csv_table(stream: RawStream, relative: str, header: list[str], rows: list[list[str]],
               line_numbers: list[int]) -> ParsedFile:  # fmt: skip
    columns = {
        name: [row[i] if row[i] != "" else None for row in rows] for i, name in enumerate(header)
    }
    return _records_table(stream, columns, len(rows), relative, line_numbers, "line")


def _parquet_chunks(f: LandingFile, open_file: Opener) -> Iterator[ParsedFile]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_file() as handle:
        try:
            parquet = pq.ParquetFile(handle)
            batches = parquet.iter_batches(batch_size=CHUNK_ROWS)
            schema = parquet.schema_arrow
        except Exception as exc:
            raise _unreadable_parquet(f.stream, f.relative, exc) from None
        first_row, empty = 1, True
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception as exc:
                raise _unreadable_parquet(f.stream, f.relative, exc) from None
            empty = False
            yield parse_parquet_table(pa.Table.from_batches([batch]), f.stream, f.relative,
                                      first_row)  # fmt: skip
            first_row += batch.num_rows
        if empty:
            yield parse_parquet_table(schema.empty_table(), f.stream, f.relative)
