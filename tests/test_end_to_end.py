"""The end-to-end run: all three locations into a fresh DATA_PLATFORM_HOME, read back independently.

The demo runs as a user runs it (the `data-platform demo` command, in a subprocess). Every table
it reports is then re-read from its ``metadata_location`` alone (pyiceberg's StaticTable, no
catalog) and its figures are recomputed with DuckDB straight from the raw tables' data files.
Running the demo a second time must leave every table with identical contents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from pyiceberg.table import StaticTable

from ingestion.settings import StandInSettings
from ingestion.standin import SyncPlan, plan_batches
from shared.partitions import day_of

pytestmark = pytest.mark.slow

STANDIN = StandInSettings(users=60, events_per_day=80, days=4, seed=7)

EXPECTED_TABLES = {
    "raw.users",
    "raw.events",
    "staging.stg_users",
    "staging.stg_user_versions",
    "staging.stg_events",
    "marts.dim_users",
    "marts.fct_daily_events",
    "ml.user_features",
    "analytics.daily_metrics",
    # Not an asset: the sync's hashed key index of raw.events (shared.key_index).
    "raw_key_index.events",
}


def run_demo(home, days: int = STANDIN.days) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "data_platform.cli",
        "demo",
        "--json",
        "--home",
        str(home),
        "--users",
        str(STANDIN.users),
        "--events-per-day",
        str(STANDIN.events_per_day),
        "--days",
        str(days),
        "--seed",
        str(STANDIN.seed),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")}
    # The demo's days end yesterday by default; pinned here to end `days` days after the
    # stand-in's first day, so the figures below are the same any day and one more day is the
    # next day (as a demo run the next day adds).
    env["DATA_PLATFORM_STANDIN_END"] = day_of(days - 1).isoformat()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, f"demo failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def read(entry: dict) -> pa.Table:
    table = StaticTable.from_metadata(entry["metadata_location"])
    assert table.current_snapshot().snapshot_id == entry["snapshot_id"]
    return table.scan().to_arrow()


def data_files(entry: dict) -> list[str]:
    table = StaticTable.from_metadata(entry["metadata_location"])
    return [task.file.file_path.removeprefix("file://") for task in table.scan().plan_files()]


def generated_rows(stream: str) -> int:
    plan = SyncPlan(stream, initial_load=(stream == "users"), days=tuple(range(STANDIN.days)))
    return sum(t.num_rows for t in plan_batches(plan, STANDIN))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("lake")
    first = run_demo(home)
    second = run_demo(home)
    return home, first, second


def tables_of(report):
    return {t["identifier"]: t for t in report["tables"]}


def test_every_table_is_written_and_every_check_passes(demo):
    _, report, _ = demo
    assert set(tables_of(report)) == EXPECTED_TABLES
    failed = [c for c in report["checks"] if not c["passed"]]
    assert report["checks"] and not failed, failed
    locations = {r["location"] for r in report["runs"]}
    assert locations == {"ingestion", "transformation", "analytics"}


def test_raw_tables_hold_what_the_standin_generated(demo):
    _, report, _ = demo
    tables = tables_of(report)
    assert read(tables["raw.events"]).num_rows == generated_rows("events")
    assert read(tables["raw.users"]).num_rows == generated_rows("users")
    assert tables["raw.events"]["row_count"] == generated_rows("events")


def test_downstream_figures_agree_with_raw_recomputed_by_duckdb(demo):
    _, report, _ = demo
    tables = tables_of(report)
    con = duckdb.connect()
    raw_events = data_files(tables["raw.events"])
    raw_users = data_files(tables["raw.users"])
    distinct_events, active_users, revenue = con.execute(
        "select count(distinct event_id), count(distinct user_id), "
        "coalesce(sum(amount) filter (where event_type = 'purchase'), 0) from "
        # Staging's contract: rows without event_id, user_id or event_ts are no events.
        "(select distinct on (event_id) * from read_parquet(?) "
        " where event_id is not null and user_id is not null and event_ts is not null)",
        [raw_events],
    ).fetchone()
    distinct_users, versions = con.execute(
        "select count(distinct id), count(distinct (id, updated_at)) filter "
        "(where id is not null and updated_at is not null) from read_parquet(?)",
        [raw_users],
    ).fetchone()

    assert read(tables["staging.stg_events"]).num_rows == distinct_events
    assert read(tables["staging.stg_users"]).num_rows == distinct_users
    assert read(tables["staging.stg_user_versions"]).num_rows == versions
    assert read(tables["marts.dim_users"]).num_rows == distinct_users
    fct = read(tables["marts.fct_daily_events"])
    assert sum(fct["event_count"].to_pylist()) == distinct_events
    assert sum(v or 0 for v in fct["revenue"].to_pylist()) == pytest.approx(revenue)
    assert read(tables["ml.user_features"]).num_rows == distinct_users
    metrics = read(tables["analytics.daily_metrics"])
    assert metrics.num_rows == STANDIN.days
    assert active_users <= distinct_users


def test_a_second_demo_leaves_every_table_identical(demo):
    _, first, second = demo
    a, b = tables_of(first), tables_of(second)
    assert set(a) == set(b) == EXPECTED_TABLES
    for name in EXPECTED_TABLES:
        before, after = read(a[name]), read(b[name])
        assert before.num_rows == after.num_rows, name
        key = [
            (c, "ascending")
            for c in before.column_names
            if not pa.types.is_nested(before.schema.field(c).type)
        ]
        assert before.sort_by(key).equals(after.sort_by(key)), f"{name} changed on re-run"


def test_tables_command_lists_the_same_tables(demo):
    home, _, second = demo
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")}
    out = subprocess.run(
        [sys.executable, "-m", "data_platform.cli", "tables", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    listed = [json.loads(line) for line in out.stdout.splitlines()]
    assert {t["identifier"] for t in listed} == EXPECTED_TABLES
    for t in listed:
        assert set(t) == {"identifier", "metadata_location", "snapshot_id", "row_count"}
    assert {t["identifier"]: t["snapshot_id"] for t in listed} == {
        t["identifier"]: t["snapshot_id"] for t in second["tables"]
    }


DEMO_RUNS_QUERY = """
{ runsOrError { ... on Runs { results {
    runId jobName status pipelineSnapshotId parentPipelineSnapshotId
    repositoryOrigin { repositoryLocationName repositoryName }
    stepStats { stepKey }
} } } }
"""

JOB_SNAPSHOTS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
    ... on RepositoryLocation { repositories { name pipelines { name pipelineSnapshotId } } }
} } } } }
"""

CAPTURED_LOGS_QUERY = """
query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
    __typename ... on LogsCapturedEvent { fileKey } } } } }
"""

CAPTURED_LOG = """
query($logKey: [String!]!) { capturedLogs(logKey: $logKey) { stdout stderr } }
"""

MATERIALIZED_PARTITIONS = """
query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
    partitionStats { numMaterialized } assetMaterializations(limit: 1) { runId } } } }
"""


def test_the_ui_on_the_demo_instance_shows_its_runs_with_their_code_locations(demo):
    """What `data-platform ui` serves (the webserver over workspace.yaml with DAGSTER_HOME at the
    demo's instance): every demo run belongs to its code location and matches the job the
    location serves now (the UI's test before offering re-execution without a warning), its
    step output is captured, and the assets show their materializations and partitions."""
    from tests.webserver import REPO, running_webserver

    home, _, second = demo
    # The settings the demo ran with (run_demo), and no other: the job snapshots compared below
    # are those of the definitions loaded under them.
    settings = {
        "DATA_PLATFORM_HOME": str(home),
        "DATA_PLATFORM_STANDIN_END": day_of(STANDIN.days - 1).isoformat(),
    }
    with running_webserver(
        REPO / "workspace.yaml", home / "dagster", env=settings, inherit_settings=False
    ) as server:
        server.wait_loaded({"ingestion", "transformation", "analytics"})
        runs = server.graphql(DEMO_RUNS_QUERY)["runsOrError"]["results"]
        snapshots = {
            (entry["name"], repo["name"], job["name"]): job["pipelineSnapshotId"]
            for entry in server.graphql(JOB_SNAPSHOTS_QUERY)["workspaceOrError"]["locationEntries"]
            for repo in entry["locationOrLoadError"]["repositories"]
            for job in repo["pipelines"]
        }
        by_id = {r["runId"]: r for r in runs}
        for reported in second["runs"]:
            run = by_id[reported["run_id"]]
            origin = run["repositoryOrigin"]
            assert origin and origin["repositoryLocationName"] == reported["location"], run
            current = snapshots[(reported["location"], origin["repositoryName"], run["jobName"])]
            assert (run["parentPipelineSnapshotId"] or run["pipelineSnapshotId"]) == current, (
                reported["location"],
                run["jobName"],
            )
            assert run["status"] == "SUCCESS"
            events = server.graphql(CAPTURED_LOGS_QUERY, {"runId": run["runId"]})
            file_keys = [
                e["fileKey"]
                for e in events["logsForRun"]["events"]
                if e["__typename"] == "LogsCapturedEvent"
            ]
            assert file_keys, f"no captured step output for run {run['runId']}"
            log = server.graphql(
                CAPTURED_LOG, {"logKey": [run["runId"], "compute_logs", file_keys[0]]}
            )["capturedLogs"]
            assert (log["stdout"] or "") + (log["stderr"] or ""), run["runId"]
        # The demo's own log files keep each run's output too.
        assert any((home / "logs").glob("demo-run-*-transformation.log"))
        node = server.graphql(MATERIALIZED_PARTITIONS, {"path": ["raw", "events"]})
        asset = node["assetNodeOrError"]
        assert asset["assetMaterializations"], "raw/events shows no materialization"
        fct = server.graphql(MATERIALIZED_PARTITIONS, {"path": ["marts", "fct_daily_events"]})
        assert fct["assetNodeOrError"]["partitionStats"]["numMaterialized"] == STANDIN.days


def materialized_partitions(home, report) -> dict[str, list]:
    """``{asset: [partition, ...]}`` materialized by the runs of ``report``, read from the demo's
    own Dagster instance (as the independent check counts them)."""
    from dagster import DagsterEventType, DagsterInstance

    instance_dir = home / "dagster"
    if (instance_dir / "dagster.yaml").exists():
        instance = DagsterInstance.from_config(str(instance_dir))
    else:
        instance = DagsterInstance.local_temp(tempdir=str(instance_dir))
    out: dict[str, list] = {}
    with instance:
        for run in report["runs"]:
            records = instance.get_records_for_run(
                run["run_id"], of_type=DagsterEventType.ASSET_MATERIALIZATION
            ).records
            for record in records:
                event = record.event_log_entry.dagster_event
                out.setdefault(event.asset_key.to_user_string(), []).append(event.partition)
    return out


def test_a_nightly_check_runs_alone_on_the_demo_instance(demo, monkeypatch):
    """What the demo does when the automation requests a check on its own (the nightly
    whole-table test of stg_events, once a day): a run of that check only, in its code location,
    testing the whole table; no asset is materialized."""
    from dagster import AssetCheckKey, AssetKey

    from data_platform.demo import demo_instance_dir, execute_requested_run
    from data_platform.graph import (
        WORKSPACE_FILE,
        RequestedRun,
        load_location_defs,
        workspace_locations,
    )
    from data_platform.instance import open_instance
    from data_platform.launch import WorkspaceLauncher

    home, _, _ = demo
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    nightly = AssetCheckKey(AssetKey(["staging", "stg_events"]), "unique_stg_events_event_id")
    with open_instance(demo_instance_dir(home)) as instance:
        launcher = WorkspaceLauncher(instance, workspace_locations(), WORKSPACE_FILE.parent)
        run = RequestedRun("transformation", (), check_keys=(nightly,))
        result = execute_requested_run(load_location_defs()["transformation"], run, launcher)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert [(e.asset_key, e.check_name, e.passed) for e in evaluations] == [
        (nightly.asset_key, nightly.name, True)
    ]
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]


# Last in this module: it grows the demo's lakehouse that the tests above read.
def test_one_more_day_rebuilds_only_that_day_plus_lookback(demo):
    home, first, second = demo
    daily = ("staging/stg_events", "marts/fct_daily_events", "analytics/daily_metrics")
    built = materialized_partitions(home, first)
    assert {key: len(built[key]) for key in daily} == {key: STANDIN.days for key in daily}
    # The same days again: no daily partition is rebuilt (the raw syncs added nothing).
    assert not set(materialized_partitions(home, second)) & set(daily)

    grown = run_demo(home, days=STANDIN.days + 1)
    rebuilt = materialized_partitions(home, grown)
    from shared.partitions import day_of

    # Days are counted from the stand-in's first day: day index `days` is the new one.
    last, before = day_of(STANDIN.days).isoformat(), day_of(STANDIN.days - 1).isoformat()
    assert {key: sorted(rebuilt[key]) for key in daily} == {key: [before, last] for key in daily}
    tables = tables_of(grown)
    assert read(tables["analytics.daily_metrics"]).num_rows == STANDIN.days + 1
    con = duckdb.connect()
    distinct_events = con.execute(
        "select count(distinct event_id) from read_parquet(?)", [data_files(tables["raw.events"])]
    ).fetchone()[0]
    assert read(tables["staging.stg_events"]).num_rows == distinct_events
    fct = read(tables["marts.fct_daily_events"])
    assert sum(fct["event_count"].to_pylist()) == distinct_events


def test_the_benchmark_floor_runs_the_tests_a_days_runs_run(demo, tmp_path):
    """The bare floor does the day's checks too: the dbt tests it runs are exactly the tests of
    the five models that a day's runs execute (every one but the nightly run's), compiled with
    the day window (``data-platform bench``, incremental_floor)."""
    from data_platform.bench_incremental import BARE_MODELS, compile_models
    from transformation.project import DBT_PROJECT_DIR

    home, _, _ = demo  # dbt compiles against the demo's tables (read only)
    sql = compile_models(str(home), "2026-01-01", "2026-01-03", tmp_path / "target")
    manifest = json.loads((Path(DBT_PROJECT_DIR) / "target" / "manifest.json").read_text())
    models = {f"model.data_platform.{m}" for _, m, _ in BARE_MODELS}
    daily = {
        n["name"]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test"
        and set(n["depends_on"]["nodes"]) & models
        and "nightly" not in n["tags"]
    }
    assert set(sql["tests"]) == daily and len(daily) > 30
    assert set(sql["models"]) == {m for _, m, _ in BARE_MODELS}
    # The window is compiled in: a daily model's windowed test reads the window's days only.
    windowed = [s for s in sql["tests"].values() if "2026-01-03" in s]
    assert windowed and all("2026-01-01" in s for s in windowed)
