"""Incremental cost: what production runs after a one-day sync, after N days of history.

Each history length gets a platform of its own (home, catalog, Dagster instance on its own
PostgreSQL server), whose history is built first, in order, the way production builds it: a raw
sync per day, then what the automation conditions request (``shared.automation``, evaluated tick
after tick on the workspace-wide graph as the daemon does, and as ``data-platform demo`` does:
the same :class:`data_platform.demo.DemoAutomation`), until nothing more is requested. Then each
platform's stand-in is given one more day and the same cycle is timed, the platforms in turn (a
new day after 1 day, after 30, after 180, then again): the raw sync (one new day), then exactly
the runs the automation requests: the changed day plus the late-data lookback of each daily
asset, and the unpartitioned models and features. The figures say how many partitions of each
daily asset were requested, and the seconds, per location, per step and per dbt model.

Between two days, the table maintenance that the deployment schedules hourly has run
(:func:`maintain_tables`: the raw tables' small files compacted, old snapshots of every table
expired), as it would have many times in a real day; its own seconds after each timed day are
``maintenance_samples`` (a job of its own, not part of the cycle).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import DagsterInstance

from data_platform.bench_postgres import postgres_storage, throwaway_postgres
from data_platform.demo import (
    AUTOMATION_CURSOR,
    DemoAutomation,
    execute_requested_run,
    prepare_workspace,
)
from data_platform.graph import (
    WORKSPACE_FILE,
    RequestedRun,
    build_location_graph,
    load_location_defs,
    plan_runs,
    sync_runs,
    workspace_definitions,
    workspace_locations,
)
from data_platform.launch import WorkspaceLauncher


class RunFailed(RuntimeError):
    """A run failed; the message names the run, the window and the failing steps."""


def run_cycle(
    location_defs: dict[str, Any],
    syncs: list[RequestedRun],
    automation: DemoAutomation | None,
    plan: list,
    launcher: WorkspaceLauncher,
    with_checks: bool = True,
) -> dict[str, Any]:
    """The raw syncs, then every run the automation requests until it is quiet (``automation``
    None: the syncs only); timings.
    ``with_checks=False``: the same runs without the checks that can be left out
    (:func:`data_platform.demo.execute_requested_run`), to measure what the checks cost.

    Returns ``{"seconds", "by_location", "steps", "dbt_models", "partitions", "runs"}``: a step's
    time is Dagster's own measure of the step (STEP_SUCCESS duration), a model's is dbt's
    (dagster-dbt's "Execution Duration"), ``partitions`` the number of partitions of each daily
    asset that the runs materialized.
    """
    by_location: dict[str, float] = {}
    steps: dict[str, float] = {}
    models: dict[str, float] = {}
    partitions: dict[str, int] = {}
    runs = 0
    started = time.perf_counter()
    ticks = automation.ticks(plan) if automation is not None else []
    for batch in itertools.chain([syncs], ticks):
        for run in batch:
            if not with_checks and not run.asset_keys:
                continue  # a run of checks only (a nightly test at its hour): nothing left
            t0 = time.perf_counter()
            result = execute_requested_run(
                location_defs[run.location], run, launcher, with_checks=with_checks
            )
            elapsed = time.perf_counter() - t0
            runs += 1
            by_location[run.location] = by_location.get(run.location, 0.0) + elapsed
            failures = []
            for event in result.all_events:
                if event.event_type_value == "STEP_SUCCESS" and event.step_key:
                    duration = getattr(event.event_specific_data, "duration_ms", None)
                    if duration is not None:
                        steps[event.step_key] = round(
                            steps.get(event.step_key, 0.0) + duration / 1000, 3
                        )
                if event.event_type_value == "ASSET_MATERIALIZATION":
                    mat = event.event_specific_data.materialization
                    key = mat.asset_key.to_user_string()
                    if mat.partition is not None:
                        partitions[key] = partitions.get(key, 0) + 1
                    # dagster-dbt records each model's own time: the rest of a dbt step is
                    # dbt's start-up, parsing and the tests.
                    duration = mat.metadata.get("Execution Duration")
                    if duration is not None:
                        models[key] = round(models.get(key, 0.0) + float(duration.value), 3)
                if event.is_step_failure and event.step_key:
                    error = event.event_specific_data.error
                    failures.append(f"{event.step_key}: {error.message.strip() if error else ''}")
            if not result.success:
                window = f" over {run.partition_range}" if run.partition_range else ""
                raise RunFailed(
                    f"{run.location} run{window} failed: "
                    + ("; ".join(failures) or "see the run's logs")[:3000]
                )
    return {
        "seconds": time.perf_counter() - started,
        "by_location": {k: round(v, 3) for k, v in by_location.items()},
        "steps": steps,
        "dbt_models": models,
        "partitions": partitions,
        "runs": runs,
    }


def maintain_tables(home: str) -> float:
    """The table maintenance the deployment schedules hourly (each location's
    ``<location>_table_maintenance`` job): compact the raw tables' small files, then expire old
    snapshots of every table the three locations own. Called once per simulated day, with the
    minimum age at 0 (the benchmark compresses days into seconds: an hour-old rule would keep
    every snapshot). Returns its seconds (not part of a cycle: the job runs on its own)."""
    from analytics.maintenance import owned_tables as analytics_tables
    from ingestion.maintenance import compacted_tables
    from ingestion.maintenance import owned_tables as ingestion_tables
    from shared.compaction import compact_tables
    from shared.maintenance import expire_tables
    from shared.resources import IcebergCatalogResource
    from transformation.maintenance import owned_tables as transformation_tables

    t0 = time.perf_counter()
    catalog = IcebergCatalogResource(home=home).catalog()
    compact_tables(catalog, compacted_tables())  # both skip a table not created yet
    expire_tables(catalog, [*ingestion_tables(), *transformation_tables(), *analytics_tables()])
    return time.perf_counter() - t0


@dataclass
class _Platform:
    """One history length's platform: a home of its own (catalog, warehouse, dbt state), a
    Dagster instance on a PostgreSQL server of its own, and the automation's cursor."""

    history_days: int
    home: str
    launcher: WorkspaceLauncher
    automation: DemoAutomation
    #: Days materialized so far (the next new day's 0-based index).
    done: int = 0
    build_seconds: float = 0.0
    #: The timed new days (``timed_day``'s results), with the checks and without them.
    timed: list[dict[str, Any]] = field(default_factory=list)
    unchecked: list[dict[str, Any]] = field(default_factory=list)

    def use(self, day_count: int) -> None:
        """Point the process at this platform, with the stand-in serving ``day_count`` days:
        the settings (``shared.settings``) and the stand-in read both from the environment at
        run time, and dbt's environment is closed after every invocation
        (``transformation.dbt_run``), so nothing of another home is reused."""
        os.environ["DATA_PLATFORM_HOME"] = self.home
        os.environ["DATA_PLATFORM_STANDIN_DAYS"] = str(day_count)


def measure_incremental(
    home: str,
    histories: list[int],
    users: int,
    events_per_day: int,
    seed: int,
    repeats: int = 3,
    without_checks: bool = False,
) -> dict[str, Any]:
    """Time the cycle of one new day after each history length in ``histories`` (ascending),
    and the bare floor of the same day's work (:func:`bare_day`).

    Each history length is a platform of its own (:class:`_Platform`, under
    ``<home>/history-<days>``), its history built first (untimed). Then ``repeats`` new days are
    timed on each, in turn: one new day after 1 day, one after 30, one after 180, then the
    second new day of each, and so on, each cycle followed by its bare floor. The MEDIAN cycle
    of each history length is reported, with the median floor: one cycle is a few seconds, and
    a single sample on a shared machine moved a ratio by a third between runs. Taking the
    histories in turn, rather than all the new days of one history before the next, makes a
    slow spell of the machine (minutes long, measured) fall on every history alike instead of
    on one side of a ratio. Every sample's seconds are kept (``samples``, ``bare_samples``).

    ``without_checks``: after them, ``repeats`` more new days of each history are timed (in turn
    again) with the runs leaving out every check that can be left out (dbt's tests, the raw
    tables' checks, the freshness checks; analytics' checks are computed in their assets' ops
    and stay): ``without_checks`` is their median cycle, which splits the platform's time into
    what the checks cost and the rest.
    """
    from shared.partitions import day_of
    from shared.settings import late_data_lookback_days

    if histories != sorted(set(histories)) or histories[0] < 1:
        raise ValueError(f"histories must be ascending, distinct and >= 1, got {histories}")
    Path(home).mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DATA_PLATFORM_HOME=home,
        DATA_PLATFORM_STANDIN_USERS=str(users),
        DATA_PLATFORM_STANDIN_EVENTS_PER_DAY=str(events_per_day),
        DATA_PLATFORM_STANDIN_SEED=str(seed),
        # maintain_tables: days pass in seconds here.
        DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES="0",
    )
    lookback = late_data_lookback_days()
    # As the demo does: a model or test pulled since the last parse must be in the manifest the
    # runs translate dbt's events with (dbt knows the node, the stale manifest would not).
    prepare_workspace()
    location_defs = load_location_defs()
    graph = build_location_graph(location_defs)
    plan = plan_runs(graph)
    syncs = sync_runs(graph, plan)

    def timed_day(platform: _Platform, with_checks: bool) -> dict[str, Any]:
        """One new day on ``platform``: its cycle, then (with checks) its floor; the hourly
        maintenance after it (untimed for the cycle, its seconds kept)."""
        day = platform.done  # the new day (0-based)
        platform.use(day + 1)
        # A full collection before each timed part (untimed), as timeit turns the collector off
        # while it times: a generation-2 collection walks every live object of this process,
        # ~500k of them (every platform's instance and automation state, earlier cycles'
        # leftovers), and took 0.34-0.41 s, in one cycle out of three (measured with
        # gc.callbacks). A cost of the benchmark's long-lived process, which a run in the
        # deployment (a process of its own per run) does not carry, falling on random samples.
        gc.collect()
        cycle = run_cycle(
            location_defs, syncs, platform.automation, plan, platform.launcher, with_checks
        )
        out: dict[str, Any] = {"cycle": cycle}
        if with_checks:
            # The floor for the same day, right after (the tables hold the same days; the bare
            # process rewrites the same partitions with the same contents).
            sql = compile_models(
                platform.home, day_of(day - lookback).isoformat(), day_of(day + 1).isoformat(),
                Path(platform.home) / f"bare-target-{day}",
            )  # fmt: skip
            gc.collect()
            out["floor"] = bare_day(platform.home, day, lookback, sql)
        out["maintenance"] = round(maintain_tables(platform.home), 3)
        platform.done += 1
        return out

    with contextlib.ExitStack() as stack:
        platforms = [_open_platform(stack, Path(home), h, location_defs) for h in histories]
        for platform in platforms:
            # One raw sync per day, as production syncs (at least daily): each is a commit, and
            # what grows with the number of commits (a raw table's manifests and snapshots) is
            # then measured too. After the last day's sync the automation requests the runs for
            # every day those syncs changed, as after a daemon outage. Between two days, the
            # hourly table maintenance (maintain_tables) has run.
            h = platform.history_days
            for day in range(1, h + 1):
                platform.use(day)
                automation = platform.automation if day == h else None
                platform.build_seconds += run_cycle(
                    location_defs, syncs, automation, plan, platform.launcher
                )["seconds"]
                platform.build_seconds += maintain_tables(platform.home)
            platform.done = h
        # The rounds with the checks, then (``without_checks``) as many without them.
        for with_checks in [True] * repeats + [False] * (repeats if without_checks else 0):
            for platform in platforms:
                samples = platform.timed if with_checks else platform.unchecked
                samples.append(timed_day(platform, with_checks))
    results = []
    for platform in platforms:
        days = platform.timed
        cycles = [d["cycle"] for d in days]
        floors = [d["floor"] for d in days]
        result = {
            "history_days": platform.history_days,
            "history_build_seconds": round(platform.build_seconds, 2),
            **median_by(cycles, "seconds"),
            "bare": median_by(floors, "seconds"), "repeats": repeats,
            "samples": [round(c["seconds"], 3) for c in cycles],
            "bare_samples": [f["seconds"] for f in floors],
            "maintenance_samples": [d["maintenance"] for d in days],
        }  # fmt: skip
        if without_checks:
            plain = [d["cycle"] for d in platform.unchecked]
            result["without_checks"] = {
                **median_by(plain, "seconds"),
                "samples": [round(c["seconds"], 3) for c in plain],
            }
        results.append(result)
    return {"runs": results}


def _open_platform(
    stack: contextlib.ExitStack, root: Path, history_days: int, location_defs: dict[str, Any]
) -> _Platform:
    """A platform for one history length under ``root/history-<days>``: its Dagster instance on
    a throwaway PostgreSQL server of its own (closed with ``stack``), its launcher and its
    automation (the demo's, with its cursor in the instance folder)."""
    home = root / f"history-{history_days}"
    instance_dir = home / "dagster"
    instance_dir.mkdir(parents=True, exist_ok=True)
    # Runs and events in PostgreSQL, as the deployment stores them (bench_postgres says why).
    url = stack.enter_context(throwaway_postgres(home / "postgres"))
    instance = stack.enter_context(
        DagsterInstance.local_temp(tempdir=str(instance_dir), overrides=postgres_storage(url))
    )
    # Runs of the locations' jobs on the instance, as the demo launches them.
    launcher = WorkspaceLauncher(instance, workspace_locations(), WORKSPACE_FILE.parent)
    automation = DemoAutomation(
        workspace_definitions(location_defs), instance, instance_dir / AUTOMATION_CURSOR
    )
    return _Platform(history_days, str(home), launcher, automation)


def median_by(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The sample whose ``key`` is the median (the lower middle one for an even count): a whole
    sample, so its per-step and per-model figures add up to its seconds."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples, key=lambda s: s[key])
    return ordered[(len(ordered) - 1) // 2]


#: The dbt models in the order one bare process builds them, with their day column (None: full).
BARE_MODELS = (
    ("staging", "stg_events", "event_date"),
    ("staging", "stg_users", None),
    ("staging", "stg_user_versions", None),
    ("marts", "fct_daily_events", "event_date"),
    ("marts", "dim_users", None),
)


def compile_models(home: str, start: str, end: str, target: Path) -> dict[str, dict[str, str]]:
    """The SQL dbt runs for the five models and their tests over the day window
    ``[start, end)`` (untimed): ``{"models": {model: sql}, "tests": {test: sql}}``.

    ``dbt compile`` with the window as vars: the very SQL the platform's runs execute. The tests
    are the ones the day's runs execute: every test of the five models except the ``nightly``
    one (a run of its own at 03:00 UTC, not part of a day's cycle).
    """
    import json
    import subprocess
    import sys

    from transformation.project import DBT_PROJECT_DIR

    project = Path(DBT_PROJECT_DIR)
    cmd = [
        str(Path(sys.executable).with_name("dbt")), "compile", "--profiles-dir", str(project),
        "--project-dir", str(project), "--target", "duckdb", "--target-path", str(target),
        "--select", *[m for _, m, _ in BARE_MODELS], "--exclude", "tag:nightly",
        "--vars", json.dumps({"window_start": start, "window_end": end}),
    ]  # fmt: skip
    env = {**os.environ, "DATA_PLATFORM_HOME": home}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=project)
    if out.returncode != 0:
        raise RunFailed(f"dbt compile failed: {out.stdout[-2000:]}")
    compiled = target / "compiled" / "data_platform" / "models"
    models = {m: (compiled / s / f"{m}.sql").read_text() for s, m, _ in BARE_MODELS}
    # The tests compiled (generic and singular), from the run's results and the manifest it
    # wrote (a compiled file's name can be a hash of a long test name).
    nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    ran = json.loads((target / "run_results.json").read_text())["results"]
    tests = {
        nodes[r["unique_id"]]["name"]: nodes[r["unique_id"]]["compiled_code"]
        for r in ran
        if r["unique_id"].startswith("test.")
    }
    return {"models": models, "tests": tests}


def bare_day(
    home: str, day_index: int, lookback: int, sql: dict[str, dict[str, str]]
) -> dict[str, float]:
    """The floor: the same day's work in one Python process with the same engines, no
    orchestration (no Dagster, no dbt, no event log).

    * raw: the stand-in's generator for the day, one pyiceberg append (to a scratch table
      ``bench.raw_events``: appending the day to ``raw.events`` again would duplicate it);
    * dbt models: the compiled SQL on DuckDB over views of the same Iceberg files
      (``scan_sql``), each result written by the plugin's own writer (``store_batch``: the same
      pyiceberg overwrite of the window's days, or of the whole table);
    * analytics: the same reads (``read_upstream``) and polars functions, the same writes, for
      the same days as the platform's run (the new day plus the lookback);
    * checks: the day's data-quality work, as the platform does it every day: the dbt tests'
      compiled SQL on the same DuckDB views (a count of the failing rows, as dbt wraps it), the
      raw tables' check functions (``ingestion.checks.CHECKS``) and the analytics checks'
      functions with the reads they need. The freshness checks read only Dagster's event log:
      no data work, nothing to do here.

    ``seconds`` is the whole; ``without_checks`` the same minus ``checks`` (the floor of a
    platform that checks nothing, to set against the cycle run without its checks).
    """
    import datetime as dt
    import tempfile

    import duckdb
    import polars as pl

    from analytics import features as feature_defs
    from analytics import metrics as metric_defs
    from analytics.checks import (
        check_daily_metrics,
        check_user_features,
        reconcile_features_with_dim_users,
    )
    from analytics.frames import IS_EVENT, with_utc_event_date
    from analytics.io import metadata_max, read_upstream, to_arrow
    from analytics.sources import (
        DIM_USERS,
        DIM_USERS_TOTALS,
        FCT_DAILY_EVENTS,
        STG_EVENTS,
        STG_USER_VERSIONS,
    )
    from ingestion import standin
    from ingestion.checks import CHECKS, checks_for
    from ingestion.settings import load_standin_settings
    from ingestion.streams import STREAMS
    from shared import iceberg
    from shared.partitions import day_of
    from shared.resources import IcebergCatalogResource
    from transformation.duckdb_iceberg import quote_identifier, scan_sql, store_batch

    parts: dict[str, float] = {"checks": 0.0}
    t0 = time.perf_counter()
    resource = IcebergCatalogResource(home=home)
    catalog = resource.catalog()
    events = standin.generate_events(load_standin_settings(), day_index)
    iceberg.write_table(catalog, "bench.raw_events", events, mode="append")
    t1 = time.perf_counter()
    parts["raw"] = t1 - t0
    # The raw tables' checks, as the checks' step runs them after the sync.
    for stream in STREAMS:
        for suffix in checks_for(stream):
            CHECKS[suffix][0](stream, resource)
    t1b = time.perf_counter()
    parts["checks"] += t1b - t1

    start, end = day_of(day_index - lookback), day_of(day_index + 1)
    scratch = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for ns in ("raw", "staging", "marts"):
        con.execute(f"create schema if not exists {ns}")
        for ident in catalog.list_tables(ns):
            view = f"{ns}.{quote_identifier(ident[-1])}"
            # The window, as the dbt plugin's views have it in a day's run (run_window).
            table_sql = scan_sql(catalog.load_table(".".join(ident)), scratch, (start, end))
            con.execute(f"create or replace view {view} as select * from {table_sql}")
    for schema, model, day_column in BARE_MODELS:
        path = scratch / f"{model}.parquet"
        con.execute(f"copy ({sql['models'][model]}) to '{path}' (format parquet)")
        window = (
            {"window_start": start.isoformat(), "window_end": end.isoformat()} if day_column else {}
        )
        store_batch(catalog, f"{schema}.{model}", path, day_partition_column=day_column, **window)
        path.unlink()  # as the plugin's store does once the batch is written
        table_sql = scan_sql(catalog.load_table(f"{schema}.{model}"), scratch, (start, end))
        con.execute(f"create or replace view {schema}.{model} as select * from {table_sql}")
    t2 = time.perf_counter()
    parts["dbt_models"] = t2 - t1b
    for test_sql in sql["tests"].values():
        con.execute(f"select count(*) from ({test_sql}) dbt_internal_test").fetchone()
    con.close()
    # The views' snapshot copies, if any (as the plugin's clear_scratch after an invocation):
    # every floor of a run left its folder in the temp dir before (GBs over a few runs).
    shutil.rmtree(scratch, ignore_errors=True)
    t2b = time.perf_counter()
    parts["checks"] += t2b - t2

    ev = read_upstream(
        resource, STG_EVENTS, window_column="event_ts", start=start, end=end,
        pruning_column="event_date",
    )  # fmt: skip
    us = read_upstream(resource, DIM_USERS, window_column="signup_at", start=start, end=end)
    # As the asset does: the metrics and the days with events in one collect.
    metrics, days = pl.collect_all(
        [
            metric_defs.daily_metrics(ev.frame, us.frame, start, end),
            with_utc_event_date(ev.frame).filter(IS_EVENT).select(pl.col("event_date").unique()),
        ]
    )
    tc = time.perf_counter()
    mart = read_upstream(
        resource, FCT_DAILY_EVENTS, window_column="event_date", start=start, end=end
    ).frame.collect()
    check_daily_metrics(metrics, start, end, set(days.to_series().to_list()), mart)
    analytics_checks = time.perf_counter() - tc
    iceberg.write_table(
        catalog, "analytics.daily_metrics", to_arrow(metrics), mode="overwrite",
        # The same pyiceberg filter the daily_metrics asset commits with (a string, not the
        # polars expression day_range_filter builds for reads).
        overwrite_filter=f"metric_date >= '{start.isoformat()}' and metric_date < '{end.isoformat()}'",
        partition_by_day="metric_date",
    )  # fmt: skip
    events_all = read_upstream(resource, STG_EVENTS)
    users_all = read_upstream(resource, DIM_USERS)
    versions_all = read_upstream(resource, STG_USER_VERSIONS)
    # As the asset does: the latest event_date from stg_events' manifests.
    as_of = metadata_max(resource, events_all, STG_EVENTS, "event_date") or dt.date.min
    # As the asset does as of the latest day: 30 days of events + dim_users' all-time totals
    # (dim_users was just rebuilt from these events).
    totals = feature_defs.totals_from_dim_users(
        read_upstream(resource, DIM_USERS_TOTALS).frame
    ).collect()
    window = read_upstream(
        resource, STG_EVENTS, window_column="event_ts", start=feature_defs.window_start(as_of),
        end=as_of + dt.timedelta(days=1), pruning_column="event_date",
    )  # fmt: skip
    features = feature_defs.user_features(
        users_all.frame, window.frame, as_of, versions_all.frame, totals=totals.lazy()
    ).collect()
    tc = time.perf_counter()
    # As the asset does: the users eligible as of D, then its checks.
    eligible = feature_defs.eligible_users(users_all.frame, as_of)
    activity = totals.select(
        "user_id", event_count="events_total", purchase_count="purchases_total",
        revenue="revenue_total",
    )  # fmt: skip
    check_user_features(features, eligible)
    reconcile_features_with_dim_users(
        features, activity, as_of_is_latest=True, totals_from_mart=True, problem=None
    )
    analytics_checks += time.perf_counter() - tc
    iceberg.write_table(catalog, "ml.user_features", to_arrow(features), mode="overwrite")
    t3 = time.perf_counter()
    parts["analytics"] = t3 - t2b - analytics_checks
    parts["checks"] += analytics_checks
    parts["seconds"] = t3 - t0
    parts["without_checks"] = parts["seconds"] - parts["checks"]
    return {k: round(v, 3) for k, v in parts.items()}
