"""The demo plans runs from the automation's requests: only the requested days, in order."""

from dagster import AssetKey

from data_platform.graph import PlannedRun, contiguous_ranges, plan_requested_runs

STG, FCT = AssetKey(["staging", "stg_events"]), AssetKey(["marts", "fct_daily_events"])
USERS, METRICS = AssetKey(["staging", "stg_users"]), AssetKey(["analytics", "daily_metrics"])
PLAN = [
    PlannedRun("ingestion", (AssetKey(["raw", "events"]),), False),
    PlannedRun("transformation", (USERS,), False),
    PlannedRun("transformation", (FCT, STG), True),
    PlannedRun("analytics", (METRICS,), True),
]


def test_contiguous_days_become_one_range_each():
    assert contiguous_ranges(set()) == []
    assert contiguous_ranges({"2026-02-28", "2026-03-01", "2026-01-05"}) == [
        ("2026-01-05", "2026-01-05"),
        ("2026-02-28", "2026-03-01"),
    ]


def test_only_requested_assets_and_days_run_in_plan_order():
    requested = {
        STG: {"2026-06-28", "2026-06-29", "2026-03-21"},
        FCT: {"2026-06-28", "2026-06-29", "2026-03-21"},
        USERS: None,
    }
    runs = plan_requested_runs(PLAN, requested)
    assert [(r.location, r.asset_keys, r.partition_range) for r in runs] == [
        ("transformation", (USERS,), None),
        ("transformation", (FCT, STG), ("2026-03-21", "2026-03-21")),
        ("transformation", (FCT, STG), ("2026-06-28", "2026-06-29")),
    ]
    assert plan_requested_runs(PLAN, {}) == []


def test_assets_of_one_run_with_different_days_run_apart():
    runs = plan_requested_runs(PLAN, {STG: {"2026-01-02"}, FCT: {"2026-01-03"}})
    assert [(r.asset_keys, r.partition_range) for r in runs] == [
        ((STG,), ("2026-01-02", "2026-01-02")),
        ((FCT,), ("2026-01-03", "2026-01-03")),
    ]


def test_checks_requested_on_their_own_run_last_without_their_assets():
    """A check with a condition of its own (a nightly test) is requested alone: one run of the
    checks of each planned run's assets, after the tick's asset runs."""
    from dagster import AssetCheckKey

    nightly = AssetCheckKey(STG, "unique_stg_events_event_id")
    runs = plan_requested_runs(PLAN, {nightly: None, USERS: None})
    assert [(r.location, r.asset_keys, r.partition_range, r.check_keys) for r in runs] == [
        ("transformation", (USERS,), None, ()),
        ("transformation", (), None, (nightly,)),
    ]


def test_a_run_takes_the_checks_without_a_condition_of_their_own():
    """As Dagster's automation builds its runs: the nightly whole-table tests of the daily
    models are left out of the daily runs; every other check of the daily models rides along."""
    from dagster import AssetCheckKey

    from data_platform.demo import ride_along_checks
    from data_platform.graph import load_location_defs

    defs = load_location_defs()["transformation"]
    checks = defs.resolve_asset_graph().get_check_keys_for_assets({STG, FCT})
    riding = ride_along_checks(defs, [STG, FCT])
    assert checks - riding == {
        AssetCheckKey(STG, "unique_stg_events_event_id"),
        AssetCheckKey(STG, "not_null_stg_events_event_date"),
        AssetCheckKey(FCT, "not_null_fct_daily_events_event_date"),
    }
    assert AssetCheckKey(STG, "unique_stg_events_event_id_in_day_window") in riding


def test_the_real_plan_starts_dbt_twice_per_cycle():
    """transformation's unpartitioned models wait for the daily ones and run as ONE invocation
    (stg_users alone, then dim_users, would start a third dbt process each day)."""
    from data_platform.graph import build_location_graph, load_location_defs, plan_runs

    plan = plan_runs(build_location_graph(load_location_defs()))
    dbt_runs = [(r.partitioned, r.asset_keys) for r in plan if r.location == "transformation"]
    assert dbt_runs == [
        (True, (FCT, STG)),
        (
            False,
            (AssetKey(["marts", "dim_users"]), AssetKey(["staging", "stg_user_versions"]), USERS),
        ),
    ]
    assert [r.location for r in plan] == [
        "ingestion",
        "transformation",
        "transformation",
        "analytics",
        "analytics",
    ]


def test_a_step_failure_shows_the_error_under_dagsters_wrapper():
    """Issue 16 item 11: the demo said only 'Error occurred while executing op "dbt_models"'."""
    from dagster._utils.error import SerializableErrorInfo

    from data_platform.demo import error_text

    dbt_error = SerializableErrorInfo(
        "DagsterDbtCliRuntimeError: dbt build failed: Runtime Error: No space left on device\n",
        [],
        "DagsterDbtCliRuntimeError",
    )
    wrapper = SerializableErrorInfo(
        'Error occurred while executing op "dbt_models":\n', [], "DagsterExecutionStepExecutionError",
        cause=dbt_error,
    )  # fmt: skip
    text = error_text(wrapper)
    assert text.startswith('Error occurred while executing op "dbt_models":')
    assert "No space left on device" in text


def test_runs_without_checks_keep_only_the_checks_computed_in_their_assets_ops():
    """The benchmark's cycle without checks (``execute_requested_run(with_checks=False)``) can
    leave out dbt's tests, the raw tables' checks and the freshness checks, but not the checks
    an analytics asset yields from its own op (the run could not be built without them)."""
    from dagster import AssetCheckKey

    from data_platform.demo import inseparable_checks
    from data_platform.graph import load_location_defs

    defs = load_location_defs()
    features = AssetKey(["ml", "user_features"])
    kept = inseparable_checks(defs["analytics"], [features])
    assert kept and all(isinstance(c, AssetCheckKey) for c in kept)
    assert kept == set(
        defs["analytics"].resolve_asset_graph().get_check_keys_for_assets([features])
    )
    stg_events = AssetKey(["staging", "stg_events"])
    assert defs["transformation"].resolve_asset_graph().get_check_keys_for_assets([stg_events])
    assert inseparable_checks(defs["transformation"], [stg_events]) == set()
    raw = [AssetKey(["raw", "events"]), AssetKey(["raw", "users"])]
    assert defs["ingestion"].resolve_asset_graph().get_check_keys_for_assets(raw)
    assert inseparable_checks(defs["ingestion"], raw) == set()
