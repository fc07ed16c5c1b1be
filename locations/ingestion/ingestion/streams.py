"""The one declarative list of the streams this location ingests.

Everything else derives from :data:`STREAMS`: the ``raw/<stream>`` asset keys (declared
statically, so the location loads with all its assets even when Airbyte is down), the local
stand-in's table schemas, the mapping of Airbyte streams to assets at run time, the sensor's job
and the raw-table checks (primary key, freshness, schema drift). Adding a stream here adds its
asset, its checks and its place in the ingestion job; the stand-in must then learn to generate
it (``ingestion.standin``).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import AssetKey

from shared.keys import table_identifier, table_key

if TYPE_CHECKING:
    import pyarrow as pa

    from shared.key_index import KeyIndexSpec

# The columns are declared by name and Arrow type name, and turned into pyarrow objects only
# when first used (``RawStream.source_fields``/``schema``, ``TIMESTAMP``, ``AIRBYTE_META_FIELDS``):
# importing pyarrow costs a few hundred ms, and loading the definitions (asset specs, checks) needs
# only the names. The type names are ``str()`` of the Arrow types, as shown in the asset metadata.

#: The Iceberg namespace (and asset key prefix) of everything this location lands.
RAW_NAMESPACE = "raw"

#: Arrow type name of every timestamp column: ``str(pa.timestamp("us", tz="UTC"))``.
TIMESTAMP_TYPE = "timestamp[us, tz=UTC]"

#: Columns every Airbyte destination (v2 "typing and deduping" / Iceberg) adds to each record.
AIRBYTE_META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_airbyte_raw_id", "string"),
    ("_airbyte_extracted_at", TIMESTAMP_TYPE),
    # JSON text {"sync_id": ..., "changes": [...]}; some v2 destinations write it as a struct
    # of the same fields instead (accepted: see airbyte_column_variant).
    ("_airbyte_meta", "string"),
    # v2 destinations: the generation (bumped by a refresh or clear) that wrote the record.
    ("_airbyte_generation_id", "int64"),
)

#: The record's position in its delivery (files in name order, then rows in file order, from 0),
#: written by the loaders that know it (the landing loader); Airbyte's destinations do not write
#: it, so the column may be absent or null. Staging resolves conflicting duplicates of one
#: delivery (same key, same ``_airbyte_extracted_at``) to the record delivered last by it.
#: ``_ab_`` like the columns Airbyte's file sources add (``_ab_source_file_url``).
RECORD_INDEX_COLUMN = "_ab_record_index"
#: Columns some writers add and others do not: neither expected nor drift (``ingestion.checks``).
OPTIONAL_META_COLUMNS: tuple[tuple[str, str], ...] = ((RECORD_INDEX_COLUMN, "int64"),)

#: Airbyte columns a raw table may lack without drift: destinations from before Airbyte's
#: "generations" (refreshes) do not write ``_airbyte_generation_id``.
OPTIONAL_AIRBYTE_COLUMNS = frozenset({"_airbyte_generation_id"})


def airbyte_column_variant(name: str, actual: pa.DataType) -> bool:
    """Whether ``actual`` is an accepted other type of Airbyte column ``name`` (not drift):
    ``_airbyte_meta`` as a struct (``{sync_id, changes: [{field, change, reason}]}``), as some
    v2 destinations write it, and ``_airbyte_generation_id`` as any integer."""
    import pyarrow as pa

    if name == "_airbyte_meta":
        return pa.types.is_struct(actual)
    if name == "_airbyte_generation_id":
        return pa.types.is_integer(actual)
    return False


#: Descriptions of Airbyte's columns, for the catalog.
AIRBYTE_META_DESCRIPTIONS: dict[str, str] = {
    "_airbyte_raw_id": "Airbyte's id of the record (unique per synced record).",
    "_airbyte_extracted_at": "When Airbyte extracted the record (UTC).",
    "_airbyte_meta": "Airbyte's record metadata: the sync id and the changes made to the record.",
    "_airbyte_generation_id": "The generation (bumped by a refresh or clear) that wrote the record.",
}


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a declared type name (``int64``, ``string``, ``double``, timestamps)."""
    import pyarrow as pa

    types = {
        "int64": pa.int64,
        "string": pa.string,
        "double": pa.float64,
        TIMESTAMP_TYPE: lambda: pa.timestamp("us", tz="UTC"),
    }
    return types[name]()


def arrow_fields(columns: tuple[tuple[str, str], ...]) -> tuple[pa.Field, ...]:
    """Arrow fields of declared ``(name, type name)`` columns."""
    import pyarrow as pa

    return tuple(pa.field(name, arrow_type(type_name)) for name, type_name in columns)


@functools.cache
def _lazy_constant(name: str) -> Any:
    if name == "TIMESTAMP":
        return arrow_type(TIMESTAMP_TYPE)
    return arrow_fields(AIRBYTE_META_COLUMNS)


def __getattr__(name: str) -> Any:
    """``TIMESTAMP`` (Arrow timestamp, us, UTC) and ``AIRBYTE_META_FIELDS`` (Arrow fields of
    :data:`AIRBYTE_META_COLUMNS`), built on first use (PEP 562) so pyarrow loads only then."""
    if name in ("TIMESTAMP", "AIRBYTE_META_FIELDS"):
        return _lazy_constant(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class RawStream:
    """One Airbyte stream landed as Iceberg table ``raw.<name>``."""

    #: The Airbyte stream name; also the table name and the last part of the asset key.
    name: str
    description: str
    #: The source's columns as ``(name, Arrow type name)``, without Airbyte's ``_airbyte_*``
    #: columns (see :attr:`source_fields` and :attr:`schema` for the Arrow objects).
    source_columns: tuple[tuple[str, str], ...]
    #: The record's primary key in the source.
    primary_key: tuple[str, ...]
    #: Airbyte's incremental cursor field in the source.
    cursor_field: str
    #: Columns that identify one raw record version: unique in the raw table even though the
    #: primary key alone may repeat (see ``ingestion.checks`` for why).
    unique_version_key: tuple[str, ...]
    #: Source columns that are never null in a healthy batch; a batch where one is entirely
    #: null means the source stopped sending it (a dropped column).
    required_fields: tuple[str, ...]
    #: The table counts as stale when its last commit is older than this.
    freshness: dt.timedelta = dt.timedelta(hours=26)
    #: Columns a row must have (not null) to reach staging: staging leaves out the other rows
    #: (before deduplication) and the raw check ``null_keys`` counts them with examples.
    staging_keys: tuple[str, ...] = ()
    #: The column whose UTC day is the row's event day: each sync records the days of the rows
    #: it added (``shared.changes``), which the daily assets downstream run for, and the days
    #: that earlier versions of the added :attr:`primary_key` values are on (a record re-delivered
    #: on another day changes the day it left). None: the stream's rows belong to no day of a
    #: daily asset.
    #: Rows whose event day is outside the daily partitions are reported (``outside_partitions``).
    event_time_column: str | None = None
    #: What each source column holds (the catalog's column descriptions).
    column_descriptions: tuple[tuple[str, str], ...] = ()

    def column_description(self, name: str) -> str | None:
        """The description of one of the raw table's columns."""
        return dict(self.column_descriptions).get(name) or AIRBYTE_META_DESCRIPTIONS.get(name)

    @property
    def key(self) -> AssetKey:
        return table_key(RAW_NAMESPACE, self.name)

    @property
    def identifier(self) -> str:
        return table_identifier(self.key)

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """All the raw table's ``(name, Arrow type name)``: source, then Airbyte's columns."""
        return (*self.source_columns, *AIRBYTE_META_COLUMNS)

    @functools.cached_property
    def source_fields(self) -> tuple[pa.Field, ...]:
        """The source's columns as Arrow fields (built on first use)."""
        return arrow_fields(self.source_columns)

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The raw table's Arrow schema: source columns, then Airbyte's metadata columns."""
        import pyarrow as pa

        return pa.schema(arrow_fields(self.columns))


USERS = RawStream(
    name="users",
    description=(
        "Users of the product as landed by Airbyte. Several versions of one user may exist "
        "(one per update); staging keeps the latest by updated_at / _airbyte_extracted_at."
    ),
    source_columns=(
        ("id", "int64"),
        ("email", "string"),
        ("name", "string"),
        ("country", "string"),
        ("plan", "string"),  # free | pro | enterprise
        ("signup_at", TIMESTAMP_TYPE),
        ("updated_at", TIMESTAMP_TYPE),
    ),
    primary_key=("id",),
    cursor_field="updated_at",
    unique_version_key=("id", "updated_at"),
    required_fields=("id", "email", "name", "country", "plan", "signup_at", "updated_at"),
    staging_keys=("id",),
    column_descriptions=(
        ("id", "The user's id in the source system."),
        ("email", "The user's email address."),
        ("name", "The user's full name."),
        ("country", "The user's country code."),
        ("plan", "The user's subscription plan: free, pro or enterprise."),
        ("signup_at", "When the user signed up (UTC)."),
        ("updated_at", "When the source last changed the user (UTC); Airbyte's cursor."),
    ),
)

EVENTS = RawStream(
    name="events",
    description=(
        "Product events as landed by Airbyte (incremental append on event_ts). Delivery is "
        "at-least-once, so an event_id may appear more than once; staging deduplicates."
    ),
    source_columns=(
        ("event_id", "string"),
        ("user_id", "int64"),
        ("event_type", "string"),  # page_view | click | add_to_cart | purchase
        ("event_ts", TIMESTAMP_TYPE),
        ("amount", "double"),  # purchases only, else null
    ),
    primary_key=("event_id",),
    cursor_field="event_ts",
    unique_version_key=("_airbyte_raw_id",),
    required_fields=("event_id", "user_id", "event_type", "event_ts"),
    staging_keys=("event_id", "user_id", "event_ts"),
    event_time_column="event_ts",
    column_descriptions=(
        ("event_id", "The event's id in the source system (may repeat: at-least-once delivery)."),
        ("user_id", "The user who produced the event."),
        ("event_type", "What happened: page_view, click, add_to_cart or purchase."),
        ("event_ts", "When the event happened (UTC); Airbyte's cursor."),
        ("amount", "Purchase amount; null for other event types."),
    ),
)

#: Every stream of this location, in the order they are synced and listed.
STREAMS: tuple[RawStream, ...] = (USERS, EVENTS)

STREAMS_BY_NAME: dict[str, RawStream] = {s.name: s for s in STREAMS}


def stream_for_key(key: AssetKey) -> RawStream:
    """The stream behind asset key ``raw/<stream>``."""
    for stream in STREAMS:
        if stream.key == key:
            return stream
    raise KeyError(f"asset {key.to_user_string()} is not a raw stream of the ingestion location")


def key_index_spec(stream: RawStream) -> KeyIndexSpec | None:
    """The hashed key index of ``stream``'s raw table (``shared.key_index``): for a stream with
    an event time and a one-column primary key (``raw.events``); None for the others
    (``raw.users`` has no event day, a small table and a two-column version key)."""
    from shared.key_index import KeyIndexSpec

    if stream.event_time_column is None or len(stream.primary_key) != 1:
        return None
    return KeyIndexSpec(
        raw_identifier=stream.identifier,
        key_column=stream.primary_key[0],
        raw_id_column="_airbyte_raw_id",
        day_column=stream.event_time_column,
    )
