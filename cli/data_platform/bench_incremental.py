"""Incremental cost: the whole graph run for ONE new day after N days of history.

History is built once, in order: days ``[0, h1)`` are materialized (untimed), day ``h1`` is run
alone and timed, then history is caught up to ``h2`` days and day ``h2`` is timed, and so on. A
timed run is what a daily schedule per location does: one run per location, in the order of
:func:`data_platform.graph.plan_runs`, each over all of the location's assets, with the
daily-partitioned ones restricted to the new day's partition and the unpartitioned ones (the raw
sync, full-refresh models, ``user_features``) run as they always run.

Why one run per location rather than ``plan_runs``' split of partitioned and unpartitioned
assets: it is what a daily schedule per location launches, and it started dbt once per dbt
multi-asset per day instead of once per planned run. (While this was written, the split plan's
first build also failed: ``stg_users`` run alone selected the relationships test it shares with
``dim_users`` before ``dim_users`` existed; transformation has since restricted tests to
buildable ones.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dagster import DagsterInstance

from data_platform.demo import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from data_platform.graph import PlannedRun, build_location_graph, load_location_defs, plan_runs


class RunFailed(RuntimeError):
    """A planned run failed; the message names the run, the window and the failing steps."""


def run_window(
    location_defs: dict[str, Any],
    plan: list[PlannedRun],
    instance: DagsterInstance,
    first_day: str,
    last_day: str,
) -> dict[str, Any]:
    """Execute every planned run, partitioned ones over ``[first_day, last_day]``; timings.

    Returns ``{"seconds", "by_location": {location: seconds}, "steps": {step: seconds},
    "dbt_models": {asset: seconds}}``: a step's time is Dagster's own measure of the step
    (STEP_SUCCESS duration), a model's is dbt's (dagster-dbt's "Execution Duration").
    """
    by_location: dict[str, float] = {}
    steps: dict[str, float] = {}
    models: dict[str, float] = {}
    started = time.perf_counter()
    for planned in plan:
        defs = location_defs[planned.location]
        job = defs.resolve_implicit_job_def_def_for_assets(list(planned.asset_keys))
        if job is None:
            raise RunFailed(f"{planned.location} has no job for {planned.asset_keys}")
        tags = {}
        if planned.partitioned:
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: first_day,
                ASSET_PARTITION_RANGE_END_TAG: last_day,
            }
        t0 = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=list(planned.asset_keys),
            tags=tags,
            raise_on_error=False,
        )
        elapsed = time.perf_counter() - t0
        by_location[planned.location] = by_location.get(planned.location, 0.0) + elapsed
        failures = []
        for event in result.all_events:
            if event.event_type_value == "STEP_SUCCESS" and event.step_key:
                duration = getattr(event.event_specific_data, "duration_ms", None)
                if duration is not None:
                    steps[event.step_key] = round(duration / 1000, 3)
            if event.event_type_value == "ASSET_MATERIALIZATION":
                # dagster-dbt records each model's own time: the rest of a dbt step is dbt's
                # start-up, parsing and the tests.
                mat = event.event_specific_data.materialization
                duration = mat.metadata.get("Execution Duration")
                if duration is not None:
                    models[mat.asset_key.to_user_string()] = round(float(duration.value), 3)
            if event.is_step_failure and event.step_key:
                error = event.event_specific_data.error
                failures.append(f"{event.step_key}: {error.message.strip() if error else ''}")
        if not result.success:
            raise RunFailed(
                f"{planned.location} run over [{first_day}..{last_day}] failed: "
                + ("; ".join(failures) or "see the run's logs")[:3000]
            )
    return {
        "seconds": time.perf_counter() - started,
        "by_location": {k: round(v, 3) for k, v in by_location.items()},
        "steps": steps,
        "dbt_models": models,
    }


def per_location(plan: list[PlannedRun]) -> list[PlannedRun]:
    """One run per location, in the order locations first appear in ``plan``."""
    order: list[str] = []
    for planned in plan:
        if planned.location not in order:
            order.append(planned.location)
    return [
        PlannedRun(
            location,
            tuple(k for p in plan if p.location == location for k in p.asset_keys),
            any(p.partitioned for p in plan if p.location == location),
        )
        for location in order
    ]


def measure_incremental(
    home: str, histories: list[int], users: int, events_per_day: int, seed: int
) -> dict[str, Any]:
    """Time one new day after each history length in ``histories`` (ascending)."""
    from shared.partitions import day_of

    if histories != sorted(histories) or histories[0] < 1:
        raise ValueError(f"histories must be ascending and >= 1, got {histories}")
    Path(home).mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DATA_PLATFORM_HOME=home,
        DATA_PLATFORM_STANDIN_USERS=str(users),
        DATA_PLATFORM_STANDIN_EVENTS_PER_DAY=str(events_per_day),
        DATA_PLATFORM_STANDIN_SEED=str(seed),
    )
    location_defs = load_location_defs()
    plan = per_location(plan_runs(build_location_graph(location_defs)))
    runs = []
    done = 0  # days materialized so far
    (Path(home) / "dagster").mkdir(parents=True, exist_ok=True)
    with DagsterInstance.local_temp(tempdir=str(Path(home) / "dagster")) as instance:
        for h in histories:
            build = 0.0
            if h > done:  # catch the history up to h days (untimed for the comparison)
                os.environ["DATA_PLATFORM_STANDIN_DAYS"] = str(h)
                built = run_window(
                    location_defs, plan, instance, day_of(done).isoformat(),
                    day_of(h - 1).isoformat(),
                )  # fmt: skip
                build = built["seconds"]
            os.environ["DATA_PLATFORM_STANDIN_DAYS"] = str(h + 1)
            new_day = day_of(h).isoformat()
            timed = run_window(location_defs, plan, instance, new_day, new_day)
            done = h + 1
            runs.append(
                {"history_days": h, "new_day": new_day, "history_build_seconds": round(build, 2),
                 **timed}
            )  # fmt: skip
    return {"runs": runs, "plan": [f"{p.location}:{len(p.asset_keys)}" for p in plan]}
