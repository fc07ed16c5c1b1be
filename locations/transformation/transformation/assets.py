"""The dbt models as Dagster assets, the dbt tests as asset checks.

Two multi-assets over the one dbt project, declared from ``dbt/target/manifest.json`` by
:mod:`transformation.manifest` (no dbt import at load); dbt runs inside the bodies, in the
step's own process (dbt's programmatic runner, events translated by dagster-dbt:
:mod:`transformation.dbt_run`):

* :func:`dbt_daily_models`: the models tagged ``daily`` (``staging/stg_events``,
  ``marts/fct_daily_events``), daily-partitioned with a single-run backfill policy. A run of a
  partition range is ONE dbt invocation over the whole window ``[start, end)``, passed as dbt's
  ``--event-time-start/--event-time-end`` flags (not ``--vars``, which would defeat dbt's partial
  parsing on every run: ``dbt/macros/day_window.sql``); each model replaces exactly those days.
* :func:`dbt_models`: every other model (``staging/stg_users``, ``marts/dim_users``), rebuilt in
  full.

Keys name the Iceberg tables (``[schema, model]``, shared.keys); dbt sources map to the ingestion
location's ``raw/*`` keys through their ``meta.dagster.asset_key``.
"""

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    ConfigurableResource,
    Output,
    multi_asset,
)
from pydantic import Field

from shared.keys import table_identifier
from shared.partitions import daily_partitions
from shared.resources import IcebergCatalogResource
from shared.settings import Settings
from transformation.automation import NIGHTLY_TAG, condition_for
from transformation.dbt_workdir import PARTIAL_PARSE, run_target
from transformation.manifest import TagSelection, build_specs, load_manifest
from transformation.project import DBT_PROJECT_DIR, ensure_manifest

#: dbt selection of the daily-partitioned models (tag set in their config).
DAILY_SELECT = "tag:daily"
#: dbt selection of the unpartitioned models (tag set in their config). Every model carries
#: exactly one of the two tags (tests/test_definitions.py checks it). Not "everything but daily":
#: dbt's eager exclusion would also drop the tests that read a daily model.
FULL_SELECT = "tag:full"
#: Tests that read a daily model and an unpartitioned one run with the unpartitioned models, after
#: the daily ones; the daily step must not pick them up through indirect selection.
CROSS_PARTITIONING_TAG = "tag:cross_partitioning"

DAILY_SELECTION = TagSelection(select=DAILY_SELECT, exclude=CROSS_PARTITIONING_TAG)
FULL_SELECTION = TagSelection(select=f"{FULL_SELECT} {CROSS_PARTITIONING_TAG}")

#: The manifest the specs are built from (prepared here if missing: a fresh clone).
MANIFEST_PATH = ensure_manifest()


class DbtProjectResource(ConfigurableResource):
    """The dbt project a run builds (profiles in the same folder). dbt itself runs in the step's
    process (``transformation.dbt_run``), imported when a run starts, never at load."""

    project_dir: str = Field(default=str(DBT_PROJECT_DIR), description="The dbt project folder.")


def dbt_target(settings: Settings) -> str:
    """The dbt target of a mode: DuckDB over the local catalog, or Trino in production."""
    return "duckdb" if settings.is_local else "trino"


def window_vars(start: dt.datetime, end: dt.datetime) -> dict[str, str]:
    """dbt vars of a partition time window (UTC days, end exclusive).

    >>> window_vars(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 15, tzinfo=dt.UTC))
    {'window_start': '2026-01-01', 'window_end': '2026-01-15'}
    """
    start_day, end_day = start.date(), end.date()
    for bound in (start, end):
        if (bound.hour, bound.minute, bound.second, bound.microsecond) != (0, 0, 0, 0):
            raise ValueError(f"partition window {start}..{end} is not whole UTC days")
    if start_day >= end_day:
        raise ValueError(f"empty partition window {start}..{end}")
    return {"window_start": start_day.isoformat(), "window_end": end_day.isoformat()}


def window_args(window: Mapping[str, str]) -> list[str]:
    """dbt's event-time flags for a day window (``window_vars``); none without a window.

    >>> window_args({"window_start": "2026-01-01", "window_end": "2026-01-02"})
    ['--event-time-start', '2026-01-01', '--event-time-end', '2026-01-02']
    """
    if not window:
        return []
    return ["--event-time-start", window["window_start"], "--event-time-end", window["window_end"]]


def build_args(
    settings: Settings, dbt_vars: Mapping[str, str], window: Mapping[str, str] | None = None
) -> list[str]:
    """``dbt build`` arguments for a run (selection is added by ``dbt_run.selection_args``).

    The day window goes in dbt's event-time flags, which partial parsing ignores; ``dbt_vars``
    (constant across runs, if any) go in ``--vars``.
    """
    args = ["build", "--target", dbt_target(settings)]
    if dbt_vars:
        args += ["--vars", json.dumps(dict(dbt_vars), sort_keys=True)]
    return args + window_args(window or {})


def run_dbt(
    context: AssetExecutionContext,
    dbt: DbtProjectResource,
    iceberg: IcebergCatalogResource,
    window: Mapping[str, str],
    selection: TagSelection,
) -> Iterator[Any]:
    """Run ``dbt build`` for the selected models and tests over the day ``window``
    (``window_vars``; empty: every day); stream materializations and checks.

    Each model's materialization carries its Iceberg table's snapshot and row count.
    """
    from transformation import dbt_run  # dagster-dbt and dbt: at run time only

    settings = iceberg.settings()
    all_vars = {}
    if iceberg.home:
        # The dbt process reads the catalog itself (its DuckDB plugin): tell it the same home.
        all_vars["data_platform_home"] = str(settings.home)
    args = build_args(settings, all_vars, window)
    manifest = load_manifest(str(MANIFEST_PATH))
    # A whole-table (`nightly`) test runs in its own run of checks only (its automation
    # condition requests it alone), never in a run that builds models: a day's run, or a
    # rebuild of the unpartitioned models.
    skip = (NIGHTLY_TAG,) if window or context.selected_asset_keys else ()
    args += dbt_run.selection_args(context, manifest, selection.select, selection.exclude, skip)
    context.log.info(f"dbt {' '.join(args)}")
    # dbt's target folder of its own under the home, with the home's partial-parse state
    # (transformation.dbt_workdir): nothing shared with other homes or concurrent runs. Kept,
    # with dbt's debug log, when dbt fails (the error raised below leaves the block).
    prepared_state = MANIFEST_PATH.with_name(PARTIAL_PARSE)
    project_dir = Path(dbt.project_dir)
    with run_target(
        settings.home, context.run.run_id, context.op_def.name, prepared_state
    ) as target:
        invocation = dbt_run.invoke(
            args, project_dir=project_dir, target_path=target, manifest_path=MANIFEST_PATH
        )
        for event in dbt_run.to_step_events(context, invocation.events):
            if isinstance(event, Output):
                event = event.with_metadata(
                    {**event.metadata, **_iceberg_metadata(context, iceberg, event)}
                )
            yield event
        error = invocation.error()
        if error is not None:
            raise error


def _iceberg_metadata(
    context: AssetExecutionContext, iceberg: IcebergCatalogResource, output: Output
) -> dict[str, Any]:
    key = context.asset_key_for_output(output.output_name)
    identifier = table_identifier(key)
    try:
        table = iceberg.load_table(identifier)
    except Exception as exc:  # metadata only: never fail a built model over it
        context.log.warning(f"cannot read Iceberg metadata of {identifier}: {exc}")
        return {"iceberg_table": identifier}
    from shared.iceberg import row_count

    snapshot = table.current_snapshot()
    return {
        "iceberg_table": identifier,
        "snapshot_id": str(snapshot.snapshot_id) if snapshot else "none",
        "row_count": row_count(table),
    }


def _specs(selection: TagSelection, **kwargs: Any):
    return build_specs(
        load_manifest(str(MANIFEST_PATH)),
        selection,
        project_dir=DBT_PROJECT_DIR,
        automation_condition=condition_for,
        **kwargs,
    )


_DAILY = _specs(DAILY_SELECTION, partitions_def=daily_partitions)
_FULL = _specs(FULL_SELECTION)


@multi_asset(
    name="dbt_daily_models",
    specs=_DAILY.specs,
    check_specs=_DAILY.check_specs,
    can_subset=True,
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
)
def dbt_daily_models(
    context: AssetExecutionContext, dbt: DbtProjectResource, iceberg: IcebergCatalogResource
):
    """Daily dbt models (stg_events, fct_daily_events): one dbt build over the partition window.

    A range of partitions (a backfill) is one run and one dbt invocation; each model replaces
    exactly the days of the window in its Iceberg table, so re-running a day never duplicates it.
    A run of checks only (the ``nightly`` tests, transformation.automation) has no partition:
    its tests read the whole table. A run of models always has one.
    """
    models = bool(context.selected_asset_keys)
    if not models and _nothing_to_test(context, iceberg):
        return
    window = window_vars(*context.partition_time_window) if models else {}
    yield from run_dbt(context, dbt, iceberg, window, DAILY_SELECTION)


def _nothing_to_test(context: AssetExecutionContext, iceberg: IcebergCatalogResource) -> bool:
    """In a run of checks only (the ``nightly`` tests): whether a table they test was never
    built (a new deployment at the nightly hour). Its checks are then not executed (shown so),
    rather than failing a run."""
    unbuilt = _unbuilt_tables({c.asset_key for c in context.selected_asset_check_keys}, iceberg)
    if unbuilt:
        context.log.info(f"not built yet, nothing to test: {', '.join(unbuilt)}")
    return bool(unbuilt)


def _unbuilt_tables(keys: set[AssetKey], iceberg: IcebergCatalogResource) -> list[str]:
    """The Iceberg tables of ``keys`` that do not exist yet."""
    from pyiceberg.exceptions import NoSuchTableError

    unbuilt = []
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        try:
            iceberg.load_table(table_identifier(key))
        except NoSuchTableError:
            unbuilt.append(table_identifier(key))
    return unbuilt


@multi_asset(
    name="dbt_models",
    specs=_FULL.specs,
    check_specs=_FULL.check_specs,
    can_subset=True,
)
def dbt_models(
    context: AssetExecutionContext, dbt: DbtProjectResource, iceberg: IcebergCatalogResource
):
    """Unpartitioned dbt models (stg_users, dim_users), rebuilt in full from the Iceberg tables.

    A run of checks only (a ``nightly`` test, transformation.automation) tests the tables as
    they are."""
    if not context.selected_asset_keys and _nothing_to_test(context, iceberg):
        return
    yield from run_dbt(context, dbt, iceberg, {}, FULL_SELECTION)
