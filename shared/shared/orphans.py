"""Orphan-file clean-up: delete the files under a table's location that no metadata references.

Why: snapshot expiry (``shared.maintenance``) changes metadata only and deletes no file, so
without this a table's storage grows with its history: the inputs of every compaction
(``shared.compaction``), the file of every re-run day of a daily table (an overwrite writes a new
file, the old one stays), every metadata JSON of every commit, the manifests and manifest lists
of expired snapshots, and the files of writes that failed or were killed before their commit.

pyiceberg 0.12 (our pin) has no orphan-file removal (upstream: apache/iceberg-python issue 1200
and its pull requests, not released), so :func:`remove_orphan_files` is written here, after
Iceberg's ``DeleteOrphanFiles`` action (Spark's and Trino's ``remove_orphan_files``): list the
table's folders, subtract every file its metadata references, delete what is left AND older
than ``older_than`` (default 3 days, ``shared.settings.orphan_min_age_hours``).

Listed: the files under ``<location>/data/`` and ``<location>/metadata/``, where pyiceberg,
Trino and Iceberg Java write all of a table's files (plus the folders ``write.data.path`` and
``write.metadata.path`` name, when under the location: :func:`table_folders`), never the rest
of the location, which may hold other tables' folders (a table at ``<warehouse>/raw`` holds
``raw.users``'s). Each folder ends with a separator (cleaning ``raw.event`` never touches
``raw.events``). Listed through the table's own FileIO (pyarrow's ``FileSelector`` for
``PyArrowFileIO``, the local default; fsspec's ``find`` for ``FsspecFileIO``, which prod uses
against Garage), with sizes and modification times. As Iceberg does, hidden paths (a folder or
file whose name starts with ``.`` or ``_``, unless it is a ``name=value`` partition folder) are
never considered. Paths are compared without their scheme (``s3://``, ``s3a://`` and a bare
``bucket/key`` are one file).

Deleted through the table's FileIO too (:func:`delete_files`): over S3 with ``FsspecFileIO``
(prod) in batches, one ``DeleteObjects`` request per 1,000 files rather than one request per
file, each file's outcome read from the response; local files and ``PyArrowFileIO`` one by one.

Refused, nothing deleted (:class:`OrphanCleanupError` naming the table):

* a location that is the catalog's warehouse or above it, a bucket or a bucket's top folder, or
  a local path of fewer than two folders (:func:`check_location`);
* another table of the same namespace in the catalog writing its files where this one's are:
  its location equal to this one's (a table renamed and re-created at its default location),
  or its location or data or metadata folder at or under this one's listed folders
  (:func:`check_neighbours`; one metadata read per table of the namespace);
* a metadata file of another table (another ``table-uuid``) among those read: the versions
  read for readers (below) and, before deleting, every ``*.metadata.json`` planned for
  deletion (an old version of a table sharing the folders, of any namespace; few a day after
  the first run). A file planned that does not parse (a failed commit's) is no version;
* a listing that holds another table's metadata file outside the metadata folders (a table
  nested in this one's folders), or that lacks a file of the current metadata that must exist:
  its metadata file, the manifest lists and manifests of all its snapshots (read to plan) and
  its current snapshot's data and delete files (:func:`check_listing`; older snapshots' data
  files may legitimately be gone: the key index deletes what it replaced). A listing that
  names files differently from the metadata (a scheme, an encoding) would otherwise make
  every live file look unreferenced.

Referenced (kept), as Iceberg's action counts it, from the table's CURRENT metadata:

* the current metadata file and every file of its metadata log;
* for EVERY snapshot it holds (all branches and tags, not only the current one): its manifest
  list, the manifests that list names, and their live entries' data AND delete files (entries
  ADDED or EXISTING). An entry with status DELETED records a file that snapshot removed: that
  file is live in the snapshot's parent, and referenced as long as that parent is kept; once the
  parent is expired nothing can read it (Iceberg's expiry deletes such files too);
* the statistics and partition-statistics files.

One addition to Iceberg's rule, for readers (below): what every version of the table current
within ``older_than`` references is kept too. Those versions are the metadata files in the
listing modified within the age (the clean-up never deletes them, they are young) and, in each
of their metadata logs and the current one's, the versions superseded within the age (the one
current when the age began). A metadata file modified within the age that does not parse as
a version (a failed or half-written commit's), or is gone since the listing, is skipped with a
warning; any other failure to read one (a timeout, a 503, a permission) refuses the table,
nothing deleted (its files cannot be known). A file listed without a time is taken as written
within the age (read, never deleted). In a version read for its readers (not the current
metadata), a manifest list or manifest that is gone is skipped with a warning: another
engine's ``expire_snapshots`` (Trino's, Spark's) deletes the expired snapshots' files, and
there is nothing left to protect.

Why the age matters (a file is deleted only once its modification time is older than
``older_than``, and a version of the table current within that time keeps its files):

* a writer writes its data files, manifests and a new metadata file BEFORE its commit makes the
  catalog point at them: until then they look like orphans. A landing, a sync, a dbt model's
  store or a compaction (``shared.compaction`` writes its output, then commits) in progress;
* a reader that planned a table reads the planned files in place after planning: a dbt run's
  DuckDB views read the data files of the snapshot planned at the start of the run
  (``transformation.duckdb_iceberg.scan_sql``), a query in flight reads an old snapshot. Expiry
  may meanwhile remove that snapshot, and a file only it listed becomes unreferenced at once,
  however old the file: so the versions of the table current within the age keep their files,
  however many commits came since (the current metadata log keeps only
  ``write.metadata.previous-versions-max`` = 16 versions: a backfill's overwrites outrun it,
  the metadata files written within the age do not).

Concurrency (any process can be killed, runs overlap):

* planning reads the table's metadata; right before deleting, the table is loaded again and, if
  it moved, the files to delete are checked against the new metadata: a commit in between that
  references one of them (a writer committing files it wrote long ago, ``add_files``) keeps it.
  A commit after that check can only reference a file older than the age that no metadata
  referenced: a write slower than the age, which the age excludes by definition (Iceberg's rule);
* files written after the listing are not in it, so never deleted by this run;
* two clean-ups overlapping delete the same files: a file already gone is counted as such, not
  an error (on S3, which reports a key that does not exist as deleted, both count it deleted);
  expiry meanwhile only makes more files unreferenced (the next clean-up takes them);
* killed half-way: what was deleted was unreferenced; the next run deletes the rest.
* metadata that cannot be read (a manifest list or manifest of the current metadata missing
  or corrupt, a version written within the age that fails to read), or a listing that
  fails: :class:`OrphanCleanupError` naming the table, nothing deleted (an unreadable
  manifest may reference any file). A file that cannot be deleted: the others are, then the
  same error names the table and the count.

What else refers to files under a table's location, outside its Iceberg metadata (checked):

* a write's ``metadata_location`` in the materialization metadata Dagster keeps
  (``shared.iceberg.TableWriteResult``) and in ``data-platform tables``: information about that
  write, not a reference anyone reads through. An old one stops resolving once its metadata
  file is older than the age and out of the metadata log of every version current within it;
* the DuckDB views of a dbt run (in-memory, one per invocation): readers, above;
* nothing else: the landing ledger lives under ``landing/``, the key index keeps a snapshot id
  (kept by the expiry), the benchmark's and dbt's scratch files are in their own folders.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

#: How many orphan paths the result keeps for the op's metadata (a run may find thousands).
SAMPLE_PATHS = 20
#: The modification time of a file the store listed without one: far in the future, so the
#: file is never old enough to delete (an age is never guessed).
UNKNOWN_MTIME_MS = 2**62
#: Table properties naming the folder of its data files (Iceberg's ``write.data.path`` and
#: its older names) or of its metadata files (``write.metadata.path``) instead of the
#: location's ``data`` and ``metadata``.
PATH_PROPERTIES = (
    "write.data.path",
    "write.object-storage.path",
    "write.folder-storage.path",
    "write.metadata.path",
)


class OrphanCleanupError(RuntimeError):
    """Files could not be listed, read or deleted; the message names the table and the count."""


@dataclass(frozen=True)
class ListedFile:
    """A file under a table's location, as the object store lists it."""

    #: Where to delete it (a URI the table's FileIO takes).
    uri: str
    size: int
    #: Modification time, milliseconds since the epoch (UTC); :data:`UNKNOWN_MTIME_MS` when
    #: the store gave none (or the epoch itself: ``rclone serve s3`` lists some just-written
    #: objects so to pyarrow), which is never old enough.
    mtime_ms: int


@dataclass(frozen=True)
class OrphanCleanup:
    """What :func:`remove_orphan_files` found and did for one table."""

    identifier: str
    exists: bool = True
    dry_run: bool = False
    #: Files (and bytes) under the table's location.
    files: int = 0
    bytes: int = 0
    #: Unreferenced files old enough to delete: deleted, or would be in a dry run. Sorted URIs.
    orphans: tuple[str, ...] = ()
    orphan_bytes: int = 0
    #: Of those, deleted by this run (0 in a dry run), and their bytes.
    deleted: int = 0
    deleted_bytes: int = 0
    #: Unreferenced files younger than the age, kept (a write in progress, or too recent).
    too_young: int = 0
    too_young_bytes: int = 0
    #: Unreferenced by the current metadata, but by a version current within the age: kept
    #: for the readers that may have planned it (module docstring).
    kept_for_readers: int = 0
    #: Planned for deletion, but a commit meanwhile referenced them: kept.
    referenced_meanwhile: int = 0
    #: Planned for deletion, but already gone (another clean-up deleted them first). On S3,
    #: which reports a key that does not exist as deleted, counted in ``deleted``.
    already_gone: int = 0
    #: Metadata files read to know what is referenced (current, old versions, manifest lists,
    #: manifests): the clean-up's own cost besides the listing.
    metadata_read: int = 0
    failed: tuple[str, ...] = field(default=(), repr=False)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "table": self.identifier,
            "exists": self.exists,
            "dry_run": self.dry_run,
            "files": self.files,
            "bytes": self.bytes,
            "orphans": len(self.orphans),
            "orphan_bytes": self.orphan_bytes,
            "deleted": self.deleted,
            "deleted_bytes": self.deleted_bytes,
            "too_young": self.too_young,
            "too_young_bytes": self.too_young_bytes,
            "kept_for_readers": self.kept_for_readers,
            "referenced_meanwhile": self.referenced_meanwhile,
            "already_gone": self.already_gone,
            "sample": list(self.orphans[:SAMPLE_PATHS]),
        }


def path_key(uri: str) -> str:
    """A file's location without its scheme: ``bucket/key`` for object stores, the absolute
    path for local files (how both FileIOs' listings name files, and how references compare)."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    return PyArrowFileIO.parse_location(uri)[2]


def _hidden(relative: str) -> bool:
    """Iceberg's hidden-path rule: a path part starting with ``_`` or ``.`` (not a partition
    folder ``name=value``) is not the table's: never listed as an orphan."""
    return any(part[:1] in ("_", ".") and "=" not in part for part in relative.split("/"))


def _to_ms(value: Any) -> int:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def list_files(io: Any, location: str) -> dict[str, ListedFile]:
    """Every file under the folder ``location`` (only what is under ``location`` + ``/``), by
    :func:`path_key`, listed through ``io``'s own filesystem (module docstring)."""
    scheme, netloc, base = _parse(io, location)
    base = base.rstrip("/")
    prefix = base + "/"
    found: dict[str, ListedFile] = {}

    def add(path: str, size: int, mtime_ms: int | None) -> None:
        if not path.startswith(prefix) or _hidden(path[len(prefix) :]):
            return
        if not mtime_ms or mtime_ms <= 0:  # never guess an age: never old enough
            mtime_ms = UNKNOWN_MTIME_MS
        uri = path if scheme == "file" else f"{scheme}://{path}"
        found[path] = ListedFile(uri, size, mtime_ms)

    if hasattr(io, "fs_by_scheme"):  # PyArrowFileIO
        from pyarrow.fs import FileSelector, FileType

        fs = io.fs_by_scheme(scheme, netloc)
        selector = FileSelector(base, recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type == FileType.File:
                add(info.path, info.size or 0, (info.mtime_ns or 0) // 1_000_000)
    elif hasattr(io, "get_fs"):  # FsspecFileIO
        fs = io.get_fs("file" if scheme == "file" else scheme)
        fs.invalidate_cache(base)  # s3fs caches listings: this must be the store's, now
        try:
            listing = fs.find(base, detail=True, withdirs=False)
        except FileNotFoundError:
            listing = {}
        for path, info in listing.items():
            stamp = info.get("LastModified", info.get("mtime", info.get("created")))
            add(path if scheme != "file" else path_key(path), int(info.get("size") or 0),
                None if stamp is None else _to_ms(stamp))  # fmt: skip
    else:
        raise OrphanCleanupError(f"cannot list files with {type(io).__name__}")
    return found


def _parse(io: Any, location: str) -> tuple[str, str, str]:
    from pyiceberg.io.pyarrow import PyArrowFileIO

    scheme, netloc, path = PyArrowFileIO.parse_location(location)
    return ("file" if scheme == "file" else scheme), netloc, path


def _folder_key(uri: str) -> str:
    return path_key(uri).rstrip("/")


def _under(key: str, folder_key: str) -> bool:
    return key.startswith(folder_key + "/")


@dataclass(frozen=True)
class TableFolders:
    """Where a table's files are written, hence what the clean-up lists (module docstring)."""

    #: The folders to list (URIs), none under another.
    roots: tuple[str, ...]
    #: Of those, the folders its metadata files are written to (:func:`path_key`).
    metadata: frozenset[str]

    def holds(self, key: str) -> bool:
        """Whether the listing of :attr:`roots` names the file ``key`` (not a hidden one)."""
        for root in map(_folder_key, self.roots):
            if _under(key, root):
                return not _hidden(key[len(root) + 1 :])
        return False


def table_folders(metadata: Any) -> TableFolders:
    """``<location>/data`` and ``<location>/metadata``, where pyiceberg, Trino and Iceberg Java
    write a table's files, plus the folders the table's properties name instead
    (:data:`PATH_PROPERTIES`) when they are under its location (one outside it may be shared
    with other tables: never listed)."""
    location = metadata.location.rstrip("/")
    base = _folder_key(location)
    data, meta = f"{location}/data", f"{location}/metadata"
    folders = [data, meta]
    meta_keys = {_folder_key(meta)}
    for prop in PATH_PROPERTIES:
        value = (metadata.properties.get(prop) or "").rstrip("/")
        if value and _under(_folder_key(value), base):
            folders.append(value)
            if prop == "write.metadata.path":
                meta_keys.add(_folder_key(value))
    keys = {_folder_key(f): f for f in folders}
    roots = tuple(f for k, f in keys.items() if not any(_under(k, other) for other in keys))
    return TableFolders(roots, frozenset(meta_keys))


def check_location(identifier: str, location: str, warehouse: str | None) -> None:
    """Refuse (:class:`OrphanCleanupError`, before anything is listed) a table location that
    cannot be a table's own folder: the catalog's warehouse or a folder above it (the
    catalog's ``warehouse`` property when it is a location: local mode's folder, prod's
    ``s3://bucket/prefix``; a REST catalog may give a warehouse NAME, then only the next rule
    holds), a bucket or one folder of it, or a local path of fewer than two folders. Such a
    location holds other tables' folders (``raw``, ``data`` or ``metadata`` may be namespaces)."""
    scheme, _, _ = _parse(None, location)
    key = _folder_key(location)
    depth = len([p for p in key.split("/") if p]) - (0 if scheme == "file" else 1)
    if depth < 2:
        raise OrphanCleanupError(
            f"{identifier}: its location {location} is a bucket, a folder of one or the root "
            "of a disk (fewer than 2 folders deep), where other tables live: nothing deleted"
        )
    if warehouse and ("://" in warehouse or warehouse.startswith("/")):
        top = _folder_key(warehouse)
        if key == top or _under(top, key):
            raise OrphanCleanupError(
                f"{identifier}: its location {location} is the catalog's warehouse {warehouse} "
                "or a folder above it, where other tables live: nothing deleted"
            )


def check_listing(
    identifier: str, listed: dict[str, ListedFile], folders: TableFolders, live: Iterable[str]
) -> None:
    """Refuse (:class:`OrphanCleanupError`) to delete anything from a listing that

    * holds a metadata file outside the table's metadata folders: another table's, nested
      under this one's (a table at ``<warehouse>/raw`` and one at ``<warehouse>/raw/data``);
    * lacks a file of the table's current metadata that must exist (``live``: its metadata
      file, the manifest lists and manifests of all its snapshots, read to plan, and its
      current snapshot's data and delete files) that is in the listed folders: the listing
      and the metadata name files differently (a scheme, an encoding, a double slash), and
      every file of the table would look unreferenced. Not required: the metadata log's files
      and older snapshots' data files, which may legitimately be gone (the key index deletes
      the files it replaced at once, another engine's expiry may be half-way)."""
    for key in listed:
        parent = key.rsplit("/", 1)[0]
        if key.endswith(".metadata.json") and parent not in folders.metadata:
            raise OrphanCleanupError(
                f"{identifier}: {key} is the metadata of another table under this one's "
                "location: nothing deleted"
            )
    missing = sorted(k for k in live if folders.holds(k) and k not in listed)
    if missing:
        raise OrphanCleanupError(
            f"{identifier}: {len(missing)} files of its current metadata are not in the listing "
            f"of {', '.join(folders.roots)} (first: {missing[0]}): the listing and the metadata "
            "name files differently, nothing deleted"
        )


def _file_folders(metadata: Any) -> set[str]:
    """The folders (:func:`path_key`) a table writes its files to: ``data``, ``metadata`` and
    what its :data:`PATH_PROPERTIES` name, wherever they are."""
    location = _folder_key(metadata.location)
    folders = {f"{location}/data", f"{location}/metadata"}
    for prop in PATH_PROPERTIES:
        if value := metadata.properties.get(prop):
            folders.add(_folder_key(value))
    return folders


@dataclass(frozen=True)
class Neighbour:
    """What :func:`check_neighbours` needs of another table: its ``table-uuid``, location
    (:func:`path_key`) and file folders (:func:`_file_folders`)."""

    uuid: Any
    location: str
    folders: frozenset[str]

    @classmethod
    def of(cls, metadata: Any) -> Neighbour:
        return cls(
            metadata.table_uuid, _folder_key(metadata.location), frozenset(_file_folders(metadata))
        )


def check_neighbours(
    catalog: Any,
    identifier: str,
    metadata: Any,
    folders: TableFolders,
    known: dict[tuple[str, ...], Neighbour] | None = None,
) -> None:
    """Refuse (:class:`OrphanCleanupError`, before anything is listed) when another table of
    the same namespace in the catalog writes its files where this one's are listed: its
    location equal to this table's, or its location or one of its file folders
    (:func:`_file_folders`) at or under a listed folder, or a listed folder under one of its
    file folders. A table renamed and re-created (a backup before a rebuild) has the same
    default location: each would take the other's files for orphans. One metadata read per
    table of the namespace, once per maintenance run when ``known`` (a cache the run's
    clean-ups share) is given: a table re-created during the run is still caught by its
    metadata files (below); tables of other namespaces are caught by their metadata files
    (:meth:`References.check_uuid`, :func:`check_listing`)."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    me = Catalog.identifier_to_tuple(identifier)
    location = _folder_key(metadata.location)
    roots = [_folder_key(r) for r in folders.roots]
    try:
        neighbours = [t for t in catalog.list_tables(me[:-1]) if tuple(t) != me]
    except NoSuchNamespaceError:  # dropped meanwhile: no neighbour left
        return
    for other in map(tuple, neighbours):
        name = ".".join(other)
        theirs = known.get(other) if known is not None else None
        if theirs is None:
            try:
                theirs = Neighbour.of(catalog.load_table(other).metadata)
            except NoSuchTableError:  # dropped meanwhile: no files of its own left to keep
                continue
            except _unreadable() as exc:
                raise OrphanCleanupError(
                    f"{identifier}: could not read the metadata of {name}, a table of the same "
                    f"namespace whose files may be in this one's folders, nothing deleted: {exc}"
                ) from exc
            if known is not None:
                known[other] = theirs
        if theirs.uuid == metadata.table_uuid:  # this table under another name
            continue
        clash = theirs.location == location or any(
            p == r or _under(p, r) or (_under(r, p) and p in theirs.folders)
            for p in (theirs.location, *theirs.folders)
            for r in roots
        )
        if clash:
            raise OrphanCleanupError(
                f"{identifier}: the table {name} writes its files where this one's are "
                f"({theirs.location}, {location}): each would take the other's files "
                "for orphans, nothing deleted"
            )


class References:
    """The files a table's metadata references (module docstring), read once per file: a
    manifest list or manifest already read is not read again (they never change)."""

    def __init__(self, io: Any, identifier: str = "", table_uuid: Any = None):
        self.io = io
        self.identifier = identifier
        #: The table's ``table-uuid``: every version read must have it (:meth:`check_uuid`).
        self.table_uuid = table_uuid
        self.keys: set[str] = set()
        self._lists: set[str] = set()
        self._manifests: set[str] = set()
        self._versions: set[str] = set()
        #: Manifest lists and manifests read (:func:`path_key`): they exist.
        self.read_files: set[str] = set()
        #: Manifest lists found gone, skipped for readers' versions (warned once).
        self._gone: set[str] = set()
        self.reads = 0

    def add_metadata(
        self,
        metadata: Any,
        metadata_location: str | None = None,
        live: set[str] | None = None,
        *,
        for_readers: bool = False,
    ) -> None:
        """Add what ``metadata`` (one version of the table) references; ``live`` gets the files
        of that version itself (its metadata file, its current snapshot's manifest list,
        manifests and live data and delete files). ``for_readers``: a
        version read for its readers, not the current one: a manifest list or manifest of it
        that is gone is skipped with a warning (another engine's ``expire_snapshots``, Trino's
        or Spark's, deletes the expired snapshots' files: nothing left to protect); for the
        current metadata it is an error (:class:`FileNotFoundError`)."""
        if metadata_location:
            self.keys.add(path_key(metadata_location))
            self._versions.add(path_key(metadata_location))
            if live is not None:
                live.add(path_key(metadata_location))
        for entry in metadata.metadata_log:
            self.keys.add(path_key(entry.metadata_file))
        for stats in (*metadata.statistics, *metadata.partition_statistics):
            self.keys.add(path_key(stats.statistics_path))
        current = metadata.current_snapshot()
        if current is not None and live is not None:
            self._add_snapshot(current, live)
        for snapshot in metadata.snapshots:
            self._add_snapshot(snapshot, missing_ok=for_readers)

    def _add_snapshot(
        self, snapshot: Any, live: set[str] | None = None, *, missing_ok: bool = False
    ) -> None:
        """Add what ``snapshot`` references; into ``live`` too when given (then read even if
        read before: ``live`` must be complete). ``missing_ok``: a manifest list or manifest
        that is gone is skipped with a warning (:meth:`add_metadata`)."""
        if not snapshot.manifest_list or (live is None and snapshot.manifest_list in self._lists):
            return
        if missing_ok and snapshot.manifest_list in self._gone:
            return
        self.reads += 1
        try:
            manifests = snapshot.manifests(self.io)
        except FileNotFoundError:
            if not missing_ok:
                raise
            self._gone.add(snapshot.manifest_list)
            log.warning(
                "%s: manifest list %s of snapshot %s, named by a version read for its readers, "
                "is gone (another engine expired it?): skipped",
                self.identifier, snapshot.manifest_list, snapshot.snapshot_id,
            )  # fmt: skip
            return
        found = {path_key(snapshot.manifest_list)}
        self.read_files.add(path_key(snapshot.manifest_list))
        complete = True
        for manifest in manifests:
            found.add(path_key(manifest.manifest_path))
            if live is None and manifest.manifest_path in self._manifests:
                continue
            self.reads += 1
            try:
                # Live entries only (ADDED, EXISTING): a DELETED entry's file is the parent's.
                entries = manifest.fetch_manifest_entry(self.io, discard_deleted=True)
            except FileNotFoundError:
                if not missing_ok:
                    raise
                log.warning(
                    "%s: manifest %s, named by a version read for its readers, is gone: skipped",
                    self.identifier, manifest.manifest_path,
                )  # fmt: skip
                complete = False
                continue
            for entry in entries:
                found.add(path_key(entry.data_file.file_path))
            self._manifests.add(manifest.manifest_path)
            self.read_files.add(path_key(manifest.manifest_path))
        if complete:  # else read again (strictly) if the current metadata names it
            self._lists.add(snapshot.manifest_list)
        self.keys |= found
        if live is not None:
            live |= found

    def add_recent_versions(self, metadata: Any, cutoff_ms: int) -> None:
        """Add what the versions of ``metadata``'s metadata log still current at or after
        ``cutoff_ms`` reference (a reader may have planned them: module docstring). A version
        is current until the next one is written (the next log entry's time, or the time of
        ``metadata``)."""
        log_entries = list(metadata.metadata_log)
        ends = [e.timestamp_ms for e in log_entries[1:]] + [metadata.last_updated_ms]
        ends = ends[: len(log_entries)]  # no log (a table's first version): nothing to add
        for entry, superseded_ms in zip(log_entries, ends, strict=True):
            if superseded_ms < cutoff_ms or path_key(entry.metadata_file) in self._versions:
                continue
            self._versions.add(path_key(entry.metadata_file))
            try:
                old = self._read_version(entry.metadata_file)
            except FileNotFoundError:  # gone (not by us: we keep every file of the log)
                log.warning("%s: listed in the metadata log, not found", entry.metadata_file)
                continue
            self.add_metadata(old, for_readers=True)

    def add_listed_versions(
        self, listed: dict[str, ListedFile], folders: TableFolders, cutoff_ms: int
    ) -> None:
        """Add what every version of the table written within the age references: each
        metadata file in the listing (in the metadata folders) modified at or after
        ``cutoff_ms``, and the versions of its metadata log current at or after it (the one
        current at the cutoff). The current metadata's log holds 16 versions only: a reader
        that planned a version more than 16 commits ago (a backfill's day overwrites) still
        reads its files, and the versions written since name it. A metadata file that does not
        parse is a write in progress or a failed one, one gone since the listing was deleted by
        another clean-up: skipped, with a warning. Any other failure to read it (a timeout, a
        503, a permission) raises: its files cannot be known, nothing is deleted."""
        for key, f in sorted(listed.items()):
            if (
                not key.endswith(".metadata.json")
                or f.mtime_ms < cutoff_ms
                or key.rsplit("/", 1)[0] not in folders.metadata
                or key in self._versions
            ):
                continue
            try:
                version = self._read_version(f.uri)
            except (FileNotFoundError, *_not_a_version()) as exc:
                log.warning("%s: not a readable table version, skipped: %s", f.uri, exc)
                continue
            self._versions.add(key)  # only once read: a failed read protects nothing
            self.add_metadata(version, for_readers=True)
            self.add_recent_versions(version, cutoff_ms)

    def _read_version(self, uri: str) -> Any:
        from pyiceberg.serializers import FromInputFile

        self.reads += 1
        metadata = FromInputFile.table_metadata(self.io.new_input(uri))
        self.check_uuid(uri, metadata)
        return metadata

    def check_uuid(self, uri: str, metadata: Any) -> None:
        """Refuse (:class:`OrphanCleanupError`) a metadata file of another table (another
        ``table-uuid``) in this one's folders: the two share their folders, and each would
        take the other's files for orphans."""
        if self.table_uuid is not None and metadata.table_uuid != self.table_uuid:
            raise OrphanCleanupError(
                f"{self.identifier}: {uri} is the metadata of another table (table-uuid "
                f"{metadata.table_uuid}, this one's {self.table_uuid}) in this one's folders: "
                "each would take the other's files for orphans, nothing deleted"
            )

    def check_planned_metadata(self, planned: dict[str, ListedFile]) -> None:
        """Read each metadata file planned for deletion (few a day after the first run) and
        refuse one of another table (:meth:`check_uuid`): an old version of a table sharing
        this one's folders, which no version read so far names. One that does not parse (a
        failed commit's) or is gone is no version: deleted, or already."""
        for key, f in sorted(planned.items()):
            if not key.endswith(".metadata.json"):
                continue
            try:
                self._read_version(f.uri)
            except (FileNotFoundError, *_not_a_version()):
                continue


def _not_a_version() -> tuple[type[Exception], ...]:
    """What reading a metadata file that is no table version raises: JSON that does not parse
    or does not validate (pyiceberg's ``ValidationError`` is no ``ValueError``; pydantic's is)."""
    from pyiceberg.exceptions import ValidationError

    return (ValueError, ValidationError)


def _unreadable() -> tuple[type[Exception], ...]:
    """What reading a missing or corrupt metadata file, or failing to, raises."""
    return (OSError, *_not_a_version())


#: Keys per S3 ``DeleteObjects`` request: the API's maximum (S3's and Garage's).
S3_MAX_KEYS = 1000
#: Keys per request :func:`delete_files` sends (tests set fewer).
DELETE_BATCH = S3_MAX_KEYS
#: URI schemes s3fs serves (pyiceberg's ``FsspecFileIO`` maps all three to it).
S3_SCHEMES = ("s3", "s3a", "s3n")


class Deletion(NamedTuple):
    """What :func:`delete_files` did with each URI given: every URI is in exactly one field."""

    #: Deleted (on S3: what ``DeleteObjects`` reported deleted, which includes a key already
    #: gone: S3 does not tell the two apart).
    deleted: list[str]
    #: Already gone (a per-file delete said so, or the store answered ``NoSuchKey``).
    gone: list[str]
    #: Not deleted, or not known to be: URI -> why.
    failed: dict[str, str]


def delete_files(io: Any, uris: Iterable[str], *, batch_size: int | None = None) -> Deletion:
    """Delete ``uris`` through the FileIO ``io``; a failure is recorded and the others are still
    tried. Why in batches: over S3 a per-file delete is one HTTP request per file, and S3's
    ``DeleteObjects`` takes up to 1,000 keys (:data:`DELETE_BATCH`, or ``batch_size``) in one.

    Where the libraries fall short: pyiceberg's FileIO has no bulk delete (``delete`` takes one
    location), and s3fs's ``rm(list)``, which batches, sends ``Quiet`` requests and ignores the
    per-key ``Errors`` of the response (s3fs 2026.9, s3fs issue 838: ``FsspecFileIO.delete``,
    which calls it, returns as if a file it could not delete were deleted), and globs paths
    holding ``*``, ``?`` or ``[``. So the URIs that ``FsspecFileIO`` serves with s3fs (prod,
    against Garage) are deleted here with ``DeleteObjects`` through s3fs's own client
    (``call_s3``: its credentials, endpoint and retries), one request per bucket and batch,
    verbose, and each key's outcome read from the response. Any other URI (local files, ``PyArrowFileIO``, whose S3 filesystem has no bulk
    delete of given keys) is deleted one by one with ``io.delete``, where a missing file raises
    ``FileNotFoundError`` exactly."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    size = DELETE_BATCH if batch_size is None else batch_size
    if not 1 <= size <= S3_MAX_KEYS:
        raise ValueError(f"batch_size must be from 1 to {S3_MAX_KEYS}, not {size}")
    done = Deletion([], [], {})
    filesystems: dict[str, Any] = {}
    batches: dict[tuple[str, str], dict[str, str]] = {}  # (scheme, bucket) -> key -> URI
    for uri in dict.fromkeys(uris):
        scheme, bucket, path = PyArrowFileIO.parse_location(uri)
        if scheme in S3_SCHEMES and hasattr(io, "get_fs"):
            if scheme not in filesystems:
                filesystems[scheme] = io.get_fs(scheme)
            if hasattr(filesystems[scheme], "call_s3"):  # s3fs
                batches.setdefault((scheme, bucket), {})[path[len(bucket) + 1 :]] = uri
                continue
        try:
            io.delete(uri)
        except FileNotFoundError:
            done.gone.append(uri)
        except OSError as exc:
            done.failed[uri] = str(exc)
        else:
            done.deleted.append(uri)
    for (scheme, bucket), keys in batches.items():
        items = list(keys.items())
        for start in range(0, len(items), size):
            _delete_objects(filesystems[scheme], bucket, dict(items[start : start + size]), done)
    return done


def _delete_objects(fs: Any, bucket: str, keys: dict[str, str], done: Deletion) -> None:
    """One ``DeleteObjects`` request for ``keys`` (key -> URI) of ``bucket`` through the s3fs
    filesystem ``fs``; each key's outcome into ``done`` (:func:`delete_files`)."""
    try:
        response = fs.call_s3(
            "delete_objects",
            Bucket=bucket,
            # Verbose (not Quiet): a key counts as deleted only if the response says so.
            Delete={"Objects": [{"Key": key} for key in keys], "Quiet": False},
        )
    except FileNotFoundError:  # no such bucket: none of its files exists (as io.delete says)
        done.gone.extend(keys.values())
        return
    except OSError as exc:  # s3fs raises a failed request as OSError: none known deleted
        for uri in keys.values():
            done.failed[uri] = f"DeleteObjects failed: {exc}"
        return
    finally:
        for folder in {f"{bucket}/{key}".rsplit("/", 1)[0] for key in keys}:
            fs.invalidate_cache(folder)  # s3fs caches listings
    remaining = dict(keys)
    # S3 reports a key that does not exist as deleted (DeleteObjects is idempotent): a file
    # another clean-up deleted first is counted as deleted here, not as already gone; we
    # cannot tell them apart, and count what S3 says. A store that answers NoSuchKey instead
    # has it counted as gone.
    for item in response.get("Deleted") or ():
        uri = remaining.pop(item.get("Key"), None)
        if uri is not None:
            done.deleted.append(uri)
    for item in response.get("Errors") or ():
        uri = remaining.pop(item.get("Key"), None)
        if uri is None:
            continue
        if item.get("Code") == "NoSuchKey":
            done.gone.append(uri)
        else:
            done.failed[uri] = f"{item.get('Code')}: {item.get('Message')}"
    for uri in remaining.values():  # neither deleted nor an error: not known deleted
        done.failed[uri] = "not in the DeleteObjects response"


def _now_ms(now: dt.datetime | None) -> int:
    return int(time.time() * 1000) if now is None else _to_ms(now)


def remove_orphan_files(
    catalog: Any,
    identifier: str,
    *,
    older_than: dt.timedelta | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    lister: Callable[[Any, str], dict[str, ListedFile]] = list_files,
    neighbours: dict[tuple[str, ...], Neighbour] | None = None,
) -> OrphanCleanup:
    """Delete ``identifier``'s orphan files older than ``older_than`` (module docstring);
    ``dry_run`` deletes nothing and returns the same list. ``older_than`` defaults to the
    settings' (``DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS``), ``now`` to the current time. A missing
    table is nothing to do. ``neighbours``: the other tables read for :func:`check_neighbours`,
    a cache shared by the clean-ups of one run (one read per table, not one per pair). Raises
    :class:`OrphanCleanupError` when a file could not be deleted
    (after trying the others), and, with nothing deleted, when the location or the listing is
    refused or the metadata cannot be read (module docstring)."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    if older_than is None:
        from shared.settings import orphan_min_age_hours

        older_than = dt.timedelta(hours=orphan_min_age_hours())
    try:
        table = catalog.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        return OrphanCleanup(identifier, exists=False, dry_run=dry_run)
    cutoff_ms = _now_ms(now) - int(older_than.total_seconds() * 1000)

    warehouse = getattr(catalog, "properties", {}).get("warehouse")
    check_location(identifier, table.metadata.location, warehouse)
    folders = table_folders(table.metadata)
    if neighbours is not None:  # this table, as the next clean-ups of the run see it
        from pyiceberg.catalog import Catalog

        neighbours[Catalog.identifier_to_tuple(identifier)] = Neighbour.of(table.metadata)
    check_neighbours(catalog, identifier, table.metadata, folders, neighbours)
    refs = References(table.io, identifier, table.metadata.table_uuid)
    live: set[str] = set()
    try:
        listed: dict[str, ListedFile] = {}
        for root in folders.roots:
            listed.update(lister(table.io, root))
        refs.add_metadata(table.metadata, table.metadata_location, live)
        current = set(refs.keys)
        live |= refs.read_files  # every manifest list and manifest of it: read, so they exist
        refs.add_recent_versions(table.metadata, cutoff_ms)
        refs.add_listed_versions(listed, folders, cutoff_ms)
    except _unreadable() as exc:
        # A manifest that cannot be read may reference any file: delete nothing.
        raise OrphanCleanupError(
            f"{identifier}: could not list its files or read its metadata, nothing deleted: {exc}"
        ) from exc
    check_listing(identifier, listed, folders, live)
    for_readers = sum(1 for k in listed if k not in current and k in refs.keys)
    unreferenced = {k: f for k, f in listed.items() if k not in refs.keys}
    planned = {k: f for k, f in unreferenced.items() if f.mtime_ms < cutoff_ms}
    young = [f for k, f in unreferenced.items() if k not in planned]
    try:
        refs.check_planned_metadata(planned)
    except OSError as exc:
        raise OrphanCleanupError(
            f"{identifier}: could not read a metadata file to delete, nothing deleted: {exc}"
        ) from exc

    meanwhile = 0
    if planned and not dry_run:
        # A commit since planning may reference a planned file (module docstring): check the
        # table as it is now, right before deleting.
        fresh = catalog.load_table(identifier)
        if fresh.metadata_location != table.metadata_location:
            refs.check_uuid(fresh.metadata_location, fresh.metadata)  # dropped, re-created
            try:
                refs.add_metadata(fresh.metadata, fresh.metadata_location)
                refs.add_recent_versions(fresh.metadata, cutoff_ms)
            except _unreadable() as exc:
                raise OrphanCleanupError(
                    f"{identifier}: could not read its metadata, nothing deleted: {exc}"
                ) from exc
            kept = [k for k in planned if k in refs.keys]
            for k in kept:
                del planned[k]
            meanwhile = len(kept)
            if kept:
                log.info(
                    "%s: %d planned files were committed meanwhile: kept", identifier, len(kept)
                )

    orphans = sorted(f.uri for f in planned.values())
    deleted = deleted_bytes = gone = 0
    failed: list[str] = []
    if not dry_run:
        # Every planned file was checked against the fresh metadata above, before any delete.
        outcome = delete_files(table.io, [planned[k].uri for k in sorted(planned)])
        size = {f.uri: f.size for f in planned.values()}
        deleted, gone = len(outcome.deleted), len(outcome.gone)
        deleted_bytes = sum(size[uri] for uri in outcome.deleted)
        for uri, why in outcome.failed.items():  # the others were tried; the run fails below
            log.warning("%s: could not delete %s: %s", identifier, uri, why)
            failed.append(uri)
    result = OrphanCleanup(
        identifier,
        dry_run=dry_run,
        files=len(listed),
        bytes=sum(f.size for f in listed.values()),
        orphans=tuple(orphans),
        orphan_bytes=sum(f.size for f in planned.values()),
        deleted=deleted,
        deleted_bytes=deleted_bytes,
        too_young=len(young),
        too_young_bytes=sum(f.size for f in young),
        kept_for_readers=for_readers,
        referenced_meanwhile=meanwhile,
        already_gone=gone,
        metadata_read=refs.reads + 1,
        failed=tuple(failed),
    )
    if failed:
        raise OrphanCleanupError(
            f"{identifier}: {len(failed)} of {len(orphans)} orphan files could not be deleted "
            f"(first: {failed[0]}); retried at the next run"
        )
    return result


def remove_orphans_of_tables(
    catalog: Any,
    identifiers: Iterable[str],
    *,
    older_than: dt.timedelta | None = None,
    dry_run: bool = False,
) -> list[OrphanCleanup]:
    """:func:`remove_orphan_files` of each table, one after the other; the age is read once,
    each other table of their namespaces once (:func:`check_neighbours`)."""
    if older_than is None:
        from shared.settings import orphan_min_age_hours

        older_than = dt.timedelta(hours=orphan_min_age_hours())
    known: dict[tuple[str, ...], Neighbour] = {}
    return [
        remove_orphan_files(catalog, i, older_than=older_than, dry_run=dry_run, neighbours=known)
        for i in identifiers
    ]
