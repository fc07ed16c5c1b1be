"""The ingestion job, the landing-zone sensor and the regular-sync schedule.

Both the sensor and the schedule ship STOPPED (``default_status``): a team turns them on in the
UI when its Airbyte connections are ready, so deploying the location never starts syncs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

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

from ingestion.landing import LANDING_BATCH_TAG, streams_named_by
from ingestion.settings import LANDING_PREFIX
from ingestion.streams import STREAMS, STREAMS_BY_NAME
from shared.resources import ObjectStoreResource

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import fsspec

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


def list_batches(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, list[str]]:
    """The landing zone's batches: ``{batch id: [files]}``.

    A batch is a first-level folder of the landing prefix (``landing/<batch>/...``), or a single
    file directly under it (its name is the batch id). Names starting with ``.`` are uploads in
    progress and ignored; names starting with ``_`` are the loader's own (``_rejected/``, the
    quarantine of rejected batches) and ignored too.
    """
    root = root.rstrip("/")
    try:
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache(root)  # s3fs caches listings between ticks
        files = fs.find(root)
    except FileNotFoundError:
        return {}
    batches: dict[str, list[str]] = {}
    for path in sorted(files):
        relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
        parts = [p for p in relative.split("/") if p]
        if not parts or any(p.startswith(".") for p in parts) or parts[0].startswith("_"):
            continue
        batches.setdefault(parts[0], []).append(relative)
    return batches


def new_batches(batches: Mapping[str, list[str]], seen: Iterable[str]) -> list[str]:
    """Batch ids not requested before, in name order (the cursor holds the requested ids)."""
    done = set(seen)
    return sorted(b for b in batches if b not in done)


def run_key(batch_id: str) -> str:
    """The run key of a batch: the same on every tick, so Dagster launches at most one run per
    batch even if the cursor were lost."""
    return f"landing:{batch_id}"


def parse_cursor(cursor: str | None) -> list[str]:
    if not cursor:
        return []
    try:
        value = json.loads(cursor)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


@sensor(
    name="landing_sensor",
    job=ingestion_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Requests one ingestion run per new batch in the landing zone (stopped by default).",
)
def landing_sensor(context: SensorEvaluationContext, object_store: ObjectStoreResource):
    """Watch ``landing/`` (a local folder, or Garage through s3fs in prod) and request one
    ingestion run per new batch of files; run keys and the cursor make it exactly once."""
    fs = object_store.filesystem()
    root = object_store.path(LANDING_PREFIX)
    batches = list_batches(fs, root)
    seen = parse_cursor(context.cursor)
    fresh = new_batches(batches, seen)
    if not fresh:
        return SkipReason(f"no new batch under {root} ({len(batches)} known)")
    requests = [
        RunRequest(
            run_key=run_key(batch),
            # Only the streams the batch has files for (their checks come with them); a batch
            # naming none runs every stream, and the loader says what is wrong with it.
            asset_selection=[STREAMS_BY_NAME[n].key for n in streams_named_by(batches[batch])]
            or None,
            tags={
                LANDING_BATCH_TAG: batch,
                "ingestion/landing_files": str(len(batches[batch])),
            },
        )
        for batch in fresh
    ]
    context.update_cursor(json.dumps(sorted({*seen, *fresh})))
    return requests
