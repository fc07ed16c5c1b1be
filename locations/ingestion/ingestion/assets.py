"""The ``raw/*`` assets: Airbyte streams landed as Iceberg tables.

Declared statically from :data:`ingestion.streams.STREAMS`, not from Airbyte's API: importing
the definitions makes no network call, and the assets exist whether or not Airbyte answers
(dagster-airbyte's ``load_airbyte_asset_specs`` would call Airbyte at load and, when it is down,
fail the location or leave it without assets). Which Airbyte connection lands which stream is
resolved when a run starts (:func:`ingestion.airbyte.plan_connection_syncs`).

One multi-asset holds all streams so that a run selecting several streams of the same Airbyte
connection starts that connection's sync exactly once.
"""

from collections.abc import Iterator

from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    MaterializeResult,
    TableColumn,
    TableSchema,
    multi_asset,
)

from ingestion.resources import AirbyteSyncResource
from ingestion.streams import RAW_NAMESPACE, STREAMS, RawStream, stream_for_key
from shared.catalog import layer_tags, owners
from shared.resources import IcebergCatalogResource


def column_schema(stream: RawStream) -> TableSchema:
    """The raw table's columns as Dagster table-schema metadata (Arrow type names, from the
    declared columns: no pyarrow needed at load)."""
    return TableSchema(
        columns=[
            TableColumn(name=n, type=t, description=stream.column_description(n))
            for n, t in stream.columns
        ]
    )


def raw_spec(stream: RawStream) -> AssetSpec:
    """The asset spec of one raw stream."""
    return AssetSpec(
        key=stream.key,
        description=stream.description,
        group_name=RAW_NAMESPACE,
        kinds={"airbyte", "iceberg"},
        owners=owners("ingestion"),
        tags=layer_tags(RAW_NAMESPACE),
        metadata={
            # Dagster's documented metadata keys (what its private TableMetadataSet would set).
            "dagster/column_schema": column_schema(stream),
            "dagster/table_name": stream.identifier,
            "primary_key": ", ".join(stream.primary_key),
            "cursor_field": stream.cursor_field,
        },
    )


#: Dagster concurrency pool of the raw syncs. The instance limits it to one step at a time (the
#: local instance's dagster.yaml, written by the data-platform CLI, and the Helm values' default
#: pool limit), so two runs never sync the raw tables at once. One pool for all streams: one op
#: syncs them together (one Airbyte sync per connection), and Dagster gives an op one pool.
RAW_SYNC_POOL = "raw_sync"


@multi_asset(
    name="airbyte_raw_sync",
    specs=[raw_spec(stream) for stream in STREAMS],
    can_subset=True,
    pool=RAW_SYNC_POOL,
)
def airbyte_raw_sync(
    context: AssetExecutionContext,
    airbyte: AirbyteSyncResource,
    iceberg: IcebergCatalogResource,
) -> Iterator[MaterializeResult | AssetMaterialization]:
    """Sync the selected raw streams: one Airbyte sync per connection in prod (waited for, with
    job id and row counts as metadata), the local Airbyte stand-in in local mode."""
    streams = [stream_for_key(key) for key in context.selected_asset_keys]
    streams.sort(key=lambda s: [x.name for x in STREAMS].index(s.name))
    yield from airbyte.sync(context, streams, iceberg)
