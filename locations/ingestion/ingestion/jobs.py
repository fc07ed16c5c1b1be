"""The ingestion job, the landing-zone sensor and the regular-sync schedule.

Both the sensor and the schedule ship STOPPED (``default_status``): a team turns them on in the
UI when its Airbyte connections are ready, so deploying the location never starts syncs.
"""

from __future__ import annotations

from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from ingestion.landing import (
    LANDING_BATCH_TAG,
    SUCCESS_MARKER,
    Batch,
    Zone,
    scan_zone,
    streams_named_by,
)
from ingestion.settings import LANDING_PREFIX
from ingestion.streams import STREAMS, STREAMS_BY_NAME
from shared.resources import ObjectStoreResource

#: Materializes every raw stream (and runs their checks).
ingestion_job = define_asset_job(
    name="ingestion_job",
    selection=AssetSelection.assets(*[s.key for s in STREAMS]),
    description="Sync every raw stream (Airbyte in prod, the local stand-in locally).",
)

raw_sync_schedule = ScheduleDefinition(
    name="raw_sync_hourly",
    job=ingestion_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="The regular Airbyte syncs of the raw streams, hourly at :15 (stopped by default).",
)


def run_key(batch_id: str, listing: str = "", attempt: int = 0) -> str:
    """The run key of a batch: the same on every tick until a run for it finishes, so Dagster
    launches at most one run per batch at a time; a finished run that left the batch pending
    (failed, killed and reaped) moves ``attempt`` on, so the next tick retries it."""
    return f"landing:{batch_id}:{listing}:{attempt}"


def finished_runs(instance: Any, batch_id: str) -> int:
    """Runs of this batch that have finished, whatever their outcome."""
    from dagster import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
    return instance.get_runs_count(
        RunsFilter(tags={LANDING_BATCH_TAG: batch_id}, statuses=statuses)
    )


def pending_batches(zone: Zone) -> tuple[list[Batch], list[str]]:
    """(complete batches not recorded as loaded with their current listing, names of batches
    still waiting for their ``_SUCCESS`` marker), in name order."""
    pending: list[Batch] = []
    waiting: list[str] = []
    for name in sorted(zone.batches):
        batch = zone.batches[name]
        if zone.is_loaded(batch):
            continue
        if batch.complete:
            pending.append(batch)
        else:
            waiting.append(name)
    return pending, waiting


@sensor(
    name="landing_sensor",
    job=ingestion_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Requests one ingestion run per complete landing batch not loaded yet (stopped by "
    "default).",
)
def landing_sensor(context: SensorEvaluationContext, object_store: ObjectStoreResource):
    """Watch ``landing/`` (a local folder, or Garage through s3fs in prod) and request one
    ingestion run per complete batch that is not loaded yet (``ingestion.landing``).

    Keeps no cursor: whether a batch is loaded is read from the ledger the loader writes after
    its commit (``landing/_loaded/``), so the state never grows here, survives a lost cursor, and
    a batch whose run was killed before committing is requested again."""
    fs = object_store.filesystem()
    root = object_store.path(LANDING_PREFIX)
    zone = scan_zone(fs, root)
    pending, waiting = pending_batches(zone)
    shown = ""
    if waiting:
        shown = ", ".join(waiting[:5]) + (
            f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
        )
        context.log.info(f"waiting for {SUCCESS_MARKER} in {len(waiting)} batch folder(s): {shown}")
    if not pending:
        return SkipReason(
            f"no batch to load under {root} ({len(zone.batches)} listed"
            + (f"; {len(waiting)} waiting for {SUCCESS_MARKER}: {shown}" if waiting else "")
            + ")"
        )
    return [
        RunRequest(
            run_key=run_key(
                batch.name, batch.listing_signature, finished_runs(context.instance, batch.name)
            ),
            # Only the streams the batch has files for (their checks come with them); a batch
            # naming none runs every stream, and the loader says what is wrong with it.
            asset_selection=[STREAMS_BY_NAME[n].key for n in streams_named_by(batch.files)] or None,
            tags={
                LANDING_BATCH_TAG: batch.name,
                "ingestion/landing_files": str(len(batch.data_files)),
            },
        )
        for batch in pending
    ]
