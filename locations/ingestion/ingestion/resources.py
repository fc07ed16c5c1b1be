"""The ingestion resource: one sync entry point, the mode chosen when a run uses it.

Mode is read at run time from :func:`shared.settings.load_settings` (never at import), so both
modes have the same assets and the location loads without touching Airbyte:

* ``local`` (default): the local Airbyte stand-in (:mod:`ingestion.standin`) writes the raw
  tables through :func:`shared.iceberg.write_table`; a run tagged with a landing batch
  (``ingestion/landing_batch``, set by the landing sensor) loads that batch's files instead
  (:mod:`ingestion.landing`, the stand-in for Airbyte's file/S3 source);
* ``prod``: dagster-airbyte (:mod:`ingestion.airbyte`) starts one sync per Airbyte connection
  that holds a requested stream, waits for it and reports Airbyte's numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    ConfigurableResource,
    Failure,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from ingestion import landing
from ingestion.settings import LANDING_PREFIX, load_standin_settings
from ingestion.streams import STREAMS, STREAMS_BY_NAME, RawStream, key_index_spec, stream_for_key
from shared import airbyte as shared_airbyte
from shared.resources import IcebergCatalogResource, filesystem_for, store_path
from shared.settings import Settings

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    from dagster_airbyte.types import AirbyteOutput

    from ingestion.airbyte import ConnectionSync, PlatformAirbyteWorkspace, SnapshotState
    from shared.key_index import KeyIndexSpec


class AirbyteSyncResource(ConfigurableResource):
    """Syncs raw streams: through Airbyte's API in prod, with the local stand-in in local mode.

    The fields tune the prod client (dagster-airbyte's ``AirbyteWorkspace``); the endpoint and
    credentials come only from the environment (``AIRBYTE_URL``, ``AIRBYTE_WORKSPACE_ID``,
    ``AIRBYTE_CLIENT_ID``/``AIRBYTE_CLIENT_SECRET`` or ``AIRBYTE_USERNAME``/``AIRBYTE_PASSWORD``)
    so a secret is never part of run config or logs.
    """

    home: str | None = Field(
        default=None, description="Overrides DATA_PLATFORM_HOME (tests, the CLI)."
    )
    poll_interval: float = Field(default=5.0, description="Seconds between job status polls.")
    poll_timeout: float | None = Field(
        default=6 * 3600.0, description="Fail (and cancel the job) after this many seconds."
    )
    request_max_retries: int = Field(
        default=5, description="Retries of one API call on 5xx, 429, timeouts, refused connections."
    )
    request_retry_delay: float = Field(
        default=1.0, description="First backoff delay in seconds; doubles per retry (max 30 s)."
    )
    request_timeout: int = Field(default=30, description="Seconds before one API call times out.")
    max_items_per_page: int = Field(default=100, description="Page size of list calls (<=100).")
    max_retry_after: float = Field(
        default=120.0,
        description="Longest wait honoured from a Retry-After header on 429/503 (seconds).",
    )
    max_api_outage: float = Field(
        default=900.0,
        description=(
            "How long the Airbyte API may stay unreachable while jobs are followed before the "
            "step fails (seconds). The jobs are not cancelled then: they go on in Airbyte."
        ),
    )

    def settings(self) -> tuple[Settings, list[str]]:
        """Run-time settings, and the prod settings missing that a sync can do without."""
        return shared_airbyte.settings_for_sync(home=self.home)

    def workspace(self, settings: Settings) -> PlatformAirbyteWorkspace:
        """dagster-airbyte's workspace for the configured Airbyte (prod)."""
        from ingestion.airbyte import PlatformAirbyteWorkspace

        if settings.airbyte is None:
            raise Failure(
                "DATA_PLATFORM_ENV=prod but AIRBYTE_URL is not set: set AIRBYTE_URL, "
                "AIRBYTE_WORKSPACE_ID and the Airbyte credentials (see locations/ingestion/README.md)."
            )
        return shared_airbyte.airbyte_workspace(
            settings.airbyte,
            PlatformAirbyteWorkspace,
            poll_interval=self.poll_interval,
            poll_timeout=self.poll_timeout,
            request_max_retries=self.request_max_retries,
            request_retry_delay=self.request_retry_delay,
            request_timeout=self.request_timeout,
            max_items_per_page=self.max_items_per_page,
            max_retry_after=self.max_retry_after,
            max_api_outage=self.max_api_outage,
            cancel_on_termination=True,
            poll_previous_running_sync=True,
        )

    def sync(
        self,
        context: AssetExecutionContext,
        streams: Sequence[RawStream],
        iceberg_resource: IcebergCatalogResource,
    ) -> Iterator[MaterializeResult | AssetMaterialization]:
        """Sync ``streams`` and yield one materialization per landed table, each recording the
        UTC event days of the rows the sync added (``shared.changes``)."""
        settings, missing = self.settings()
        # Read before anything is written: the snapshots after these are what the sync added.
        before = _snapshots_before(iceberg_resource, missing, context)
        if settings.is_local:
            landed = self._sync_standin(context, settings, streams, iceberg_resource)
        else:
            landed = self._sync_airbyte(context, settings, missing, streams, iceberg_resource)
        for event in landed:
            yield _with_changed_days(event, before, iceberg_resource, context)

    # ---- local ---------------------------------------------------------------------------------

    def _sync_standin(
        self,
        context: AssetExecutionContext,
        settings: Settings,
        streams: Sequence[RawStream],
        iceberg_resource: IcebergCatalogResource,
    ) -> Iterator[MaterializeResult]:
        from ingestion import standin

        catalog = iceberg_resource.catalog()
        batch = context.run.tags.get(landing.LANDING_BATCH_TAG)
        if batch:
            # The run is the sensor's answer to a landing batch: load those files, the way
            # Airbyte's file source would, rather than generating data (a generated day mixed in
            # would make the batch's effect on the tables impossible to tell apart or audit).
            yield from self._load_landing(context, settings, streams, catalog, batch)
            return
        context.log.info(
            f"Local mode: the local Airbyte stand-in syncs {', '.join(s.name for s in streams)} "
            f"into {settings.catalog.uri.split('?')[0]}"
        )
        sizes = load_standin_settings()
        for stream in streams:
            result = standin.sync_stream(catalog, stream, sizes)
            context.log.info(
                f"stand-in {stream.identifier}: {result.write.rows_written} new rows, "
                f"{result.write.row_count} in total"
            )
            yield MaterializeResult(asset_key=stream.key, metadata=result.as_metadata(sizes))

    def _load_landing(
        self,
        context: AssetExecutionContext,
        settings: Settings,
        streams: Sequence[RawStream],
        catalog: Any,
        batch: str,
    ) -> Iterator[MaterializeResult | AssetMaterialization]:
        fs = filesystem_for(settings)
        root = store_path(settings, LANDING_PREFIX)
        files = landing.list_batches(fs, root).get(batch)
        previous = landing.previous_rejection(fs, root, batch)
        if previous is not None:
            # Rejected by an earlier run of this batch (re-executed, or killed while moving
            # the files): finish the quarantine; never load what a rejected batch left behind.
            where = landing.quarantine(fs, root, batch, files or [], previous, resume=True)
            raise Failure(
                f"Landing batch {batch!r} was rejected by an earlier run: {previous} Its files "
                f"are in {where}; drop a fixed batch under a new name.",
                metadata={"landing_batch": batch, "landing_outcome": "rejected"},
            )
        if not files:
            raise Failure(
                f"landing batch {batch!r}: no file under {root}/{batch} (a rejected batch is "
                f"moved to {root}/{landing.REJECTED_DIR}/; drop a fixed batch under a new name)",
                metadata={"landing_batch": batch, "landing_outcome": "missing"},
            )
        if not landing.Batch(batch, tuple(files)).complete:
            raise Failure(
                f"landing batch {batch!r} is not complete: a batch folder is loaded once its "
                f"producer has written {landing.SUCCESS_MARKER} into it, last (so a file still "
                "being written is never loaded in part). Nothing was loaded; it stays pending.",
                metadata={"landing_batch": batch, "landing_outcome": "pending"},
            )
        context.log.info(
            f"Local mode: loading landing batch {batch!r} ({len(files)} files under {root}) "
            "with the landing-batch loader (stand-in for Airbyte's file source)"
        )
        try:
            loads = landing.load_batch(catalog, fs, root, batch, files, dt.datetime.now(dt.UTC))
        except landing.LandingRejected as exc:
            where = landing.quarantine(fs, root, batch, files, str(exc))
            raise Failure(
                description=(
                    f"Landing batch {batch!r} rejected: {exc}. No table was changed; the "
                    f"batch's files were moved to {where} (reason in {landing.ERROR_FILE})."
                ),
                metadata={
                    "landing_batch": batch,
                    "landing_outcome": "rejected",
                    "table": exc.table or "",
                    "column": exc.column or "",
                    "file": exc.file or "",
                    "quarantined_to": where,
                },
            ) from None
        except Exception as exc:
            # Not a verdict on the data (a catalog or store outage, a bug): nothing is moved or
            # recorded, so the batch stays pending and the sensor's next tick retries it.
            raise Failure(
                description=(
                    f"Landing batch {batch!r} was not loaded: {type(exc).__name__}: {exc}. "
                    "This is not a rejection: the batch stays pending in the landing zone (not "
                    "quarantined, not recorded as loaded) and is retried on the next tick."
                ),
                metadata={"landing_batch": batch, "landing_outcome": "pending"},
            ) from exc
        # Files named _* other than the _SUCCESS marker are not data: named in the log and
        # metadata, so that a data file given such a name by mistake is visible, not unread.
        skipped = (
            ", ".join(
                f
                for f in files
                if landing.is_marker(f) and f != f"{batch}/{landing.SUCCESS_MARKER}"
            )
            or "none"
        )
        if skipped != "none":
            context.log.warning(f"landing batch {batch!r}: marker files not loaded: {skipped}")
        selected = {s.name for s in streams}
        for stream in streams:
            load = loads.get(stream.name)
            if load is None:
                context.log.info(f"landing batch {batch!r} has no file for {stream.identifier}")
                yield MaterializeResult(
                    asset_key=stream.key,
                    metadata={
                        "source": "local Airbyte stand-in: landing batch loader",
                        "landing_batch": batch,
                        "landing_files": "none",
                        "landing_skipped_files": skipped,
                        "rows_written": 0,
                    },
                )
                continue
            self._log_load(context, batch, load)
            yield MaterializeResult(
                asset_key=stream.key,
                metadata={**load.as_metadata(batch), "landing_skipped_files": skipped},
            )
        # Streams of the batch the run did not select are landed too (the batch is loaded as
        # one): recorded, like a prod connection's other streams.
        for name, load in loads.items():
            if name not in selected:
                self._log_load(context, batch, load)
                yield AssetMaterialization(
                    asset_key=load.stream.key,
                    description=f"Loaded from landing batch {batch!r} with the selected streams.",
                    metadata={**load.as_metadata(batch), "landing_skipped_files": skipped},
                )

    @staticmethod
    def _log_load(context: AssetExecutionContext, batch: str, load: landing.StreamLoad) -> None:
        if load.empty_files:
            context.log.warning(
                f"landing batch {batch!r}: empty file(s) {', '.join(load.empty_files)} for "
                f"{load.stream.identifier}: nothing to load from them"
            )
        if load.already_loaded:
            context.log.info(
                f"{load.stream.identifier}: landing batch {batch!r} is already in the table "
                "(an earlier run loaded it); nothing appended"
            )
        else:
            context.log.info(
                f"{load.stream.identifier}: {load.rows} rows from landing batch {batch!r}"
                + (f"; added columns {load.added}" if load.added else "")
                + (f"; missing columns {load.missing}" if load.missing else "")
            )

    # ---- prod ----------------------------------------------------------------------------------

    def _sync_airbyte(
        self,
        context: AssetExecutionContext,
        settings: Settings,
        missing: list[str],
        streams: Sequence[RawStream],
        iceberg_resource: IcebergCatalogResource,
    ) -> Iterator[MaterializeResult | AssetMaterialization]:
        from ingestion.airbyte import check_destination_tables, plan_connection_syncs

        workspace = self.workspace(settings)
        assert settings.airbyte is not None
        context.log.info(f"Syncing through {shared_airbyte.describe(settings.airbyte)}")
        client = workspace.get_client()
        # Done here, at run time, so an unreachable Airbyte fails this step (naming the URL)
        # instead of making the location's assets vanish at load. Only what the requested
        # streams need is fetched: the workspace, the paged connection list (it carries the
        # selected streams, prefix and namespace settings), and the default namespace of the
        # destinations involved; not every connection's and destination's details, as
        # dagster-airbyte's fetch_airbyte_workspace_data does.
        plan = plan_connection_syncs(client.list_connections(), [s.name for s in streams])
        for warning in check_destination_tables(plan, client.destination_namespace):
            context.log.warning(warning)
        selected = set(context.selected_asset_keys)
        for sync in plan:
            if sync.undeclared_streams:
                context.log.warning(
                    f"Airbyte connection {sync.connection_name} also syncs "
                    f"{', '.join(sync.undeclared_streams)}, which ingestion.streams does not "
                    "declare: add them to STREAMS to get assets and checks for them."
                )
        # The tables' snapshots before any job starts: a table is recorded with a snapshot only
        # if the job committed a newer one (never a snapshot the job did not write).
        before = {
            name: _snapshot_state(iceberg_resource, STREAMS_BY_NAME[name], missing, context)
            for sync in plan
            for name in sync.landed_streams
        }
        # One job per connection, all running in Airbyte at once, waited for together.
        outcomes = client.sync_connections(
            [sync.connection_id for sync in plan],
            {s.connection_id: s.connection.details() for s in plan if s.connection},
        )
        failures = []
        for sync in plan:
            output = outcomes[sync.connection_id]
            if isinstance(output, Failure):
                failures.append(output)
                continue
            stats = client.get_stream_stats(int(output.job_details["jobId"]))
            adopted = client.was_adopted(int(output.job_details["jobId"]))
            landed = _verify_landed(
                context, iceberg_resource, sync, output, stats, before, missing, adopted
            )
            if isinstance(landed, Failure):
                failures.append(landed)
                continue
            # A sync lands every selected stream of the connection, requested or not: record
            # each declared one, so the asset's state tells the truth.
            for name, metadata in landed.items():
                key = STREAMS_BY_NAME[name].key
                if key in selected:
                    yield MaterializeResult(asset_key=key, metadata=metadata)
                else:
                    yield AssetMaterialization(
                        asset_key=key,
                        description=f"Landed by Airbyte connection {sync.connection_name} "
                        "while syncing another stream.",
                        metadata=metadata,
                    )
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise Failure(
                f"{len(failures)} Airbyte syncs did not succeed: "
                + " | ".join(f.description or str(f) for f in failures),
                metadata=failures[0].metadata,
            )
        batch = context.run.tags.get(landing.LANDING_BATCH_TAG)
        if batch:
            # The sensor's run for a landing batch: Airbyte's S3 source read the zone after the
            # batch was complete. Recorded (after the sync succeeded) so the sensor stops
            # requesting it; a failed sync records nothing and the batch is retried.
            try:
                fs = filesystem_for(settings)
                root = store_path(settings, LANDING_PREFIX)
                files = landing.list_batches(fs, root).get(batch)
                if files:
                    names = [s.connection_name for s in plan]
                    landing.record_synced(fs, root, batch, files, names)
            except Exception as exc:  # the data is synced: at worst the sensor asks again
                context.log.warning(
                    f"landing batch {batch!r} synced, but not recorded in the landing ledger "
                    f"({type(exc).__name__}: {exc}): the sensor will request it again"
                )


def _snapshots_before(
    iceberg_resource: IcebergCatalogResource, missing: list[str], context: AssetExecutionContext
) -> dict[str, int | None] | None:
    """``{stream: current snapshot id}`` of every raw table with an event day, before a sync
    (None for a table not created yet); None when the catalog cannot be read (days unknown)."""
    from pyiceberg.exceptions import NoSuchTableError

    from shared.changes import current_snapshot_id

    if missing:
        return None
    before: dict[str, int | None] = {}
    try:
        for stream in STREAMS:
            if stream.event_time_column is None:
                continue
            try:
                table = iceberg_resource.load_table(stream.identifier)
            except NoSuchTableError:
                table = None
            before[stream.name] = current_snapshot_id(table)
    except Exception as exc:  # another system: the sync still runs, its days are "unknown"
        context.log.warning(f"Cannot read the raw tables' snapshots before the sync: {exc}")
        return None
    return before


def _with_changed_days(
    event: MaterializeResult | AssetMaterialization,
    before: dict[str, int | None] | None,
    iceberg_resource: IcebergCatalogResource,
    context: AssetExecutionContext,
) -> MaterializeResult | AssetMaterialization:
    """``event`` with the UTC event days of the rows its table gained since ``before``.

    Computed from the snapshots the sync committed (the day column of the files they added), so
    every path (stand-in, landing batch, Airbyte) records the same thing; with the days the
    added keys' earlier versions are on (an event re-delivered on another day changes the day it
    left: ``shared.changes.sync_changes``; the key is the stream's primary key). When they cannot
    be read, the days are recorded as unknown (``null``), which downstream treats as every day.
    """
    import time

    from shared import key_index
    from shared.changes import UNKNOWN, changed_days_metadata, sync_changes

    stream = stream_for_key(event.asset_key)
    if stream.event_time_column is None:
        return event
    spec = key_index_spec(stream)
    if spec is not None and before is not None:  # None: the catalog could not be read
        _catch_up_key_index(spec, iceberg_resource, context)
    try:
        if before is None:
            raise RuntimeError("the table's snapshot before the sync is unknown")
        table = iceberg_resource.load_table(stream.identifier)
        started = time.perf_counter()
        day_column = stream.event_time_column

        def earlier(snapshot_id: int, keys: Any) -> Any:
            # The hashed key index answers (falling back to reading raw when it cannot).
            assert spec is not None
            return key_index.earlier_versions(
                iceberg_resource.catalog(), table, spec, snapshot_id, keys, day_column
            )

        changes = sync_changes(
            table,
            before.get(stream.name),
            day_column,
            stream.primary_key,
            earlier=earlier if spec is not None else None,
        )
        days = changes.days
        moved = ""
        if changes.moved_keys:
            left = sorted(set(days) - set(changes.added_days))
            moved = (
                f"; {changes.moved_keys} re-delivered key(s) moved to another day, so the "
                f"day(s) they left are re-run too: {', '.join(map(str, left)) or 'none new'}"
            )
        context.log.info(
            f"{stream.identifier}: the sync changed {len(days)} event day(s)"
            + (f", {days[0]}..{days[-1]}" if days else "")
            + f" ({changes.redelivered_keys or 0} of {changes.added_keys} added keys were "
            f"already in the table{moved}; read in {time.perf_counter() - started:.2f} s)"
        )
        extra = changed_days_metadata(changes)
    except Exception as exc:  # best effort: the sync itself succeeded
        context.log.warning(f"{stream.identifier}: changed event days unknown: {exc}")
        extra = changed_days_metadata(UNKNOWN)
    metadata = {**(event.metadata or {}), **extra}
    if isinstance(event, AssetMaterialization):
        return event.with_metadata(metadata)
    return event._replace(metadata=metadata)


def _catch_up_key_index(
    spec: KeyIndexSpec, iceberg_resource: IcebergCatalogResource, context: AssetExecutionContext
) -> None:
    """Index the rows raw gained since the key index's marker (``shared.key_index``), right
    after the sync's raw commit. Best effort: the sync succeeded whatever happens here, and an
    index left behind only makes its readers read the tail from raw (or raw in full)."""
    import time

    from shared.key_index import catch_up

    started = time.perf_counter()
    try:
        done = catch_up(iceberg_resource.catalog(), spec)
    except Exception as exc:
        context.log.warning(f"{spec.identifier}: key index not caught up (readers read raw): {exc}")
        return
    what = "built from the whole table" if done.rebuilt else "caught up"
    context.log.info(
        f"{spec.identifier}: {what}, {done.rows_indexed} row(s) indexed through raw snapshot "
        f"{done.marker} in {time.perf_counter() - started:.2f} s"
        + (f"; merged {done.compacted} index files into one" if done.compacted else "")
    )


def _snapshot_state(
    iceberg_resource: IcebergCatalogResource,
    stream: RawStream,
    missing: list[str],
    context: AssetExecutionContext,
) -> SnapshotState | None:
    """The table's latest snapshot that added rows (a compaction's ``replace`` snapshot is no
    sync's commit: ``shared.changes.latest_data_snapshot``); ``SnapshotState(None)`` when the
    table does not exist, None when it cannot be known (catalog not configured or unreadable:
    logged)."""
    from ingestion.airbyte import SnapshotState

    if missing:
        return None
    from pyiceberg.exceptions import NoSuchTableError

    from shared.changes import latest_data_snapshot

    try:
        snapshot = latest_data_snapshot(iceberg_resource.load_table(stream.identifier))
    except NoSuchTableError:
        return SnapshotState(None)
    except Exception as exc:  # the catalog is another system: only a warning
        context.log.warning(f"Could not read Iceberg table {stream.identifier}: {exc}")
        return None
    if snapshot is None:
        return SnapshotState(None)
    return SnapshotState(snapshot.snapshot_id, snapshot.timestamp_ms)


def _verify_landed(
    context: AssetExecutionContext,
    iceberg_resource: IcebergCatalogResource,
    sync: ConnectionSync,
    output: AirbyteOutput,
    stats: Mapping[str, Mapping[str, Any]],
    before: Mapping[str, SnapshotState | None],
    missing: list[str],
    adopted: bool = False,
) -> dict[str, dict[str, Any]] | Failure:
    """Metadata of each declared stream a successful job landed, or the Failure saying that
    the job did not write a table it reported records for.

    A table's snapshot is recorded only when the job committed it (:func:`written_by_job`).
    A table without a new snapshot is recorded without one when the job committed no record
    for it (an incremental sync with nothing new); it fails the step when the job reported
    records for it (they went to another table), or when the job synced rows but none of the
    connection's tables moved (per-stream counts unknown). When the catalog cannot be read
    (not configured, unreachable) nothing can be verified: recorded without a snapshot.
    """
    from ingestion.airbyte import SnapshotState, job_start_time, sync_metadata, written_by_job

    job = output.job_details
    started = job_start_time(job)
    landed: dict[str, dict[str, Any]] = {}
    unverified: list[str] = []
    wrong: list[str] = []
    verified_any = False
    for name in sync.landed_streams:
        stream = STREAMS_BY_NAME[name]
        metadata: dict[str, Any] = sync_metadata(output, name, stats)
        landed[name] = metadata
        if missing:
            context.log.warning(
                f"Not reading {stream.identifier} from the Iceberg catalog: "
                f"{', '.join(missing)} not set; no snapshot recorded."
            )
            continue
        after = _snapshot_state(iceberg_resource, stream, [], context)
        if before.get(name) is None or after is None:
            metadata["iceberg_snapshot"] = "not verified (catalog unreadable)"
            continue
        reference = before[name]
        if adopted:
            # The job was running before this run looked: it may have committed already, so
            # "not the snapshot seen before" proves nothing; committed after its start does.
            if started is None:
                metadata["iceberg_snapshot"] = "not verified (job start time unknown)"
                continue
            reference = SnapshotState(None)
        if written_by_job(reference, after, started):
            verified_any = True
            metadata.update(_table_metadata(iceberg_resource, stream, context))
            continue
        committed = (stats.get(name) or {}).get("recordsCommitted")
        describe = (
            f"{stream.identifier} has no snapshot committed by job {job.get('jobId')} "
            f"(current snapshot {after.snapshot_id}, before the job {before[name].snapshot_id})"
        )
        if committed is not None and int(committed) > 0:
            wrong.append(f"{describe} although the job committed {committed} records of {name!r}")
        elif committed is not None:
            metadata["iceberg_snapshot"] = "unchanged: the job committed no record of it"
        else:
            unverified.append(describe)
            metadata["iceberg_snapshot"] = f"unchanged: {describe}"
    rows = job.get("rowsSynced")
    if unverified and not verified_any and rows is not None and int(rows) > 0:
        wrong.append(f"the job synced {rows} rows, yet {'; '.join(unverified)}")
    elif unverified:
        context.log.warning(
            f"Airbyte gave no per-stream counts and {'; '.join(unverified)}: recorded without "
            "a snapshot."
        )
    if wrong:
        connection = sync.connection
        naming = f" ({connection.describe_naming()})" if connection else ""
        return Failure(
            f"Airbyte job {job.get('jobId')} of connection {sync.connection_name!r} "
            f"({sync.connection_id}) succeeded, but {'; '.join(wrong)}: the connection writes "
            f"somewhere else{naming}. Expected tables: "
            f"{', '.join(f'raw.{n}' for n in sync.landed_streams)}. Nothing was recorded for "
            "this connection.",
            metadata={
                "airbyte_job_id": MetadataValue.int(int(job.get("jobId", -1))),
                "airbyte_connection_id": sync.connection_id,
            },
        )
    return landed


def _table_metadata(
    iceberg_resource: IcebergCatalogResource,
    stream: RawStream,
    context: AssetExecutionContext,
) -> dict[str, Any]:
    """Row count, snapshot id and metadata location of the table Airbyte wrote (best effort:
    the sync succeeded whatever the catalog says; a failure here is logged, not raised)."""
    from shared import iceberg

    try:
        table = iceberg_resource.load_table(stream.identifier)
        described = iceberg.describe_write(table, stream.identifier, 0).as_metadata()
        described.pop("rows_written")  # Airbyte wrote the rows; its counts are above
        return described
    except Exception as exc:  # the catalog is another system: any failure is only a warning
        context.log.warning(f"Could not describe Iceberg table {stream.identifier}: {exc}")
        return {}
