"""How a landing batch is loaded into the raw tables, or quarantined."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingestion.landing.batch import (
    BATCH_PROPERTY,
    ERROR_FILE,
    FINGERPRINT_PROPERTY,
    RAW_ID_NAMESPACE,
    REJECTED_DIR,
    Batch,
    LandingRejected,
    content_fingerprint,
    file_digest,
    join,
    plan_batch,
    read_ledger,
    stamp,
    write_ledger,
)
from ingestion.landing.parse import ParsedFile, iter_chunks
from ingestion.streams import STREAMS_BY_NAME, RawStream

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

    from shared import iceberg

# ---- to raw rows -----------------------------------------------------------------------------


def raw_ids(batch: str, relative: str, n: int, start: int = 0) -> pa.Array:
    """Deterministic ``_airbyte_raw_id`` values of a file's rows ``start`` to ``start + n``
    (uuid5 of batch, file, row)."""
    import pyarrow as pa

    return pa.array(
        [
            str(uuid.uuid5(RAW_ID_NAMESPACE, f"{batch}\x00{relative}\x00{i}"))
            for i in range(start, start + n)
        ],
        pa.string(),
    )


def airbyte_meta(batch: str, relative: str, missing: Sequence[str], added: Sequence[str],
                 fingerprint: str | None = None) -> str:  # fmt: skip
    """``_airbyte_meta`` of a landed file's rows: where they came from and what the file lacked
    or added, beside Airbyte's usual ``changes`` list, and the batch's content fingerprint (how
    a batch committed long ago is recognised once its snapshot expired: :func:`_loaded_with`).
    Starts with :data:`LANDING_META_PREFIX`."""
    meta: dict[str, Any] = {
        "landing_batch": batch,
        "landing_file": relative,
        "missing_columns": list(missing),
        "added_columns": list(added),
        "changes": [],
    }
    if fingerprint:
        meta["landing_fingerprint"] = fingerprint
    return json.dumps(meta, separators=(",", ":"))


def to_raw(batch: str, parsed: ParsedFile, extracted_at: dt.datetime, start: int = 0,
           whole: FileSummary | None = None, fingerprint: str | None = None) -> pa.Table:  # fmt: skip
    """The rows of a file (or of its chunk starting at row ``start``; ``whole`` says what the
    whole file lacked or added) with Airbyte's metadata columns, in the raw table's
    column order (declared source columns, Airbyte's columns, then added columns)."""
    import pyarrow as pa

    from ingestion.streams import AIRBYTE_META_FIELDS, TIMESTAMP

    n = parsed.rows
    source = parsed.data
    declared = [f.name for f in parsed.file.stream.source_fields]
    missing, added = (whole.missing, whole.added) if whole else (parsed.missing, parsed.added)
    meta = airbyte_meta(batch, parsed.file.relative, missing, added, fingerprint)
    columns = [source[name] for name in declared]
    columns += [
        raw_ids(batch, parsed.file.relative, n, start),
        pa.array([extracted_at] * n, TIMESTAMP),
        pa.array([meta] * n, pa.string()),
        pa.array([0] * n, pa.int64()),  # _airbyte_generation_id: never refreshed
    ]
    fields = [source.schema.field(name) for name in declared] + list(AIRBYTE_META_FIELDS)
    for name in parsed.added:
        columns.append(source[name])
        fields.append(source.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


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
    return join(root, relative)


class BatchChanged(RuntimeError):
    """The batch's files changed while it was being loaded: nothing was committed, and the
    batch stays pending (not a rejection: the producer is still writing)."""


class _AlreadyCommitted(Exception):
    """Raised by the commit precondition: another run committed this batch's rows first."""


def _table_schema(catalog: Catalog, stream: RawStream) -> pa.Schema | None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table(stream.identifier).schema().as_arrow()
    except NoSuchTableError:
        return None


def committed_fingerprint(table: Any, batch: str) -> str | None:
    """The content fingerprint with which ``batch`` was committed to ``table`` (from the
    snapshot summaries, written in the same commit as the rows), or None.

    Only the snapshots the table still has are seen (``shared.maintenance`` expires old ones,
    so this reads a bounded number): a batch committed earlier is found in the data instead
    (:func:`_loaded_with`)."""
    for snapshot in reversed(table.snapshots()):
        summary = snapshot.summary
        if summary is not None and summary[BATCH_PROPERTY] == batch:
            return summary[FINGERPRINT_PROPERTY]
    return None


def _reused(batch: str, old: str, new: str) -> LandingRejected:
    return LandingRejected(
        f"landing batch {batch!r} was already loaded with different content (fingerprint "
        f"{old[:12]}, these files {new[:12]}): a batch name is loaded once, so none of these "
        "files was loaded; drop them under a new batch name"
    )


def _loaded_with(
    catalog: Catalog, stream: RawStream, first_raw_ids: Sequence[str]
) -> set[str] | None:
    """The fingerprints of the batches whose rows with these raw ids are in the table (a raw id
    is deterministic: batch, file, row; the ids given are the first row of each of the batch's
    files), read from those rows' ``_airbyte_meta`` ("" for a row loaded before rows carried
    it); None when no such row is in the table.

    How a batch is recognised whose commit's snapshot expired (a run killed after its commit,
    before its ledger write, then the snapshot expired), and how batches loaded before
    fingerprints were recorded are. EVERY file's first row is looked up, not only the first
    file's: a batch name re-dropped with one more file (sorting first) must still be found by
    the files it had. Pushed down, so only files whose id bounds could hold them are read."""
    from pyiceberg.expressions import In

    from shared import iceberg

    rows = In("_airbyte_raw_id", list(first_raw_ids))
    try:
        # The ids alone first: a new batch (the usual case) reads no other column.
        ids = iceberg.read_table(
            catalog, stream.identifier, columns=["_airbyte_raw_id"], row_filter=rows
        )
        if not ids.num_rows:
            return None
        found = iceberg.read_table(
            catalog, stream.identifier, columns=["_airbyte_meta"], row_filter=rows
        )
    except iceberg.IcebergError:
        return None
    if found.num_rows == 0:
        return None
    fingerprints = set()
    for value in found["_airbyte_meta"].to_pylist():
        try:
            meta = json.loads(value or "{}")
        except ValueError:
            meta = {}
        fingerprints.add(
            str(meta.get("landing_fingerprint") or "") if isinstance(meta, dict) else ""
        )
    return fingerprints


def _listed(fs: Any, root: str, batch: str, files: Sequence[str]) -> Batch:
    stamps = {}
    for f in files:
        try:
            stamps[f] = stamp(fs.info(_join(root, f)))
        except FileNotFoundError:
            raise BatchChanged(f"landing batch {batch!r}: {f} vanished while loading") from None
    return Batch(batch, tuple(sorted(files)), stamps)


@dataclass
class FileSummary:
    """What reading a whole file found (pass 1 of :func:`load_batch`)."""

    relative: str
    rows: int
    #: Declared columns no row of the file has.
    missing: list[str]
    #: Columns the stream does not declare, in first-seen order, with their types.
    added: list[str]
    added_types: dict[str, Any]


def _open(fs: Any, root: str, relative: str) -> Any:
    return lambda: fs.open(_join(root, relative), "rb")


def _summarise(fs: Any, root: str, batch: str, f: Any, table_schema: pa.Schema | None,
               extracted_at: dt.datetime) -> FileSummary:  # fmt: skip
    """Read and validate one file chunk by chunk (also against the table's column types),
    keeping only its summary."""
    rows = 0
    missing: set[str] | None = None
    added: dict[str, Any] = {}
    for chunk in iter_chunks(f, _open(fs, root, f.relative)):
        missing = set(chunk.missing) if missing is None else missing & set(chunk.missing)
        for name in chunk.added:
            added.setdefault(name, chunk.data.schema.field(name).type)
        if chunk.rows:  # the file's columns fit the table's types (Airbyte's are ours)
            align_to_table(f.stream, chunk.data, table_schema, f.relative)
        rows += chunk.rows
    declared = [x.name for x in f.stream.source_fields]
    return FileSummary(
        relative=f.relative,
        rows=rows,
        missing=[c for c in declared if c in (missing or set())],
        added=list(added),
        added_types=added,
    )


def _raw_schema(stream: RawStream, summaries: Sequence[FileSummary],
                table_schema: pa.Schema | None) -> pa.Schema:  # fmt: skip
    """The schema of the stream's raw rows from this batch: declared columns, Airbyte's, then
    the added columns of its files with non-empty rows (one type each: files that disagree
    reject the batch; the table's type where it has the column; text when only nulls)."""
    import pyarrow as pa

    from ingestion.streams import AIRBYTE_META_FIELDS, RECORD_INDEX_COLUMN

    # The delivery order (see _raw_chunks) follows Airbyte's columns.
    record_index = pa.field(RECORD_INDEX_COLUMN, pa.int64())
    fields = [*stream.source_fields, *AIRBYTE_META_FIELDS, record_index]
    types: dict[str, list[Any]] = {}
    for summary in summaries:
        if summary.rows:
            for name in summary.added:
                types.setdefault(name, []).append(summary.added_types[name])
    for name, candidates in types.items():
        if table_schema is not None and name in table_schema.names:
            fields.append(pa.field(name, table_schema.field(name).type))
            continue
        try:
            unified = (
                pa.unify_schemas(
                    [pa.schema([pa.field(name, t)]) for t in candidates], promote_options="default"
                )
                .field(name)
                .type
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise LandingRejected(
                f"{stream.identifier}: the batch's files disagree on a column's type: {exc}",
                table=stream.identifier,
            ) from None
        # An added column null in every row (Parquet's null type) has no type Iceberg can
        # store: kept as text, like the added columns of jsonl and csv.
        fields.append(pa.field(name, pa.string() if pa.types.is_null(unified) else unified))
    return pa.schema(fields)


def _raw_chunks(fs: Any, root: str, batch: str, stream_files: Sequence[Any],
                summaries: Sequence[FileSummary], table_schema: pa.Schema | None,
                schema: pa.Schema, extracted_at: dt.datetime,
                unchanged: Any, fingerprint: str) -> Any:  # fmt: skip
    """A function giving the stream's raw rows chunk by chunk, in ``schema`` (what
    ``shared.iceberg.write_table`` streams into one commit); it checks last that the files
    did not change since they were fingerprinted."""
    import pyarrow as pa

    from ingestion.streams import RECORD_INDEX_COLUMN

    def chunks() -> Iterator[pa.Table]:
        # _ab_record_index: the row's position in the batch's delivery of this stream (files in
        # name order, rows in file order): staging resolves conflicting duplicates of one batch
        # (same key, same extraction time) to the record delivered last.
        position = 0
        for f, summary in zip(stream_files, summaries, strict=True):
            start = 0
            for chunk in iter_chunks(f, _open(fs, root, f.relative)):
                if not chunk.rows:
                    continue
                raw = to_raw(batch, chunk, extracted_at, start, summary, fingerprint)
                raw = align_to_table(f.stream, raw, table_schema, f.relative)
                index = pa.array(range(position, position + raw.num_rows), pa.int64())
                raw = raw.append_column(pa.field(RECORD_INDEX_COLUMN, pa.int64()), index)
                start += chunk.rows
                position += raw.num_rows
                yield pa.Table.from_arrays(
                    [
                        raw[x.name].cast(x.type)
                        if x.name in raw.column_names
                        else pa.nulls(raw.num_rows, x.type)
                        for x in schema
                    ],
                    schema=schema,
                )
        unchanged()

    return chunks


def load_batch(catalog: Catalog, fs: Any, root: str, batch: str, files: Sequence[str],
               extracted_at: dt.datetime) -> dict[str, StreamLoad]:  # fmt: skip
    """Load landing batch ``batch`` (``files`` relative to ``root``, the landing prefix).

    Exactly once, whatever is killed when (see :mod:`ingestion.landing`): the batch's content
    fingerprint is looked up in the ledger, in each table's snapshot summaries and, for a
    stream neither knows (its snapshot expired), in the ``_airbyte_meta`` of the batch's first
    row in the table; a stream already committed with it is skipped, one committed with another
    fingerprint rejects the batch (a batch name is loaded once). Every file is read and validated, and aligned with its
    table, before anything is written: a bad file raises :class:`LandingRejected` with no table
    changed. Then each stream is appended in one Iceberg commit that carries the batch name and
    fingerprint in its snapshot summary; the commit asserts the table is still at the snapshot
    the fingerprint was looked up in. Last, the ledger records the batch as loaded.
    """
    from pyiceberg.exceptions import NoSuchTableError

    from shared import iceberg

    plan = plan_batch(files)
    listed = _listed(fs, root, batch, files)
    digests = {f: file_digest(fs, _join(root, f)) for f in listed.data_files}
    fingerprint = content_fingerprint(batch, digests)
    recorded = {r["fingerprint"] for r in read_ledger(fs, root, batch) if r.get("fingerprint")}
    for old in recorded - {fingerprint}:
        raise _reused(batch, str(old), fingerprint)
    committed: dict[str, bool] = {}
    for name in plan:
        try:
            table = catalog.load_table(STREAMS_BY_NAME[name].identifier)
        except NoSuchTableError:
            committed[name] = False
            continue
        old = committed_fingerprint(table, batch)
        if old is not None and old != fingerprint:
            raise _reused(batch, old, fingerprint)
        committed[name] = old == fingerprint or fingerprint in recorded

    # Pass 1: read and validate every file, chunk by chunk, keeping only what each file is.
    summaries: dict[str, list[FileSummary]] = {}
    schemas: dict[str, pa.Schema] = {}
    for name, stream_files in plan.items():
        stream = STREAMS_BY_NAME[name]
        table_schema = _table_schema(catalog, stream)
        summaries[name] = [
            _summarise(fs, root, batch, f, table_schema, extracted_at) for f in stream_files
        ]
        schemas[name] = _raw_schema(stream, summaries[name], table_schema)

    # A producer still writing (no _SUCCESS protocol for single files, or one not followed):
    # what was read is not what is there now, so nothing is committed and the batch stays.
    def unchanged() -> None:
        if _listed(fs, root, batch, files).stamps != listed.stamps:
            raise BatchChanged(
                f"landing batch {batch!r}: its files changed while they were read (still being "
                "written?); nothing was loaded"
            )

    unchanged()
    properties = {BATCH_PROPERTY: batch, FINGERPRINT_PROPERTY: fingerprint}

    # A stream the ledger and the snapshots kept do not know: its first row in the data says
    # whether the batch was committed (a kill before the ledger write, its snapshot expired
    # since), and with which content. Looked up for every stream before any is written, so a
    # reused name rejects the batch with no table changed.
    for name in plan:
        firsts = [raw_ids(batch, s.relative, 1)[0].as_py() for s in summaries[name] if s.rows]
        if not firsts or committed[name]:
            continue
        found = _loaded_with(catalog, STREAMS_BY_NAME[name], firsts)
        if found is None:
            continue
        for old in sorted(fp for fp in found if fp and fp != fingerprint):
            raise _reused(batch, old, fingerprint)
        committed[name] = True

    def precondition(table: Any) -> None:
        old = committed_fingerprint(table, batch)
        if old == fingerprint:
            raise _AlreadyCommitted
        if old is not None:
            raise _reused(batch, old, fingerprint)

    # Pass 2: per stream, the files are read again chunk by chunk into one streaming append
    # (memory bounded by a chunk and a data file, whatever the files' sizes): one commit.
    loads: dict[str, StreamLoad] = {}
    for name, stream_files in plan.items():
        stream = STREAMS_BY_NAME[name]
        table_schema = _table_schema(catalog, stream)
        files_summary = summaries[name]
        rows = sum(s.rows for s in files_summary)
        load = StreamLoad(
            stream=stream,
            files=[f.relative for f in stream_files],
            empty_files=[s.relative for s in files_summary if s.rows == 0],
            rows=rows,
            added=sorted({c for s in files_summary if s.rows for c in s.added}),
            missing=sorted({c for s in files_summary if s.rows for c in s.missing}),
            already_loaded=committed[name],
        )
        first = next((s for s in files_summary if s.rows), None)
        if first is not None and not load.already_loaded:
            chunks = _raw_chunks(fs, root, batch, stream_files, files_summary, table_schema,
                                 schemas[name], extracted_at, unchanged, fingerprint)  # fmt: skip
            try:
                load.write = iceberg.write_table(
                    catalog, stream.identifier, chunks, schema=schemas[name], mode="append",
                    snapshot_properties=properties, precondition=precondition,
                )  # fmt: skip
            except _AlreadyCommitted:
                load.already_loaded = True
        if load.write is None:
            try:
                table = catalog.load_table(stream.identifier)
                load.write = iceberg.describe_write(table, stream.identifier, 0)
            except NoSuchTableError:
                pass
        loads[name] = load
    snapshots = {load.stream.identifier: load.write.snapshot_id if load.write else None
                 for load in loads.values()}  # fmt: skip
    write_ledger(fs, root, listed, fingerprint, digests, snapshots)
    return loads


def record_synced(fs: Any, root: str, batch: str, files: Sequence[str],
                  connections: Sequence[str]) -> str:  # fmt: skip
    """Prod: record in the ledger that Airbyte synced ``batch`` (as listed now) successfully.
    No fingerprint: Airbyte's S3 source, not this package, read the files."""
    listed = _listed(fs, root, batch, files)
    return write_ledger(fs, root, listed, "", {}, {}, synced_by=list(connections))


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
            # A name already quarantined: a suffixed folder, cut to stay a legal file name.
            suffix = f".{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
            dest = _join(root, f"{REJECTED_DIR}/{batch[: 255 - len(suffix)]}{suffix}")
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
