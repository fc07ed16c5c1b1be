"""dbt runs in the step's own process (``transformation.dbt_run``): several invocations in one
process stay independent, failures carry dbt's own error, a re-prepared manifest is picked up,
and the step gets the same events as dagster-dbt's dbt subprocess gave."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import raw_fixture
from dagster import AssetKey, DagsterEventType, DagsterInstance, materialize
from test_dbt_assets import RESOURCES, run_daily, run_full, stg_events, table

from shared.iceberg import write_table
from shared.settings import load_settings
from transformation import dbt_run
from transformation.assets import DAILY_SELECTION, build_args, dbt_daily_models, window_vars
from transformation.duckdb_iceberg import scratch_dir
from transformation.project import DBT_PROJECT_DIR, MANIFEST_PATH

STG_EVENTS = AssetKey(["staging", "stg_events"])


def materialized_partitions(result, key: AssetKey) -> set[str]:
    return {
        e.event_specific_data.materialization.partition
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION and e.asset_key == key
    }


def step_failure_text(result) -> str:
    """Every message of the failed steps' errors and their causes (what the demo prints)."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def test_invocations_in_one_process_see_fresh_tables_and_their_own_window(catalog, home):
    """Three dbt invocations in this process: two windows of the daily models, a late row for a
    day already built, and the unpartitioned models over what the daily ones wrote. dbt's
    DuckDB environment (and the plugin's views at old snapshots) must not survive from one
    invocation to the next, and the project is parsed once."""
    raw_fixture.write_raw(catalog)
    instance = DagsterInstance.ephemeral()

    first = run_daily(instance, "2026-01-01", "2026-01-01")
    assert first.success
    assert materialized_partitions(first, STG_EVENTS) == {"2026-01-01"}
    parsed = list(dbt_run._MANIFESTS.values())
    assert len(parsed) == 1

    second = run_daily(instance, "2026-01-02", "2026-01-02")
    assert second.success
    assert materialized_partitions(second, STG_EVENTS) == {"2026-01-02"}
    assert {k: v[2] for k, v in stg_events(catalog).items()} == {
        "e1": "2026-01-01",
        "e2": "2026-01-01",
        "e3": "2026-01-01",
        "e4": "2026-01-02",
    }

    # A late row for Jan 1, written after the first invocation read raw.events: the re-run of
    # Jan 1 must read the table's new snapshot, not the view the first invocation registered.
    raw_fixture.write_raw(
        catalog,
        events=[("e9", 3, "click", raw_fixture.ts(1, 15), None, "r9", raw_fixture.ts(6, 1))],
        users=False,
    )
    again = run_daily(instance, "2026-01-01", "2026-01-01")
    assert again.success
    assert stg_events(catalog)["e9"] == (3, "click", "2026-01-01", None, "r9")

    # The unpartitioned models read the stg_events the daily invocations wrote (e9 included).
    assert run_full(instance).success
    dim = table(catalog, "marts.dim_users").sort("user_id")
    assert dict(zip(dim["user_id"], dim["event_count"], strict=True)) == {1: 2, 2: 2, 3: 1}
    # One parse for the whole process: the same Manifest object served every invocation.
    assert list(dbt_run._MANIFESTS.values()) == parsed
    assert list(dbt_run._MANIFESTS.values())[0] is parsed[0]
    # The plugin's scratch files (batches, snapshot copies) do not outlive an invocation.
    assert not any(scratch_dir().iterdir())


def test_a_failing_model_fails_the_step_with_dbts_error_and_the_next_run_works(catalog, home):
    """stg_events reads a column raw.events lacks: DuckDB's error, as dbt reports it, is the
    step's failure; the run's target folder stays with dbt's log; the process runs dbt again."""
    no_type = raw_fixture.events_table(raw_fixture.EVENTS_SYNC_1).drop_columns(["event_type"])
    write_table(catalog, "raw.users", raw_fixture.users_table(), mode="overwrite")
    write_table(catalog, "raw.events", no_type, mode="overwrite")
    instance = DagsterInstance.ephemeral()

    failed = run_daily(instance, "2026-01-01", "2026-01-01")
    assert not failed.success
    text = step_failure_text(failed)
    assert "Errors parsed from dbt logs:" in text
    assert "event_type" in text and "stg_events" in text, text
    kept = list((home / "dbt" / "target").iterdir())
    assert len(kept) == 1 and (kept[0] / "dbt.log").stat().st_size > 0
    assert str(kept[0] / "dbt.log") in text

    # Fixed data, same process: dbt runs again and builds the day.
    write_table(
        catalog,
        "raw.events",
        raw_fixture.events_table(raw_fixture.EVENTS_SYNC_1),
        mode="overwrite",
    )
    assert run_daily(instance, "2026-01-01", "2026-01-01").success
    assert set(stg_events(catalog)) == {"e1", "e2", "e3"}


def test_a_re_prepared_manifest_is_parsed_again(tmp_path):
    """The process's Manifest is keyed on the prepared manifest file: unchanged, it is reused;
    re-prepared (a new mtime), the project is parsed again."""
    prepared = tmp_path / "prepared" / "manifest.json"
    prepared.parent.mkdir()
    shutil.copy(MANIFEST_PATH, prepared)
    target = tmp_path / "target"
    target.mkdir()
    state = MANIFEST_PATH.with_name("partial_parse.msgpack")
    if state.exists():
        shutil.copy(state, target / state.name)

    first = dbt_run.parsed_manifest(DBT_PROJECT_DIR, "duckdb", target, prepared)
    assert dbt_run.parsed_manifest(DBT_PROJECT_DIR, "duckdb", target, prepared) is first
    assert "model.data_platform.stg_events" in first.nodes

    stat = prepared.stat()
    os.utime(prepared, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = dbt_run.parsed_manifest(DBT_PROJECT_DIR, "duckdb", target, prepared)
    assert second is not first
    assert set(second.nodes) == set(first.nodes)


def _event_summary(events) -> dict[tuple, tuple]:
    """(kind, asset, check) -> (passed, severity, metadata keys) of dagster-dbt's events."""
    out = {}
    for e in events:
        kind = type(e).__name__
        check = getattr(e, "check_name", None)
        passed = getattr(e, "passed", None)
        severity = getattr(e, "severity", None)
        out[(kind, e.asset_key.to_user_string(), check)] = (
            passed,
            severity,
            tuple(sorted(e.metadata)),
        )
    return out


def test_events_and_metadata_match_the_dbt_subprocess_path(catalog, home, tmp_path):
    """The same ``dbt build`` of the daily models through dagster-dbt's CLI resource (a dbt
    subprocess, the path this location used before) and in this process: the same
    materializations and check evaluations, the same outcomes, the same metadata keys."""
    from dagster_dbt import DbtCliResource

    raw_fixture.write_raw(catalog)
    settings = load_settings()
    window = window_vars(raw_fixture.ts(1), raw_fixture.ts(3))
    args = build_args(settings, {"data_platform_home": str(home)}, window)
    args += ["--select", DAILY_SELECTION.select, "--exclude", DAILY_SELECTION.exclude]
    args += ["--indirect-selection", "buildable"]

    sub_target, own_target = tmp_path / "sub", tmp_path / "own"
    cli = DbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR))
    invocation = cli.cli(
        args,
        manifest=MANIFEST_PATH,
        dagster_dbt_translator=dbt_run.TRANSLATOR,
        target_path=sub_target,
        raise_on_error=False,
    )
    subprocess_events = list(invocation.stream())
    assert invocation.is_successful()

    own = dbt_run.invoke(
        args, project_dir=DBT_PROJECT_DIR, target_path=own_target, manifest_path=MANIFEST_PATH
    )
    assert own.success and own.error() is None
    expected = _event_summary(subprocess_events)
    got = _event_summary(own.events)
    assert got == expected
    kinds = {kind for kind, _, _ in got}
    assert kinds == {"AssetMaterialization", "AssetCheckEvaluation"}
    assert ("AssetMaterialization", "staging/stg_events", None) in got
    # dbt's run results and log are in the invocation's own target folder, as they were: the
    # same nodes with the same statuses as the subprocess's. The project's manifest.json is not
    # written again (--no-write-json; the assets read the prepared one).
    assert (own_target / "dbt.log").exists()

    def statuses(target: Path) -> dict[str, str]:
        results = json.loads((target / "run_results.json").read_text())["results"]
        return {r["unique_id"]: r["status"] for r in results}

    assert statuses(own_target) == statuses(sub_target) and statuses(own_target)
    assert (sub_target / "manifest.json").exists() and not (own_target / "manifest.json").exists()


def test_the_asset_reports_the_same_outputs_as_before(catalog, home):
    """Through Dagster: each model's materialization carries dagster-dbt's metadata plus the
    Iceberg table's; each check its dbt metadata."""
    raw_fixture.write_raw(catalog)
    result = materialize(
        [dbt_daily_models],
        instance=DagsterInstance.ephemeral(),
        resources=RESOURCES,
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-02",
        },
    )
    mats = {
        m.asset_key.to_user_string(): set(m.metadata)
        for m in result.asset_materializations_for_node("dbt_daily_models")
    }
    assert mats["staging/stg_events"] == {
        "unique_id",
        "invocation_id",
        "Execution Duration",
        "status",
        "iceberg_table",
        "snapshot_id",
        "row_count",
    }
    check = next(
        c for c in result.get_asset_check_evaluations() if c.check_name.startswith("unique_")
    )
    assert {"unique_id", "invocation_id", "status"} <= set(check.metadata)


def test_an_interrupt_during_dbt_stays_an_interrupt(home, tmp_path, monkeypatch):
    """dbtRunner turns every exception into a result; a terminated run's interrupt is raised
    again, and dbt's state is released so that the next invocation works."""
    target = tmp_path / "target"
    target.mkdir()
    args = ["ls", "--target", "duckdb", "--select", "tag:daily"]
    dbt_run.parsed_manifest(DBT_PROJECT_DIR, "duckdb", target, MANIFEST_PATH)

    def interrupt(self, msg):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(dbt_run._EventCollector, "__call__", interrupt)
        with pytest.raises(KeyboardInterrupt):
            dbt_run.invoke(
                args, project_dir=DBT_PROJECT_DIR, target_path=target, manifest_path=MANIFEST_PATH
            )
    after = dbt_run.invoke(
        args, project_dir=DBT_PROJECT_DIR, target_path=target, manifest_path=MANIFEST_PATH
    )
    assert after.success and after.error() is None
