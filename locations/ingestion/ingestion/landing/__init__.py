"""The LANDING-BATCH LOADER: the local stand-in for Airbyte's file / S3 source connector.

In production, files dropped under ``landing/`` on Garage are read by an Airbyte source
connector. Locally there is no Airbyte, so when an ingestion run carries a landing batch (the
``ingestion/landing_batch`` tag the landing sensor sets), the local stand-in loads that batch's
files into the raw tables with this package instead of generating data.

Modules: :mod:`~ingestion.landing.batch` (what a batch is: names, streams, completion,
fingerprints, the ledger), :mod:`~ingestion.landing.parse` (how files are read and validated),
:mod:`~ingestion.landing.load` (how a batch is loaded or quarantined).

Landing format (see the README): ``landing/<batch>/<stream>[.<anything>].<jsonl|csv|parquet>``;
the stream is the file name up to its first dot. ``jsonl``: one JSON object per line (UTF-8);
``csv``: a header row, UTF-8, empty cell = null; ``parquet``: any Arrow-readable types.

The protocol (each rule holds if any process is killed at any moment):

* **complete**: a batch folder is complete once its producer wrote ``_SUCCESS`` into it, last
  (the Spark/Hadoop convention); until then it is never read. A single file directly under
  ``landing/`` is complete when listed (an S3 PUT is atomic; locally, write it under a ``.``
  name and rename it). A batch whose files change while they are read is not loaded.
* **loaded** means committed: each stream's rows are appended in one Iceberg commit whose
  snapshot summary carries ``landing.batch`` and ``landing.fingerprint`` (the SHA-256 of the
  batch's file names and contents). A stream whose table already holds that fingerprint is
  skipped, so a re-run after a kill at any point appends each stream exactly once; the commit
  asserts the table has not moved since the lookup, so two overlapping runs cannot both append.
  Then a ledger record ``landing/_loaded/<batch>/<listing signature>.json`` is written: the
  sensor requests a run for every complete batch without a record for its current listing.
* **re-dropped**: an identical batch (same fingerprint) is skipped; different content under a
  used name is rejected, whether the ledger or a table's history knows the name. Once the
  commit's snapshot expired (``shared.maintenance``), the batch's first row still knows it: its
  deterministic raw id finds it, its ``_airbyte_meta`` carries the fingerprint.
* **rejected** (:class:`LandingRejected`: bad values, formats, names, a reused name): the whole
  batch is validated before anything is written, so no table changes; the caller moves the batch
  to ``landing/_rejected/<batch>/`` with an ``_error.txt``: nothing is ever deleted.
* **failed** (anything else: a catalog outage, a bug): nothing is moved or recorded, the batch
  stays pending and the next run retries it.
* **bounded memory**: files are read in chunks (pyarrow's JSON and CSV readers against the
  stream's schema, the row-by-row scan only where pyarrow fails: it names line, column and
  value), twice: once to validate the whole batch, once streamed into each table's commit.

Accepted and flagged by a named check: null or duplicate keys, added columns (kept as strings
for jsonl/csv, typed for parquet), dropped columns (nulls, and listed in ``_airbyte_meta``),
timestamps before 1970 or in the future, oversized strings. Empty files: accepted as a no-op
and reported in the materialization metadata.
"""

from ingestion.landing.batch import (
    ERROR_FILE,
    FORMATS,
    LANDING_BATCH_TAG,
    LANDING_META_PREFIX,
    LANDING_PREFIX,
    LOADED_DIR,
    REJECTED_DIR,
    SUCCESS_MARKER,
    Batch,
    LandingFile,
    LandingRejected,
    Zone,
    classify,
    content_fingerprint,
    is_marker,
    list_batches,
    plan_batch,
    read_ledger,
    scan_zone,
    streams_named_by,
)
from ingestion.landing.load import (
    BatchChanged,
    StreamLoad,
    align_to_table,
    committed_fingerprint,
    load_batch,
    previous_rejection,
    quarantine,
    record_synced,
    to_raw,
)
from ingestion.landing.parse import ParsedFile, parse_file

__all__ = [
    "ERROR_FILE",
    "FORMATS",
    "LANDING_BATCH_TAG",
    "LANDING_META_PREFIX",
    "LANDING_PREFIX",
    "LOADED_DIR",
    "REJECTED_DIR",
    "SUCCESS_MARKER",
    "Batch",
    "BatchChanged",
    "LandingFile",
    "LandingRejected",
    "ParsedFile",
    "StreamLoad",
    "Zone",
    "align_to_table",
    "classify",
    "committed_fingerprint",
    "content_fingerprint",
    "is_marker",
    "list_batches",
    "load_batch",
    "parse_file",
    "plan_batch",
    "previous_rejection",
    "quarantine",
    "read_ledger",
    "record_synced",
    "scan_zone",
    "streams_named_by",
    "to_raw",
]
