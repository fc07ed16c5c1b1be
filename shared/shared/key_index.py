"""A hashed key index of a raw table: the look-ups of a sync's keys without reading all history.

Why: two steps of every sync compare the keys the sync added with every row of the raw table: the
moved-day look-up (``shared.changes.sync_changes``: the days of the added keys' earlier versions)
and the raw uniqueness check (a new ``_airbyte_raw_id`` repeating an old one). Raw keys are random
ids, so Iceberg's min/max pruning cannot skip a file, and reading, decoding and hashing millions of
36-character strings made both steps grow with the history (issue 11, docs/benchmarks.md).

What: per raw stream with a key, an Iceberg table ``raw_key_index.<table>`` (a namespace that is
no asset layer: ``shared.keys.NAMESPACES``) with one row per raw row:

* ``key_hash``: a 64-bit hash of the record key (``event_id``), null for a null key;
* ``raw_id_hash``: a 64-bit hash of Airbyte's record id ``_airbyte_raw_id``;
* ``event_day``: the UTC day of the event time (``shared.changes.utc_dates``);
* ``raw_snapshot_id``: the raw snapshot that added the row.

The hash (:func:`hash64`) is persisted, so it must not change with a library version: it is not
polars' or DuckDB's ``hash()`` but our own, written here because pyarrow has no stable hash
kernel: the UTF-8 bytes of a value as little-endian 64-bit words (the last one zero-padded),
folded into ``h = mix(seed ^ length)`` by ``h = mix(h ^ word)``, where ``mix`` is splitmix64's
finaliser (a bijection of 64-bit integers with full avalanche). Vectorised with numpy over the
Arrow buffers, values grouped by length. Its name (:data:`HASH_NAME`) is stored with the index;
an index made with another hash is not read, and is rebuilt.

Consistency without transactions across tables. The raw commit and the index commit are two
commits. The index carries a table property, :data:`MARKER` (``indexed-through-snapshot-id``):
the raw snapshot up to which, along raw's ancestry, every added row is indexed. Rows and marker
are committed in ONE index transaction (append + set properties), asserted against the index's
snapshot the catch-up was planned on:

* :func:`catch_up` (run by the sync right after its raw commit) indexes the rows of the raw
  snapshots after the marker (the data files those commits added, ``shared.changes``) and moves
  the marker to raw's current snapshot. A concurrent catch-up that commits first makes this one's
  commit fail: it reloads and plans again from the new marker, so no row is indexed twice and
  none is missed. A process killed between the raw commit and the index commit leaves the marker
  behind: the next catch-up (or a reader, see below) covers the gap.
* Readers as of a raw snapshot P read the index rows whose raw snapshot is P or an ancestor of
  P (rows of snapshots after P, a concurrent writer's, are left out), plus the unindexed tail:
  the rows added by raw snapshots between the marker and P, read from raw's added files directly
  (key columns only) and hashed the same way. In two steps: :func:`plan` (the index loaded and
  its marker checked once, its files and the tail's raw files listed) and :func:`scan` (those
  files read once for every hash column looked up: the uniqueness check looks up record ids and
  keys together, :func:`repeats`). :func:`lookup` is both for one column.
* An index that cannot answer for P (missing or unreadable; made for another table or with
  another hash; its marker unknown to raw or on another line of history; raw deleted rows since
  it was built or between the marker and P) is not used: the reader falls back to reading raw in
  full (correct, slower), and the next catch-up rebuilds it.
* Backfill: an existing deployment's raw table has no index; the first catch-up indexes the whole
  history once, file by file (the files live in raw's current snapshot, each tagged with the
  snapshot that added it). The same rebuild runs after raw deleted rows (a full refresh): the
  index then answers only for snapshots at or after that deletion (:data:`BASE`).
* The catch-up compacts the index by size tiers (:data:`COMPACT_FANOUT`) and deletes the files
  it replaced, so reading it opens a bounded number of files whatever the history; old index
  snapshots expire like a daily table's (``shared.iceberg.DAILY_TABLE_PROPERTIES``).

A hash match is only a CANDIDATE: two different keys may share a hash (about one pair in 2^64
per look-up). Where a false match only adds work it is used as it is: the moved-day look-up may
re-run one day too many (safe: a day re-run is idempotent). Where it could fail something, it is
confirmed on the raw data (:func:`confirmed_earlier`: the uniqueness check's ERROR reads the raw
files the candidates point to, and compares the ids themselves).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.changes import added_data_files, ancestry, is_replace, read_files

log = logging.getLogger(__name__)

#: The Iceberg namespace of the key indexes (no asset namespace: ``shared.keys.NAMESPACES``).
INDEX_NAMESPACE = "raw_key_index"
#: Index table property: the raw snapshot up to which (along raw's ancestry) every row is indexed.
MARKER = "indexed-through-snapshot-id"
#: Index table property: the newest raw snapshot that deleted rows when the index was (re)built
#: ("" when none did): the index answers for that snapshot and its descendants only.
BASE = "indexed-from-snapshot-id"
#: Index table property: the uuid of the raw table indexed (a table replaced under the same name
#: is another table).
RAW_UUID = "indexed-table-uuid"
#: Index table property: the name of the hash the index was built with.
HASH_PROPERTY = "key-hash"
#: The name of :func:`hash64`'s definition (change it if the definition ever changes).
HASH_NAME = "utf8-le64-splitmix64-v1"

KEY_HASH = "key_hash"
RAW_ID_HASH = "raw_id_hash"
DAY = "event_day"
SNAPSHOT = "raw_snapshot_id"

#: Size-tiered compaction of the index: data files whose row counts are within a factor of
#: ``COMPACT_FANOUT`` are one tier; once a tier holds that many files, the catch-up merges them
#: (with its new rows) into one file of the next tier. A row is rewritten about
#: log_F(rows / rows per sync) times, and the index keeps fewer than F files per tier (a
#: handful of tiers), whatever the history: a reader opens a bounded number of files.
COMPACT_FANOUT = 8

#: Snapshot expiry of the index table (it gets a commit per sync; see shared.iceberg).
_INDEX_PROPERTIES = {
    "history.expire.min-snapshots-to-keep": "8",
    "history.expire.max-snapshot-age-ms": str(60 * 60 * 1000),
}

HashFn = Callable[[Any], Any]


@dataclass(frozen=True)
class KeyIndexSpec:
    """Which raw table is indexed, and which of its columns are the key, the record id and the
    event time (the stream's business: ``ingestion.streams``)."""

    raw_identifier: str
    key_column: str
    raw_id_column: str
    day_column: str

    @property
    def identifier(self) -> str:
        """The index table: ``raw_key_index.<raw table name>``."""
        return index_identifier(self.raw_identifier)


def index_identifier(raw_identifier: str) -> str:
    """``raw.events`` gives ``raw_key_index.events``."""
    return f"{INDEX_NAMESPACE}.{raw_identifier.split('.', 1)[1]}"


# ---- the hash -----------------------------------------------------------------------------------

_SEED = 0x6B65_7969_6E64_6578  # "keyindex"
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
#: Rows hashed per numpy block (bounds the memory of one block to ~ rows x length x 9 bytes).
_BLOCK_ROWS = 1 << 16


def _mix(z: Any) -> Any:
    """splitmix64's finaliser, in place on a numpy uint64 array (wraps modulo 2^64)."""
    import numpy as np

    z ^= z >> np.uint64(30)
    z *= np.uint64(_C1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_C2)
    z ^= z >> np.uint64(31)
    return z


def hash64(values: Any) -> Any:
    """The stable 64-bit hash (Arrow int64, null for null) of each value of an Arrow string or
    binary array (see the module docstring for the definition; :data:`HASH_NAME`)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = values.view(
            pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary()
        )
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.int64())
    if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        raise TypeError(f"hash64 hashes strings or binaries, not {values.type}")
    n = len(values)
    if n == 0:
        return pa.array([], pa.int64())
    _, offsets_buf, data_buf = values.buffers()
    offset_type = np.int64 if pa.types.is_large_binary(values.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[values.offset : values.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    starts, lengths = offsets[:-1], np.diff(offsets)
    out = np.empty(n, dtype=np.uint64)
    if lengths.min() == lengths.max():
        groups = [np.arange(n)]  # one length (an id column): no sort
    else:
        order = np.argsort(lengths, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
    for group in groups:
        length = int(lengths[group[0]])
        for lo in range(0, len(group), _BLOCK_ROWS):
            rows = group[lo : lo + _BLOCK_ROWS]
            out[rows] = _hash_same_length(data, starts[rows], length)
    result = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(out.view(np.int64))])
    if values.null_count:
        import pyarrow.compute as pc

        result = pc.if_else(values.is_valid(), result, pa.scalar(None, pa.int64()))
    return result


def _hash_same_length(data: Any, starts: Any, length: int) -> Any:
    """The hashes (uint64) of the values of ``length`` bytes at ``starts`` in ``data``."""
    import numpy as np

    m = len(starts)
    h = np.full(m, (_SEED ^ length) & 0xFFFF_FFFF_FFFF_FFFF, dtype=np.uint64)
    _mix(h)
    if length == 0:
        return h
    words = (length + 7) // 8
    block = np.zeros((m, words * 8), dtype=np.uint8)
    if m > 1 and np.all(np.diff(starts) == length):
        # Contiguous values of one length (an id column): a reshape, no gather.
        block[:, :length] = data[starts[0] : starts[0] + m * length].reshape(m, length)
    else:
        block[:, :length] = data[starts[:, None] + np.arange(length)]
    little = block.view("<u8")  # explicit byte order: the same hash on any machine
    for k in range(words):
        h ^= little[:, k]
        _mix(h)
    return h


# ---- the index table ----------------------------------------------------------------------------


def index_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(KEY_HASH, pa.int64()),
            pa.field(RAW_ID_HASH, pa.int64()),
            pa.field(DAY, pa.date32()),
            pa.field(SNAPSHOT, pa.int64()),
        ]
    )


def hash_name(hash_fn: HashFn) -> str:
    """The name stored with an index built with ``hash_fn``."""
    return HASH_NAME if hash_fn is hash64 else getattr(hash_fn, "__name__", repr(hash_fn))


def _index_rows(
    batch: Any,
    spec: KeyIndexSpec,
    snapshot_id: int,
    hash_fn: HashFn,
    columns: Sequence[str] = (KEY_HASH, RAW_ID_HASH, DAY, SNAPSHOT),
) -> Any:
    """The index rows of a batch of raw rows: the index ``columns`` (all by default), each made
    from the raw column it needs only (key, record id, event time)."""
    import pyarrow as pa

    from shared.changes import utc_dates

    n = batch.num_rows
    make = {
        KEY_HASH: lambda: hash_fn(batch.column(spec.key_column)),
        RAW_ID_HASH: lambda: hash_fn(batch.column(spec.raw_id_column)),
        DAY: lambda: utc_dates(batch.column(spec.day_column)),
        SNAPSHOT: lambda: pa.array([snapshot_id] * n, pa.int64()),
    }
    return pa.table([make[c]() for c in columns], schema=_index_fields(columns))


def _index_fields(columns: Sequence[str]) -> Any:
    """The Arrow schema of these columns of the index."""
    import pyarrow as pa

    schema = index_schema()
    return pa.schema([schema.field(c) for c in columns])


def _indexable(raw: Any, spec: KeyIndexSpec) -> bool:
    names = raw.schema().column_names
    return all(c in names for c in (spec.key_column, spec.raw_id_column, spec.day_column))


def keeps_rows(snapshot: Any) -> bool:
    """Whether every row before ``snapshot`` is still there after it: it only added rows
    (:func:`append_only`), or it is a ``replace`` (a compaction rewrote files, rows unchanged:
    ``shared.compaction``), which adds no row either: the index needs nothing for it."""
    return is_replace(snapshot) or append_only(snapshot)


def _added_rows_files(raw: Any, snapshot: Any) -> list[Any]:
    """The data files holding the rows ``snapshot`` added: none for a ``replace`` (its files
    hold rows of earlier snapshots, indexed with those)."""
    return [] if is_replace(snapshot) else added_data_files(raw, snapshot)


def append_only(snapshot: Any) -> bool:
    """Whether ``snapshot`` only added rows (no file or row deleted)."""
    summary = snapshot.summary
    if summary is None:
        return False
    if summary.operation.value == "append":
        return True
    get = summary.additional_properties.get
    return all(
        int(get(k, "0") or 0) == 0
        for k in (
            "deleted-data-files",
            "deleted-records",
            "added-delete-files",
            "removed-files-size",
        )
    )


@dataclass(frozen=True)
class _State:
    marker: int | None
    base: int | None


def _trusted_state(index: Any, raw: Any, hash_fn: HashFn) -> _State | None:
    """The index's marker and base, or None when the index cannot describe ``raw``."""
    if index is None or index.current_snapshot() is None:
        return None
    props = index.properties
    if props.get(RAW_UUID) != str(raw.metadata.table_uuid):
        return None
    if props.get(HASH_PROPERTY) != hash_name(hash_fn):
        return None
    try:
        marker = int(props[MARKER])
        base = int(props[BASE]) if props.get(BASE) else None
    except (KeyError, ValueError):
        return None
    if raw.snapshot_by_id(marker) is None:
        return None  # raw expired or replaced the snapshot: it says nothing about raw now
    return _State(marker, base)


def _load_index(catalog: Any, spec: KeyIndexSpec) -> Any:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table(spec.identifier)
    except NoSuchTableError:
        return None


@dataclass(frozen=True)
class CatchUp:
    """What :func:`catch_up` did."""

    #: Index rows written (0 when the index was already up to date).
    rows_indexed: int
    #: Whether the whole index was (re)built: backfill, rebuild after raw deleted rows.
    rebuilt: bool
    #: The raw snapshot the index now covers (None: raw has no snapshot, nothing indexed).
    marker: int | None
    #: How many of the index's data files were merged with the new rows (compaction).
    compacted: int = 0


def catch_up(
    catalog: Any, spec: KeyIndexSpec, *, hash_fn: HashFn | None = None, attempts: int = 8
) -> CatchUp:
    """Index the raw rows added after the index's marker and move the marker to raw's current
    snapshot, in one index commit (retried, and planned again from the new marker, on a
    conflict with a concurrent catch-up). Builds the whole index when it is missing or cannot
    describe raw (module docstring)."""
    hash_fn = hash_fn or hash64  # looked up at call time: tests inject another
    from shared.iceberg import _retry_commit

    outcome: list[CatchUp] = []

    def attempt() -> None:
        outcome[:] = [_catch_up_once(catalog, spec, hash_fn)]

    _retry_commit(f"catch up {spec.identifier}", attempt, attempts)
    return outcome[0]


def _catch_up_once(catalog: Any, spec: KeyIndexSpec, hash_fn: HashFn) -> CatchUp:
    import pyarrow as pa

    raw = catalog.load_table(spec.raw_identifier)
    current = raw.current_snapshot()
    if current is None or not _indexable(raw, spec):
        return CatchUp(0, False, None)
    index = _load_index(catalog, spec)
    state = _trusted_state(index, raw, hash_fn)
    by_id = {s.snapshot_id: s for s in raw.metadata.snapshots}
    rebuild = state is None
    base = state.base if state is not None else None
    new: list[Any] = []
    if state is not None:
        if state.marker == current.snapshot_id:
            return CatchUp(0, False, state.marker)
        new, reached = ancestry(by_id, current.snapshot_id, state.marker)
        rebuild = not reached or not all(keeps_rows(s) for s in new)
    columns = (spec.key_column, spec.raw_id_column, spec.day_column)
    if rebuild:
        history, _ = ancestry(by_id, current.snapshot_id, None)
        # Also a compaction: the rows of its files are tagged with it (the snapshots that
        # added them cannot be told apart any more), so the index answers from it on.
        deleting = [s for s in history if not append_only(s)]
        base = deleting[0].snapshot_id if deleting else None
        files = _live_files(raw, current)
    else:
        files = [(f, s.snapshot_id) for s in reversed(new) for f in _added_rows_files(raw, s)]
    new_rows = sum(f.record_count for f, _ in files)
    merge = [] if rebuild or index is None else _to_merge(index, new_rows)
    written = 0

    def chunks() -> Iterator[pa.Table]:
        nonlocal written
        if merge:
            for batch in read_files(index, merge, index.schema().column_names):
                yield pa.Table.from_batches([batch]).cast(index_schema())
        by_snapshot = _group_files(files)
        for snapshot_id, group in by_snapshot:
            # One raw file at a time: a backfill reads the whole history.
            for batch in read_files(raw, group, columns, parallel=False):
                rows = _index_rows(batch, spec, snapshot_id, hash_fn)
                written += rows.num_rows
                yield rows

    properties = {
        MARKER: str(current.snapshot_id),
        BASE: str(base) if base is not None else "",
        RAW_UUID: str(raw.metadata.table_uuid),
        HASH_PROPERTY: hash_name(hash_fn),
    }
    replaced = _commit(catalog, spec, index, chunks(), properties, replace=rebuild, merge=merge)
    _delete_files(index, replaced)
    if rebuild:
        log.info("%s: built from %d raw files (%d rows)", spec.identifier, len(files), written)
    return CatchUp(written, rebuild, current.snapshot_id, len(merge))


def _tier(rows: int) -> int:
    tier = 0
    while rows >= COMPACT_FANOUT:
        rows //= COMPACT_FANOUT
        tier += 1
    return tier


def _to_merge(index: Any, new_rows: int) -> list[Any]:
    """The index's data files to merge with the new rows (the lowest tier that, with the new
    rows' file, holds :data:`COMPACT_FANOUT` files); none most of the time."""
    from collections import defaultdict

    tiers: dict[int, list[Any]] = defaultdict(list)
    for task in index.scan().plan_files():
        tiers[_tier(task.file.record_count)].append(task.file)
    new_tier = _tier(new_rows)
    for tier in sorted({*tiers, new_tier}):
        if len(tiers[tier]) + (tier == new_tier) >= COMPACT_FANOUT:
            return tiers[tier]
    return []


def _delete_files(index: Any, files: Sequence[Any]) -> None:
    """Delete the index's data files a commit replaced. Only the index's current snapshot is
    ever read, so nothing needs them (Iceberg's snapshot expiry keeps files; left, every
    compaction would leave its inputs on disk). A reader that planned the previous snapshot
    and now misses a file falls back to reading raw (:func:`scan`)."""
    for f in files:
        try:
            index.io.delete(f.file_path)
        except Exception as exc:  # already gone, or a store hiccup: an orphan, not an error
            log.info("%s: could not delete replaced index file: %s", f.file_path, exc)


def _group_files(files: Sequence[tuple[Any, int]]) -> list[tuple[int, list[Any]]]:
    out: list[tuple[int, list[Any]]] = []
    for f, snapshot_id in files:
        if out and out[-1][0] == snapshot_id:
            out[-1][1].append(f)
        else:
            out.append((snapshot_id, [f]))
    return out


def _live_files(raw: Any, snapshot: Any) -> list[tuple[Any, int]]:
    """The data files of ``snapshot`` with the snapshot that added each (from the manifests'
    entries: no data file is opened)."""
    from pyiceberg.manifest import DataFileContent

    out = []
    for manifest in snapshot.manifests(raw.io):
        for entry in manifest.fetch_manifest_entry(raw.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.DATA:
                out.append((entry.data_file, entry.snapshot_id))
    order = {s.snapshot_id: s.sequence_number or 0 for s in raw.metadata.snapshots}
    out.sort(key=lambda fs: (order.get(fs[1], 0), fs[0].file_path))
    return out


def _commit(
    catalog: Any,
    spec: KeyIndexSpec,
    index: Any,
    chunks: Iterable[Any],
    properties: dict[str, str],
    *,
    replace: bool,
    merge: Sequence[Any] = (),
) -> list[Any]:
    """One index commit: the rows (streamed, a data file per 128 MiB of rows) and the marker;
    ``replace``: instead of every row the index had, ``merge``: instead of those data files.
    Returns the data files the commit replaced.

    Adding files through a snapshot producer asserts that the index is still at the snapshot
    this was planned on (even with no rows to add), so a concurrent catch-up's commit makes this
    one fail instead of indexing rows twice."""
    import time
    import warnings

    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io import load_file_io

    from shared.iceberg import (
        MERGE_TABLE_PROPERTIES,
        TABLE_PROPERTIES,
        _append_streaming,
        _expired_snapshots,
        add_files_streaming,
        ensure_namespace,
    )

    # A catch-up per sync: manifests merged, as on every table; snapshots expired.
    wanted = {**MERGE_TABLE_PROPERTIES, **_INDEX_PROPERTIES}

    def batches() -> Iterator[Any]:
        for chunk in chunks:
            yield from chunk.to_batches()

    if index is None:
        ensure_namespace(catalog, INDEX_NAMESPACE)
        tx = catalog.create_table_transaction(
            spec.identifier,
            schema=index_schema(),
            properties={**TABLE_PROPERTIES, **wanted},
        )
        metadata = tx.table_metadata
        io = load_file_io({**catalog.properties, **metadata.properties}, metadata.location)
        with tx:
            _append_streaming(tx, io, batches(), {})
            tx.set_properties(properties)
        return []
    replaced = list(merge)
    if replace and index.current_snapshot() is not None:
        replaced = [task.file for task in index.scan().plan_files()]
    expired = _expired_snapshots(index, int(time.time() * 1000))
    with index.transaction() as tx:
        if expired:
            from pyiceberg.table.update.snapshot import ExpireSnapshots

            with ExpireSnapshots(tx) as expire:
                expire.by_ids(expired)
        if replace:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # an empty index: nothing to delete
                tx.delete(AlwaysTrue())
        if merge:
            with tx.update_snapshot().overwrite() as overwrite:
                for f in merge:
                    overwrite.delete_data_file(f)
                add_files_streaming(overwrite, tx, index.io, batches())
        else:
            _append_streaming(tx, index.io, batches(), {})
        # An index made before a property existed gets it here (the marker is set anyway).
        missing = {k: v for k, v in wanted.items() if k not in index.properties}
        tx.set_properties({**missing, **properties})
    return replaced


# ---- readers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What look-ups as of one raw snapshot read (:func:`plan`), planned once for any number of
    hash columns (:func:`scan`): the index's data files, which of its rows to leave out, and the
    raw files of the unindexed tail."""

    raw: Any
    spec: KeyIndexSpec
    hash_fn: HashFn
    #: The raw snapshot the look-ups answer for.
    snapshot_id: int
    #: The index table as loaded, and its current snapshot's data files (``FileScanTask``s).
    index: Any
    index_files: tuple[Any, ...]
    #: Raw snapshots after :attr:`snapshot_id` whose index rows are left out (the index is
    #: ahead of it: a later sync was indexed).
    after: frozenset[int]
    #: The unindexed tail: ``(raw snapshot id, the data files it added)``, oldest first.
    tail: tuple[tuple[int, tuple[Any, ...]], ...]


def plan(
    catalog: Any, raw: Any, spec: KeyIndexSpec, snapshot_id: int, *, hash_fn: HashFn | None = None
) -> Plan | None:
    """The plan of look-ups as of raw snapshot ``snapshot_id``: the index loaded once, its
    marker checked, its files listed, the unindexed raw files found. None when the index cannot
    answer for that snapshot (module docstring): read raw instead."""
    hash_fn = hash_fn or hash64  # looked up at call time: tests inject another
    if not _indexable(raw, spec):
        return None
    try:
        index = _load_index(catalog, spec)
        state = _trusted_state(index, raw, hash_fn)
    except Exception as exc:  # an unreadable index is no index: the reader falls back
        log.warning("%s cannot be read, reading raw instead: %s", spec.identifier, exc)
        return None
    if state is None:
        return None
    by_id = {s.snapshot_id: s for s in raw.metadata.snapshots}
    if snapshot_id not in by_id:
        return None
    tail, reached = ancestry(by_id, snapshot_id, state.marker)
    after: set[int] = set()
    if not reached:
        # The index is ahead of P (a later sync was indexed): leave its rows out.
        ahead, reached = ancestry(by_id, state.marker, snapshot_id)
        if not reached:
            return None  # P is on no line of history the index covers
        after = {s.snapshot_id for s in ahead}
        tail = []
        if state.base is not None and state.base in after:
            return None  # built after a deletion later than P: P's deleted rows are missing
    if not all(keeps_rows(s) for s in tail):
        return None  # raw deleted rows since the index was built: the next catch-up rebuilds
    try:
        index_files = tuple(index.scan().plan_files())
    except Exception as exc:
        log.warning("%s cannot be read, reading raw instead: %s", spec.identifier, exc)
        return None
    return Plan(
        raw=raw,
        spec=spec,
        hash_fn=hash_fn,
        snapshot_id=snapshot_id,
        index=index,
        index_files=index_files,
        after=frozenset(after),
        tail=tuple((s.snapshot_id, tuple(_added_rows_files(raw, s))) for s in reversed(tail)),
    )


def scan(plan: Plan, wanted: Mapping[str, Any], *, day: bool = False) -> dict[str, Any] | None:
    """For each hash column in ``wanted`` (:data:`KEY_HASH`, :data:`RAW_ID_HASH`), the planned
    rows whose value in it is one of its hashes (an Arrow int64 array): an Arrow table of that
    column, :data:`DAY` (with ``day``) and :data:`SNAPSHOT`, one row per matching raw row
    (candidates: module docstring). None when the index cannot be read: read raw instead.

    The index files are read ONCE for all the columns, only the columns asked for (reading the
    index is most of a look-up's cost); so is each raw file of the tail, hashed the same way.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    spec = plan.spec
    wanted = {c: pc.unique(w.drop_null()).cast(pa.int64()) for c, w in wanted.items()}
    extra = [DAY, SNAPSHOT] if day else [SNAPSHOT]
    columns = [*wanted, *extra]
    try:
        batches = read_files(plan.index, plan.index_files, columns)
        found = _semi_joins(batches, wanted, extra)
    except Exception as exc:  # e.g. a file a concurrent compaction deleted after the plan
        log.warning("%s cannot be read, reading raw instead: %s", spec.identifier, exc)
        return None
    if plan.after:
        after = pa.array(sorted(plan.after), pa.int64())
        found = {
            c: t.filter(pc.invert(pc.is_in(t[SNAPSHOT], value_set=after))) for c, t in found.items()
        }
    parts = {c: [t] for c, t in found.items()}
    needed = {
        spec.key_column: KEY_HASH in wanted,
        spec.raw_id_column: RAW_ID_HASH in wanted,
        spec.day_column: day,
    }
    raw_columns = [name for name, need in needed.items() if need]
    for snapshot_id, files in plan.tail:
        for batch in read_files(plan.raw, files, raw_columns, parallel=False):
            rows = _index_rows(batch, spec, snapshot_id, plan.hash_fn, columns)
            for c, hashes in wanted.items():
                match = rows.filter(pc.is_in(rows[c], value_set=hashes))
                parts[c].append(match.select([c, *extra]))
    return {c: pa.concat_tables(tables) for c, tables in parts.items()}


#: Index rows semi-joined at a time by :func:`_semi_joins` for several columns (about 30 MB).
_JOIN_ROWS = 1 << 20


def _semi_joins(batches: Iterable[Any], wanted: Mapping[str, Any], extra: list[str]) -> Any:
    """For each column in ``wanted``, the rows of ``batches`` whose value in it is one of
    ``wanted[column]`` (that column and ``extra``): Arrow (Acero) hash semi-joins, the wanted
    values' hash table built once (as ``shared.changes.earlier_versions``).

    One column (the sync's look-up): the rows stream through one join. Several (the uniqueness
    check's): an Acero node has one consumer, so the rows cannot stream into two joins at once;
    they are joined in chunks of :data:`_JOIN_ROWS` rows, each chunk with every column (a hash
    table per chunk and column), so one read of the rows serves every column while memory holds
    one chunk. Measured slower for several columns (docs/benchmarks.md, "Raw uniqueness check:
    one plan, one scan"): ``is_in`` per batch (it builds the hash set again for every batch),
    and one stream through two left outer joins and a filter."""
    import itertools

    import pyarrow as pa
    from pyarrow import acero

    out: dict[str, list[Any]] = {c: [] for c in wanted}
    if len(wanted) == 1:
        [(column, values)] = wanted.items()
        names = [c for c in index_schema().names if c in (column, *extra)]  # as read
        schema = _index_fields(names)
        reader = pa.RecordBatchReader.from_batches(schema, (b.cast(schema) for b in batches))
        source = acero.Declaration(
            "record_batch_reader_source", acero.RecordBatchReaderSourceNodeOptions(reader)
        )
        out[column].append(_semi_join(source, column, values).select([column, *extra]))
    else:
        chunk: list[Any] = []
        rows = 0
        for batch in itertools.chain(batches, [None]):  # None: the end
            if batch is not None:
                chunk.append(batch)
                rows += batch.num_rows
            if chunk and (batch is None or rows >= _JOIN_ROWS):
                table = pa.concat_tables(
                    [pa.Table.from_batches([b]) for b in chunk], promote_options="permissive"
                )
                for column, values in wanted.items():
                    source = acero.Declaration(
                        "table_source",
                        acero.TableSourceNodeOptions(table.select([column, *extra])),
                    )
                    out[column].append(_semi_join(source, column, values))
                chunk, rows = [], 0
    result = {}
    for column, tables in out.items():
        schema = _index_fields([column, *extra])
        result[column] = pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()
    return result


def _semi_join(source: Any, column: str, values: Any) -> Any:
    """The rows of the Acero ``source`` whose ``column`` is one of ``values``."""
    import pyarrow as pa
    from pyarrow import acero

    keys = acero.Declaration(
        "table_source", acero.TableSourceNodeOptions(pa.table({column: values}))
    )
    join = acero.Declaration(
        "hashjoin",
        acero.HashJoinNodeOptions("left semi", left_keys=[column], right_keys=[column]),
        inputs=[source, keys],
    )
    return join.to_table(use_threads=True)


def lookup(
    catalog: Any,
    raw: Any,
    spec: KeyIndexSpec,
    snapshot_id: int,
    column: str,
    wanted: Any,
    *,
    hash_fn: HashFn | None = None,
) -> Any:
    """The index rows, as of raw snapshot ``snapshot_id``, whose ``column`` (:data:`KEY_HASH` or
    :data:`RAW_ID_HASH`) is one of the hashes ``wanted`` (an Arrow int64 array): an Arrow table
    of ``column``, :data:`DAY` (for :data:`KEY_HASH` only) and :data:`SNAPSHOT`, one row per
    matching raw row (candidates: see the module docstring). None when the index cannot answer
    for that snapshot: read raw instead.

    The rows of the index's snapshot whose raw snapshot is ``snapshot_id`` or an ancestor of it,
    plus the unindexed tail (raw snapshots after the marker up to ``snapshot_id``), hashed from
    raw's added files: :func:`plan`, then :func:`scan` of the one column."""
    planned = plan(catalog, raw, spec, snapshot_id, hash_fn=hash_fn)
    if planned is None:
        return None
    found = scan(planned, {column: wanted}, day=column == KEY_HASH)
    return None if found is None else found[column]


def earlier_versions(
    catalog: Any,
    raw: Any,
    spec: KeyIndexSpec,
    snapshot_id: int,
    keys: Any,
    day_column: str,
    *,
    hash_fn: HashFn | None = None,
) -> Any:
    """``shared.changes.earlier_versions`` answered from the index: the ``(key, __day)`` of the
    versions, as of ``snapshot_id``, of the keys in ``keys`` (an Arrow table of the key column).

    Matches are by hash: a key whose hash another key shares gets that key's days too (about
    one in 2^64 per pair): a day re-run more, never one missed. Falls back to reading raw when
    the index cannot answer (:func:`lookup`)."""
    hash_fn = hash_fn or hash64  # looked up at call time: tests inject another
    import pyarrow as pa
    import pyarrow.compute as pc

    from shared import changes

    names = list(keys.column_names)
    if names != [spec.key_column] or day_column != spec.day_column:
        return changes.earlier_versions(raw, snapshot_id, keys, day_column)
    distinct = pc.unique(keys.column(0).drop_null())
    hashes = hash_fn(distinct)
    found = lookup(catalog, raw, spec, snapshot_id, KEY_HASH, hashes, hash_fn=hash_fn)
    if found is None:
        return changes.earlier_versions(raw, snapshot_id, keys, day_column)
    pairs = pa.table({spec.key_column: distinct, KEY_HASH: hashes})
    matched = pairs.join(found.select([KEY_HASH, DAY]), KEY_HASH, join_type="inner")
    out = pa.table(
        [matched[spec.key_column], matched[DAY]],
        names=[spec.key_column, changes._DAY],  # noqa: SLF001 (the shape changes expects)
    )
    return out.cast(pa.schema([keys.schema.field(0), pa.field(changes._DAY, pa.date32())]))


def confirmed_earlier(
    catalog: Any,
    raw: Any,
    spec: KeyIndexSpec,
    snapshot_id: int,
    values: Any,
    *,
    hash_fn: HashFn | None = None,
) -> Any:
    """The record ids among ``values`` (an Arrow array of ``spec.raw_id_column`` values) that a
    row of raw as of ``snapshot_id`` holds, CONFIRMED: the index gives candidates (hash
    matches) and the raw snapshot that added each; only the files those snapshots added are
    read, and the ids themselves compared. None when the index cannot answer."""
    found = repeats(catalog, raw, spec, snapshot_id, values, None, hash_fn=hash_fn)
    return None if found is None else found.raw_ids


def candidate_keys(
    catalog: Any,
    raw: Any,
    spec: KeyIndexSpec,
    snapshot_id: int,
    values: Any,
    *,
    hash_fn: HashFn | None = None,
) -> Any:
    """The distinct keys among ``values`` whose hash a row of raw as of ``snapshot_id`` holds
    (candidates, not confirmed: for counts reported as information). None when the index
    cannot answer."""
    found = repeats(catalog, raw, spec, snapshot_id, None, values, hash_fn=hash_fn)
    return None if found is None else found.keys


@dataclass(frozen=True)
class Repeats:
    """What :func:`repeats` found in raw as of a snapshot (None where not asked)."""

    #: The distinct record ids asked about that a row holds, confirmed on raw.
    raw_ids: Any
    #: The distinct keys asked about whose hash a row holds (candidates, not confirmed).
    keys: Any


def repeats(
    catalog: Any,
    raw: Any,
    spec: KeyIndexSpec,
    snapshot_id: int,
    raw_ids: Any,
    keys: Any,
    *,
    hash_fn: HashFn | None = None,
) -> Repeats | None:
    """:func:`confirmed_earlier` of ``raw_ids`` and :func:`candidate_keys` of ``keys`` (Arrow
    arrays; None: not asked) from ONE :func:`plan` and ONE :func:`scan` (both hash columns read
    together): the raw uniqueness check's look-ups. None when the index cannot answer."""
    hash_fn = hash_fn or hash64  # looked up at call time: tests inject another
    import pyarrow.compute as pc

    planned = plan(catalog, raw, spec, snapshot_id, hash_fn=hash_fn)
    if planned is None:
        return None
    ids = pc.unique(raw_ids.drop_null()) if raw_ids is not None else None
    distinct = pc.unique(keys.drop_null()) if keys is not None else None
    key_hashes = hash_fn(distinct) if distinct is not None else None
    wanted = {}
    if ids is not None:
        wanted[RAW_ID_HASH] = hash_fn(ids)
    if distinct is not None:
        wanted[KEY_HASH] = key_hashes
    found = scan(planned, wanted)
    if found is None:
        return None
    confirmed = None
    if ids is not None:
        confirmed = _confirmed(planned, ids, found[RAW_ID_HASH])
        if confirmed is None:
            return None
    candidates = None
    if distinct is not None:
        candidates = distinct.filter(pc.is_in(key_hashes, value_set=found[KEY_HASH][KEY_HASH]))
    return Repeats(raw_ids=confirmed, keys=candidates)


def _confirmed(plan: Plan, ids: Any, found: Any) -> Any:
    """The ``ids`` (distinct record ids) that raw holds, of the candidates ``found`` (index rows
    matching their hashes): the raw files holding the rows of the snapshots the candidates name
    are read (:func:`_files_holding`) and the ids compared."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if found.num_rows == 0:
        return pa.array([], ids.type)
    raw, column = plan.raw, plan.spec.raw_id_column
    files = _files_holding(raw, plan.snapshot_id, set(found[SNAPSHOT].to_pylist()))
    confirmed = []
    if files:
        for batch in read_files(raw, files, (column,), parallel=False):
            values = batch.column(0)
            confirmed.append(pc.filter(values, pc.is_in(values, value_set=ids.cast(values.type))))
    if not confirmed:
        return pa.array([], ids.type)
    return pc.unique(pa.chunked_array(confirmed, confirmed[0].type).combine_chunks()).cast(ids.type)


def _files_holding(raw: Any, snapshot_id: int, added_by: set[int]) -> list[Any]:
    """Raw data files that hold every row (as of ``snapshot_id``) added by the snapshots
    ``added_by`` (the index's pointers), read from manifests only.

    A pointer still in raw's metadata: the files it added, where they were written (a
    compaction since rewrote their rows elsewhere, but the snapshot still lists them, so they
    are on storage). A pointer that expired: the files of ``snapshot_id`` that it added (never
    compacted: their entries keep its id), and those a compaction (``replace``) or another
    expired snapshot added, since the rows may have been rewritten there (a superset: the ids
    are compared, so it costs reads, never a wrong answer)."""
    from pyiceberg.manifest import DataFileContent

    by_id = {s.snapshot_id: s for s in raw.metadata.snapshots}
    files: dict[str, Any] = {}
    for pointer in sorted(p for p in added_by if p in by_id):
        for f in added_data_files(raw, by_id[pointer]):
            files[f.file_path] = f
    expired = {p for p in added_by if p not in by_id}
    if expired:
        snapshot = by_id[snapshot_id]
        for manifest in snapshot.manifests(raw.io):
            for entry in manifest.fetch_manifest_entry(raw.io, discard_deleted=True):
                adder = by_id.get(entry.snapshot_id)
                if entry.data_file.content == DataFileContent.DATA and (
                    entry.snapshot_id in expired or adder is None or is_replace(adder)
                ):
                    files.setdefault(entry.data_file.file_path, entry.data_file)
    return list(files.values())
