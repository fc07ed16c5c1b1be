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
from dataclasses import dataclass

import pyarrow as pa
from dagster import AssetKey

from shared.keys import table_identifier, table_key

#: The Iceberg namespace (and asset key prefix) of everything this location lands.
RAW_NAMESPACE = "raw"

TIMESTAMP = pa.timestamp("us", tz="UTC")

#: Columns every Airbyte destination (v2 "typing and deduping" / Iceberg) adds to each record.
AIRBYTE_META_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_airbyte_raw_id", pa.string()),
    pa.field("_airbyte_extracted_at", TIMESTAMP),
    pa.field("_airbyte_meta", pa.string()),  # JSON: {"sync_id": ..., "changes": [...]}
)


@dataclass(frozen=True)
class RawStream:
    """One Airbyte stream landed as Iceberg table ``raw.<name>``."""

    #: The Airbyte stream name; also the table name and the last part of the asset key.
    name: str
    description: str
    #: The source's columns, without Airbyte's ``_airbyte_*`` columns (see :attr:`schema`).
    source_fields: tuple[pa.Field, ...]
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

    @property
    def key(self) -> AssetKey:
        return table_key(RAW_NAMESPACE, self.name)

    @property
    def identifier(self) -> str:
        return table_identifier(self.key)

    @property
    def schema(self) -> pa.Schema:
        """The raw table's Arrow schema: source columns, then Airbyte's metadata columns."""
        return pa.schema([*self.source_fields, *AIRBYTE_META_FIELDS])


USERS = RawStream(
    name="users",
    description=(
        "Users of the product as landed by Airbyte. Several versions of one user may exist "
        "(one per update); staging keeps the latest by updated_at / _airbyte_extracted_at."
    ),
    source_fields=(
        pa.field("id", pa.int64()),
        pa.field("email", pa.string()),
        pa.field("name", pa.string()),
        pa.field("country", pa.string()),
        pa.field("plan", pa.string()),  # free | pro | enterprise
        pa.field("signup_at", TIMESTAMP),
        pa.field("updated_at", TIMESTAMP),
    ),
    primary_key=("id",),
    cursor_field="updated_at",
    unique_version_key=("id", "updated_at"),
    required_fields=("id", "email", "name", "country", "plan", "signup_at", "updated_at"),
)

EVENTS = RawStream(
    name="events",
    description=(
        "Product events as landed by Airbyte (incremental append on event_ts). Delivery is "
        "at-least-once, so an event_id may appear more than once; staging deduplicates."
    ),
    source_fields=(
        pa.field("event_id", pa.string()),
        pa.field("user_id", pa.int64()),
        pa.field("event_type", pa.string()),  # page_view | click | add_to_cart | purchase
        pa.field("event_ts", TIMESTAMP),
        pa.field("amount", pa.float64()),  # purchases only, else null
    ),
    primary_key=("event_id",),
    cursor_field="event_ts",
    unique_version_key=("_airbyte_raw_id",),
    required_fields=("event_id", "user_id", "event_type", "event_ts"),
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
