"""A local dbt build through Dagster over hand-made raw tables, with exact expected outputs."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import polars as pl
import raw_fixture
from dagster import AssetKey, DagsterInstance, materialize

from shared.iceberg import read_table, write_table
from shared.resources import IcebergCatalogResource
from transformation.assets import dbt_daily_models, dbt_models
from transformation.definitions import defs

RESOURCES = defs.resources


def run_daily(instance, start: str, end: str):
    """Materialize the daily models for the partition range [start, end] (one run)."""
    return materialize(
        [dbt_daily_models],
        instance=instance,
        resources=RESOURCES,
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        raise_on_error=False,
    )


def run_full(instance):
    return materialize([dbt_models], instance=instance, resources=RESOURCES, raise_on_error=False)


def run_checks_only(instance, assets_def, *keys: dg.AssetCheckKey):
    """A run of the checks ``keys`` alone (as their nightly automation condition requests them)."""
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks(*keys))
    defs_ = dg.Definitions(assets=[assets_def], jobs=[job], resources=RESOURCES)
    return defs_.resolve_job_def("checks_only").execute_in_process(
        instance=instance, raise_on_error=False
    )


def table(catalog, identifier: str) -> pl.DataFrame:
    return pl.from_arrow(read_table(catalog, identifier))


def stg_events(catalog) -> dict[str, tuple]:
    df = table(catalog, "staging.stg_events")
    assert df["event_id"].n_unique() == df.height, "stg_events has duplicated event_ids"
    return {
        r["event_id"]: (
            r["user_id"],
            r["event_type"],
            r["event_date"].isoformat(),
            r["amount"],
            r["airbyte_raw_id"],
        )
        for r in df.iter_rows(named=True)
    }


def fct(catalog) -> dict[tuple, tuple]:
    df = table(catalog, "marts.fct_daily_events")
    assert df["daily_event_key"].n_unique() == df.height
    return {
        (r["event_date"].isoformat(), r["user_id"], r["event_type"]): (
            r["event_count"],
            r["revenue"],
        )
        for r in df.iter_rows(named=True)
    }


def dim(catalog) -> dict[int, tuple]:
    df = table(catalog, "marts.dim_users")
    return {
        r["user_id"]: (
            r["plan"],
            r["email"],
            r["event_count"],
            r["active_days"],
            r["purchase_count"],
            r["priced_purchase_count"],
            r["total_revenue"],
            r["is_active"],
        )
        for r in df.iter_rows(named=True)
    }


def figures_from_raw(catalog) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-day/type and per-user figures straight from the raw tables (polars, not dbt)."""
    raw = pl.from_arrow(read_table(catalog, "raw.events"))
    events = (
        raw.sort("_airbyte_extracted_at", "_airbyte_raw_id", descending=True)
        .unique("event_id", keep="first")
        .with_columns(pl.col("event_ts").dt.date().alias("event_date"))
    )
    purchase_amount = pl.col("amount").filter(pl.col("event_type") == "purchase")
    daily = events.group_by("event_date", "event_type").agg(
        pl.len().cast(pl.Int64).alias("events"),
        purchase_amount.sum().alias("revenue"),
        pl.col("user_id").n_unique().cast(pl.Int64).alias("users"),
    )
    per_user = events.group_by("user_id").agg(
        pl.len().cast(pl.Int64).alias("events"),
        purchase_amount.sum().alias("revenue"),
        # Purchases with an amount (count() leaves nulls out): dim_users' priced_purchase_count.
        purchase_amount.count().cast(pl.Int64).alias("priced_purchases"),
    )
    users = pl.from_arrow(read_table(catalog, "raw.users")).sort(
        "updated_at", "_airbyte_extracted_at", descending=True
    )
    users = users.unique("id", keep="first").select(pl.col("id").alias("user_id"), "plan")
    users = users.join(per_user, on="user_id", how="left").with_columns(
        pl.col("events", "priced_purchases").fill_null(0), pl.col("revenue").fill_null(0.0)
    )
    return daily.sort("event_date", "event_type"), users.sort("user_id")


def assert_marts_match_raw(catalog) -> None:
    daily, users = figures_from_raw(catalog)
    fact = table(catalog, "marts.fct_daily_events")
    got_daily = fact.group_by("event_date", "event_type").agg(
        pl.col("event_count").sum().alias("events"),
        pl.col("revenue").sum(),
        pl.col("user_id").n_unique().cast(pl.Int64).alias("users"),
    )
    assert got_daily.sort("event_date", "event_type").to_dicts() == daily.to_dicts()
    got_users = table(catalog, "marts.dim_users").select(
        "user_id",
        "plan",
        pl.col("event_count").alias("events"),
        pl.col("total_revenue").alias("revenue"),
        pl.col("priced_purchase_count").alias("priced_purchases"),
    )
    assert got_users.sort("user_id").to_dicts() == users.to_dicts()


def rewrite_stg_events(catalog, edit: Callable[[list[dict]], list[dict]]) -> None:
    """Overwrites staging.stg_events with ``edit`` applied to its rows (same schema): a state an
    older, buggier run could have left, which the next run's tests must see or not see."""
    stg = read_table(catalog, "staging.stg_events")
    rows = edit(stg.to_pylist())
    write_table(
        catalog,
        "staging.stg_events",
        raw_fixture.pa.Table.from_pylist(rows, schema=stg.schema),
        mode="overwrite",
    )


def check_results(result) -> dict[tuple[str, str], bool]:
    out = {}
    for event in result.get_asset_check_evaluations():
        out[(event.asset_key.to_user_string(), event.check_name)] = event.passed
    return out


def test_build_incremental_days_late_rows_and_rerun(catalog, home):
    raw_fixture.write_raw(catalog)
    instance = DagsterInstance.ephemeral()

    # Two days in ONE run (a partition range = one dbt invocation), then the unpartitioned models.
    result = run_daily(instance, "2026-01-01", "2026-01-02")
    assert result.success
    assert run_full(instance).success
    # dbt's working files are the home's (issue 16 item 11): its partial-parse state kept for
    # the next run, each run's target folder removed once the run succeeded.
    assert (home / "dbt" / "partial_parse.msgpack").stat().st_size > 0
    assert list((home / "dbt" / "target").iterdir()) == []

    # Day 3 (e6) is outside the window: not processed yet. e2's duplicate delivery is collapsed to
    # its latest version (r2b). e4 at 23:30 UTC belongs to Jan 2.
    assert stg_events(catalog) == {
        "e1": (1, "page_view", "2026-01-01", None, "r1"),
        "e2": (1, "purchase", "2026-01-01", 20.0, "r2b"),
        "e3": (2, "click", "2026-01-01", None, "r3"),
        "e4": (2, "purchase", "2026-01-02", 5.5, "r4"),
    }
    assert fct(catalog) == {
        ("2026-01-01", 1, "page_view"): (1, 0.0),
        ("2026-01-01", 1, "purchase"): (1, 20.0),
        ("2026-01-01", 2, "click"): (1, 0.0),
        ("2026-01-02", 2, "purchase"): (1, 5.5),
    }
    # User 1's latest version is 'pro' (updated later); user 2's two versions share updated_at and
    # the later extraction wins; user 3 has no events.
    assert dim(catalog) == {
        1: ("pro", "ann@example.com", 2, 1, 1, 1, 20.0, True),
        2: ("enterprise", "bob@example.com", 2, 2, 1, 1, 5.5, True),
        3: ("free", "cy@example.com", 0, 0, 0, 0, 0.0, False),
    }
    # Every version of every user, valid until the next one (point-in-time reads): user 1's two
    # versions; user 2's two deliveries of one updated_at are one version (the later extraction).
    versions = table(catalog, "staging.stg_user_versions").sort("user_id", "valid_from")
    assert [
        (
            r["user_id"],
            r["plan"],
            r["valid_from"].isoformat(),
            r["valid_to"] and r["valid_to"].isoformat(),
        )
        for r in versions.iter_rows(named=True)
    ] == [
        (1, "free", "2026-01-01T00:00:00+00:00", "2026-01-02T12:00:00+00:00"),
        (1, "pro", "2026-01-02T12:00:00+00:00", None),
        (2, "enterprise", "2026-01-01T01:00:00+00:00", None),
        (3, "free", "2026-01-02T00:00:00+00:00", None),
    ]
    assert versions["user_version_key"].n_unique() == versions.height
    checks = check_results(result)
    assert checks[("staging/stg_events", "unique_stg_events_event_id_in_day_window")] is True
    assert checks[("marts/fct_daily_events", "assert_fct_daily_events_reconciles_with_stg_events")]

    # A later sync: e5 (Jan 2) arrives late and e2 is delivered a third time. One run of the range
    # Jan 2..Jan 3 re-runs Jan 2 (picks up e5, replaces the day: e4 is not duplicated) and adds
    # Jan 3; Jan 1 is not in the window, so its rows stay as they were.
    raw_fixture.write_raw(catalog, events=raw_fixture.EVENTS_SYNC_2, users=False)
    assert run_daily(instance, "2026-01-02", "2026-01-03").success
    full = run_full(instance)
    assert full.success
    assert stg_events(catalog) == {
        "e1": (1, "page_view", "2026-01-01", None, "r1"),
        "e2": (1, "purchase", "2026-01-01", 20.0, "r2b"),  # Jan 1 not re-run
        "e3": (2, "click", "2026-01-01", None, "r3"),
        "e4": (2, "purchase", "2026-01-02", 5.5, "r4"),
        "e5": (1, "purchase", "2026-01-02", 7.25, "r5"),
        "e6": (4, "add_to_cart", "2026-01-03", None, "r6"),
        "e7": (2, "purchase", "2026-01-03", None, "r7"),
    }
    assert fct(catalog) == {
        ("2026-01-01", 1, "page_view"): (1, 0.0),
        ("2026-01-01", 1, "purchase"): (1, 20.0),
        ("2026-01-01", 2, "click"): (1, 0.0),
        ("2026-01-02", 1, "purchase"): (1, 7.25),
        ("2026-01-02", 2, "purchase"): (1, 5.5),
        ("2026-01-03", 2, "purchase"): (1, 0.0),
        ("2026-01-03", 4, "add_to_cart"): (1, 0.0),
    }
    assert dim(catalog) == {
        1: ("pro", "ann@example.com", 3, 2, 2, 2, 27.25, True),
        # e7: a purchase without an amount counts in purchase_count, not in the priced ones.
        2: ("enterprise", "bob@example.com", 3, 3, 2, 1, 5.5, True),
        3: ("free", "cy@example.com", 0, 0, 0, 0, 0.0, False),
    }
    # User 4 has events but no user row yet (late-arriving dimension): a warning check. It reads
    # every event, so it runs in a run of its own (nightly), never with dim_users' rebuild.
    late_users = ("marts/dim_users", "assert_event_users_exist_in_dim_users")
    assert late_users not in check_results(full)
    nightly = run_checks_only(
        instance,
        dbt_models,
        dg.AssetCheckKey(AssetKey(["marts", "dim_users"]), late_users[1]),
    )
    assert nightly.success and check_results(nightly) == {late_users: False}

    # The materializations name their Iceberg tables and snapshots.
    mat = instance.get_latest_materialization_event(AssetKey(["marts", "fct_daily_events"]))
    meta = mat.asset_materialization.metadata
    assert meta["iceberg_table"].value == "marts.fct_daily_events"
    assert meta["row_count"].value == 7


def test_failing_dbt_test_is_a_failed_asset_check(catalog, home, tmp_path, monkeypatch):
    """A bad plan fails stg_users' accepted_values test: a failed asset check and a failed step.

    The run selects stg_users alone on a fresh home, so it also shows that only the tests a
    subset can run are run: dim_users' relationships test (dim_users does not exist) is not.
    """
    raw_fixture.write_raw(catalog)
    bad = raw_fixture.users_table().to_pylist()
    bad[-1]["plan"] = "platinum"  # not an accepted plan
    write_table(
        catalog, "raw.users", raw_fixture.pa.Table.from_pylist(bad, schema=raw_fixture.USERS_SCHEMA)
    )
    # The home set on the Iceberg resource (as the CLI does) reaches the dbt process, whatever
    # DATA_PLATFORM_HOME says.
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "elsewhere"))
    resources = {**RESOURCES, "iceberg": IcebergCatalogResource(home=str(home))}

    result = materialize(
        [dbt_models],
        selection=[AssetKey(["staging", "stg_users"])],
        instance=DagsterInstance.ephemeral(),
        resources=resources,
        raise_on_error=False,
    )
    checks = check_results(result)
    assert (
        checks[("staging/stg_users", "accepted_values_stg_users_plan__free__pro__enterprise")]
        is False
    )
    assert checks[("staging/stg_users", "unique_stg_users_user_id")] is True
    assert {asset for asset, _ in checks} == {"staging/stg_users"}
    # An error-severity test fails the step (dbt build exits non-zero).
    assert not result.success
    assert not (tmp_path / "elsewhere").exists()


def test_daily_model_tests_read_only_the_window(catalog, home):
    """A day's run tests that day's rows (its tests must not grow with history,
    get_where_subquery.sql); stg_events' whole-table unique event_id runs nightly, alone."""
    raw_fixture.write_raw(catalog)
    instance = DagsterInstance.ephemeral()
    assert run_daily(instance, "2026-01-01", "2026-01-02").success
    accepted = "accepted_values_stg_events_event_type__page_view__click__add_to_cart__purchase"

    # A bad row on Jan 1, outside the next run's window (as an older, buggier run could have
    # left it): the run of Jan 3 does not read it, so its tests pass.
    rewrite_stg_events(
        catalog,
        lambda rows: [{**r, "event_type": "bogus"} if r["event_id"] == "e1" else r for r in rows],
    )
    result = run_daily(instance, "2026-01-03", "2026-01-03")
    assert result.success
    checks = check_results(result)
    assert checks[("staging/stg_events", accepted)] is True
    assert checks[("marts/fct_daily_events", "assert_fct_daily_events_reconciles_with_stg_events")]

    # The same bad value inside the window fails the window's test.
    raw_fixture.write_raw(
        catalog,
        events=[("e7", 4, "bogus", raw_fixture.ts(3, 9), None, "r7", raw_fixture.ts(4, 2))],
        users=False,
    )
    result = run_daily(instance, "2026-01-03", "2026-01-03")
    assert not result.success
    assert check_results(result)[("staging/stg_events", accepted)] is False

    # The whole-table `unique` of event_id is selected (materialize selects every check) but
    # not run: a day's run never reads the whole table; its nightly run does (test below).
    assert ("staging/stg_events", "unique_stg_events_event_id") not in check_results(result)
    assert ("staging/stg_events", "unique_stg_events_event_id_in_day_window") in checks


def test_null_key_rows_left_out_and_conflicting_duplicates_resolve_to_the_last_delivered(
    catalog, home
):
    """Issue 12 items 8 and 10, in staging and every model built on it.

    * e7 has a null user_id and e9 a null event_ts: staging leaves them out (before
      deduplication: e8's later version without a user does not replace its earlier one), so
      stg_events' not_null tests pass and the marts are published with the rest.
    * e10 is delivered twice in ONE delivery (same extraction time) with conflicting amounts:
      the record delivered last (highest ``_ab_record_index``, the landing loader's file/row
      order) wins, not the raw id that sorts last ("z-..." would).
    """
    import pyarrow as pa

    raw_fixture.write_raw(catalog, events=[])
    day = raw_fixture.ts
    #: (event_id, user_id, event_type, event_ts, amount, raw_id, extracted_at, record index)
    rows = [
        ("e1", 1, "page_view", day(1, 9), None, "a1", day(2, 1), 0),
        ("e7", None, "click", day(1, 9), None, "a7", day(2, 1), 1),
        ("e8", 2, "click", day(1, 10), None, "a8", day(2, 1), 2),
        ("e9", 2, "click", None, None, "a9", day(2, 1), 3),
        ("e10", 1, "purchase", day(1, 12), 10.0, "z-first", day(2, 1), 4),
        ("e10", 1, "purchase", day(1, 12), 12.5, "a-last", day(2, 1), 5),
        ("e8", None, "click", day(1, 10), None, "b8", day(3, 1), 0),
    ]
    schema = raw_fixture.EVENTS_SCHEMA.append(pa.field("_ab_record_index", pa.int64()))
    names = [n for n in schema.names if n != "_airbyte_meta"]
    table_ = pa.Table.from_pylist(
        [{**dict(zip(names, r, strict=True)), "_airbyte_meta": "{}"} for r in rows], schema=schema
    )
    write_table(catalog, "raw.events", table_, mode="append")

    instance = DagsterInstance.ephemeral()
    daily = run_daily(instance, "2026-01-01", "2026-01-01")
    full = run_full(instance)
    assert daily.success and full.success
    assert stg_events(catalog) == {
        "e1": (1, "page_view", "2026-01-01", None, "a1"),
        "e8": (2, "click", "2026-01-01", None, "a8"),
        "e10": (1, "purchase", "2026-01-01", 12.5, "a-last"),
    }
    checks = {**check_results(daily), **check_results(full)}
    assert checks[("staging/stg_events", "not_null_stg_events_user_id")] is True
    assert checks[("staging/stg_events", "not_null_stg_events_event_ts")] is True
    assert checks[("marts/fct_daily_events", "not_null_fct_daily_events_user_id")] is True
    assert fct(catalog) == {
        ("2026-01-01", 1, "page_view"): (1, 0.0),
        ("2026-01-01", 1, "purchase"): (1, 12.5),
        ("2026-01-01", 2, "click"): (1, 0.0),
    }
    # (event_count, active_days, purchase_count, priced_purchase_count, total_revenue)
    assert {u: v[2:7] for u, v in dim(catalog).items()} == {
        1: (2, 1, 1, 1, 12.5),
        2: (1, 1, 0, 0, 0.0),
        3: (0, 0, 0, 0, 0.0),
    }


def test_the_nightly_unique_test_runs_alone_over_the_whole_table(catalog, home):
    """stg_events' cross-day `unique` reads every event id: its check has a nightly condition
    of its own (transformation.automation), so Dagster's automation leaves it out of the daily
    runs, and its own run (checks only, no partition) tests the whole table."""
    from dagster import AssetCheckKey, AutomationCondition

    from transformation.automation import NIGHTLY_CRON

    key = AssetCheckKey(AssetKey(["staging", "stg_events"]), "unique_stg_events_event_id")
    specs = {spec.key: spec for spec in dbt_daily_models.check_specs}
    assert specs[key].automation_condition == AutomationCondition.cron_tick_passed(
        NIGHTLY_CRON, cron_timezone="UTC"
    )
    # The other whole-table tests (the partition column's not_null) are nightly too; every
    # other test of the daily models rides along with their runs.
    assert sorted(k.name for k, s in specs.items() if s.automation_condition is not None) == sorted(
        [key.name, "not_null_fct_daily_events_event_date", "not_null_stg_events_event_date"]
    )

    instance = DagsterInstance.ephemeral()
    nightly = dg.define_asset_job("nightly", selection=dg.AssetSelection.checks(key))
    job = dg.Definitions(assets=[dbt_daily_models], jobs=[nightly], resources=RESOURCES)

    def run_nightly():
        result = job.resolve_job_def("nightly").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert [e.asset_key for e in result.get_asset_materialization_events()] == []
        return result

    # Before the daily models were ever built (a new deployment at the nightly hour): nothing
    # to test, and no failed run.
    result = run_nightly()
    assert result.success and check_results(result) == {}

    raw_fixture.write_raw(catalog)
    assert run_daily(instance, "2026-01-01", "2026-01-03").success
    result = run_nightly()
    assert result.success and check_results(result) == {("staging/stg_events", key.name): True}
    # An event of Jan 3 left on Jan 1 too (two days apart: no window holds both): found.
    jan_1 = raw_fixture.dt.date(2026, 1, 1)
    rewrite_stg_events(
        catalog,
        lambda rows: rows + [{**r, "event_date": jan_1} for r in rows if r["event_id"] == "e6"],
    )
    result = run_nightly()
    assert check_results(result) == {("staging/stg_events", key.name): False}
    assert result.success  # a warning: it fails no run
