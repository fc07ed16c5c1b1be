"""How a landing batch is loaded into the raw tables, or quarantined."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
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
from ingestion.landing.parse import ParsedFile, parse_file
from ingestion.streams import STREAMS_BY_NAME, RawStream

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

    from shared import iceberg

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
    """The file's rows with Airbyte's metadata columns, in the raw table's column order
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
        pa.array([0] * n, pa.int64()),  # _airbyte_generation_id: never refreshed
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
    """One table from the files of one stream (added columns unioned by name).

    An added column null in every row of every file (Parquet's null type), and not in the
    table yet, has no type Iceberg can store: it is kept as text, like jsonl and csv columns.
    """
    import pyarrow as pa

    if len(tables) == 1:
        out = tables[0]
    else:
        try:
            out = pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise LandingRejected(
                f"{stream.identifier}: the batch's files disagree on a column's type: {exc}",
                table=stream.identifier,
            ) from None
    for i, f in enumerate(out.schema):
        if pa.types.is_null(f.type):
            out = out.set_column(i, pa.field(f.name, pa.string()), out[f.name].cast(pa.string()))
    return out


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
    snapshot summaries, written in the same commit as the rows), or None."""
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


def _legacy_loaded(catalog: Catalog, stream: RawStream, first_raw_id: str) -> bool:
    """Whether a row with this (deterministic) raw id is in the table: how batches loaded
    before fingerprints were recorded (no ``landing.batch`` snapshot property) are recognised.
    Pushed down, so only files whose id bounds could hold it are read."""
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


def _listed(fs: Any, root: str, batch: str, files: Sequence[str]) -> Batch:
    stamps = {}
    for f in files:
        try:
            stamps[f] = stamp(fs.info(_join(root, f)))
        except FileNotFoundError:
            raise BatchChanged(f"landing batch {batch!r}: {f} vanished while loading") from None
    return Batch(batch, tuple(sorted(files)), stamps)


def load_batch(catalog: Catalog, fs: Any, root: str, batch: str, files: Sequence[str],
               extracted_at: dt.datetime) -> dict[str, StreamLoad]:  # fmt: skip
    """Load landing batch ``batch`` (``files`` relative to ``root``, the landing prefix).

    Exactly once, whatever is killed when (see :mod:`ingestion.landing`): the batch's content
    fingerprint is looked up in the ledger and in each table's snapshot summaries; a stream
    already committed with it is skipped, one committed with another fingerprint rejects the
    batch (a batch name is loaded once). Every file is read and validated, and aligned with its
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
            already_loaded=committed[name],
        )
        prepared[name] = (data, load)

    # A producer still writing (no _SUCCESS protocol for single files, or one not followed):
    # what was read is not what is there now, so nothing is committed and the batch stays.
    if _listed(fs, root, batch, files).stamps != listed.stamps:
        raise BatchChanged(
            f"landing batch {batch!r}: its files changed while they were read (still being "
            "written?); nothing was loaded"
        )

    properties = {BATCH_PROPERTY: batch, FINGERPRINT_PROPERTY: fingerprint}

    def precondition(table: Any) -> None:
        old = committed_fingerprint(table, batch)
        if old == fingerprint:
            raise _AlreadyCommitted
        if old is not None:
            raise _reused(batch, old, fingerprint)

    loads: dict[str, StreamLoad] = {}
    for name, (data, load) in prepared.items():
        stream = load.stream
        if data is not None and not load.already_loaded:
            if _legacy_loaded(catalog, stream, data["_airbyte_raw_id"][0].as_py()):
                load.already_loaded = True
            else:
                try:
                    load.write = iceberg.write_table(
                        catalog, stream.identifier, data, mode="append",
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
