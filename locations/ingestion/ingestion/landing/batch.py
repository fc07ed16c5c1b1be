"""What a landing batch is: its files, their streams and formats, and its constants.

See :mod:`ingestion.landing` for the whole protocol.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# LANDING_PREFIX is defined with the landing folder in ingestion.settings; re-exported here.
from ingestion.settings import LANDING_PREFIX as LANDING_PREFIX
from ingestion.streams import STREAMS_BY_NAME, RawStream

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
#: Written last into a batch folder by its producer: the batch is complete (the Spark/Hadoop
#: convention). A folder without it is still being written and is never loaded.
SUCCESS_MARKER = "_SUCCESS"
#: Top-level folder (under ``landing/``) of the load ledger: ``_loaded/<batch>/<listing>.json``,
#: written only after the batch's rows are committed.
LOADED_DIR = "_loaded"
#: Snapshot summary properties of a landing load, committed with its rows.
BATCH_PROPERTY, FINGERPRINT_PROPERTY = "landing.batch", "landing.fingerprint"


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


# ---- the landing zone: batches, completion, fingerprints, ledger ----------------------------


def join(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}"


@dataclass(frozen=True)
class Batch:
    """A batch as listed: its files (relative to ``landing/``) and their listing stamps."""

    name: str
    files: tuple[str, ...]
    #: ``{file: "size:version"}`` from the listing (version: the ETag on S3, mtime locally).
    stamps: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def folder(self) -> bool:
        """A folder batch (``landing/<batch>/...``), not a single file under ``landing/``."""
        return any("/" in f for f in self.files)

    @property
    def data_files(self) -> list[str]:
        return [f for f in self.files if not is_marker(f)]

    @property
    def complete(self) -> bool:
        """Whether the producer has finished writing the batch (see the module docstring of
        :mod:`ingestion.landing`): a folder once ``_SUCCESS`` is in it; a single file as soon
        as it is listed (an S3 object is only listed once its upload completed)."""
        if not self.folder:
            return True
        return f"{self.name}/{SUCCESS_MARKER}" in self.files

    @property
    def listing_signature(self) -> str:
        """A short hash of the data files' names, sizes and versions: changes when any data
        file is added, removed or rewritten (cheap: from the listing, no file is read)."""
        text = "\n".join(f"{f}\x00{self.stamps.get(f, '')}" for f in sorted(self.data_files))
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]


@dataclass
class Zone:
    """One listing of the landing zone."""

    #: Batches (first-level names not starting with ``_`` or ``.``).
    batches: dict[str, Batch]
    #: ``{batch: {listing signatures}}`` recorded in the ledger (``_loaded/``).
    loaded: dict[str, set[str]]

    def is_loaded(self, batch: Batch) -> bool:
        return batch.listing_signature in self.loaded.get(batch.name, set())


def stamp(info: Mapping[str, Any]) -> str:
    version = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
    return f"{info.get('size', '')}:{version}"


def scan_zone(fs: Any, root: str) -> Zone:
    """List the landing zone once: its batches and the ledger's records.

    A batch is a first-level folder of the landing prefix (``landing/<batch>/...``), or a single
    file directly under it (its name is the batch id). Names starting with ``.`` are uploads in
    progress and ignored; first-level names starting with ``_`` are the loader's own
    (``_rejected/``, ``_loaded/``).
    """
    root = root.rstrip("/")
    try:
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache(root)  # s3fs caches listings between ticks
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return Zone({}, {})
    files: dict[str, list[str]] = {}
    stamps: dict[str, dict[str, str]] = {}
    loaded: dict[str, set[str]] = {}
    for path in sorted(found):
        relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
        parts = [p for p in relative.split("/") if p]
        if not parts or any(p.startswith(".") for p in parts):
            continue
        if parts[0] == LOADED_DIR and len(parts) == 3 and parts[2].endswith(".json"):
            loaded.setdefault(parts[1], set()).add(parts[2][: -len(".json")])
            continue
        if parts[0].startswith("_"):
            continue
        files.setdefault(parts[0], []).append(relative)
        stamps.setdefault(parts[0], {})[relative] = stamp(found[path])
    batches = {name: Batch(name, tuple(fs_), stamps[name]) for name, fs_ in files.items()}
    return Zone(batches, loaded)


def list_batches(fs: Any, root: str) -> dict[str, list[str]]:
    """The landing zone's batches: ``{batch id: [files]}`` (see :func:`scan_zone`)."""
    return {name: list(b.files) for name, b in scan_zone(fs, root).batches.items()}


def file_digest(fs: Any, path: str, chunk: int = 8 * 1024 * 1024) -> str:
    """SHA-256 of a file's content, read in chunks (memory independent of the file's size)."""
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_fingerprint(batch: str, digests: Mapping[str, str]) -> str:
    """The fingerprint of a batch's content: its data files' names (inside the batch) and
    SHA-256 digests. Equal for an identical re-drop, different if any byte or name differs."""
    prefix = f"{batch}/"
    lines = sorted(
        f"{(f[len(prefix) :] if f.startswith(prefix) else f)}\x00{d}" for f, d in digests.items()
    )
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def ledger_dir(root: str, batch: str) -> str:
    return join(root, f"{LOADED_DIR}/{batch}")


def read_ledger(fs: Any, root: str, batch: str) -> list[dict[str, Any]]:
    """The ledger's records of ``batch`` (one per listing it was seen loaded with)."""
    folder = ledger_dir(root, batch)
    try:
        paths = [p for p in fs.ls(folder, detail=False) if p.endswith(".json")]
    except FileNotFoundError:
        return []
    records = []
    for path in sorted(paths):
        try:
            records.append(json.loads(fs.cat_file(path)))
        except (FileNotFoundError, ValueError):
            continue  # a record cut short by a kill is rewritten by the next load
    return records


def write_ledger(fs: Any, root: str, batch: Batch, fingerprint: str,
                 digests: Mapping[str, str], snapshots: Mapping[str, int | None],
                 **extra: Any) -> str:  # fmt: skip
    """Record that ``batch`` (as listed) is loaded: written only after its rows are committed,
    as a file of its own (a PUT on S3 is atomic; locally it is written aside and renamed)."""
    record = {
        "batch": batch.name,
        "fingerprint": fingerprint,
        "files": dict(sorted(digests.items())),
        "snapshots": dict(snapshots),
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    folder = ledger_dir(root, batch.name)
    path = join(folder, f"{batch.listing_signature}.json")
    data = json.dumps(record, indent=1).encode("utf-8", "surrogateescape")
    fs.makedirs(folder, exist_ok=True)
    if getattr(fs, "protocol", None) in ("file", ("file", "local")):
        tmp = join(folder, f".{batch.listing_signature}.tmp")
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    else:
        fs.pipe_file(path, data)
    return path
