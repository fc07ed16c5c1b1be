"""Checks pass on good outputs, fail on bad ones, and a failing blocking check writes nothing."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from analytics.assets import daily_metrics, user_features
from analytics.checks import (
    check_daily_metrics,
    check_user_features,
    reconcile_features_with_dim_users,
)
from analytics.features import user_features as compute_features
from analytics.metrics import daily_metrics as compute_metrics
from shared.resources import IcebergCatalogResource

pytestmark = pytest.mark.filterwarnings("ignore")
D = dt.date
UTC = dt.UTC

EVENTS = pl.LazyFrame(
    {
        "event_id": ["a", "b", "c"],
        "user_id": [1, 1, 2],
        "event_type": ["click", "purchase", "page_view"],
        "event_date": [D(2026, 1, 1), D(2026, 1, 2), D(2026, 1, 2)],
        "amount": [None, 9.0, None],
    }
)
USERS = pl.LazyFrame(
    {
        "user_id": [1, 2],
        "country": ["FR", "DE"],
        "plan": ["free", "pro"],
        "signup_at": [dt.datetime(2026, 1, 1, tzinfo=UTC)] * 2,
    }
)
START, END = D(2026, 1, 1), D(2026, 1, 3)
MART = pl.DataFrame(
    {
        "event_date": [D(2026, 1, 1), D(2026, 1, 2), D(2026, 1, 2)],
        "events": [1, 1, 1],
        "revenue": [0.0, 9.0, 0.0],
    }
)


def _by_name(results):
    return {r.check_name: r for r in results}


def _features():
    return compute_features(USERS, EVENTS, D(2026, 1, 2)).collect()


def _metrics():
    return compute_metrics(EVENTS, USERS, START, END).collect()


def test_user_feature_checks_pass_on_good_output():
    results = check_user_features(_features(), eligible_users=2)
    assert {r.check_name: r.passed for r in results} == {
        "row_count_in_bounds": True,
        "keys_not_null_unique": True,
        "features_in_valid_ranges": True,
    }


@pytest.mark.parametrize(
    ("mutate", "eligible", "failing"),
    [
        (lambda f: f.head(1), 2, "row_count_in_bounds"),
        (lambda f: f.head(0), 0, "row_count_in_bounds"),
        (lambda f: f.with_columns(user_id=pl.lit(None, pl.Int64)), 2, "keys_not_null_unique"),
        (lambda f: pl.concat([f, f.head(1)]), 3, "keys_not_null_unique"),
        (
            lambda f: f.with_columns(events_7d=pl.col("events_30d") + 1),
            2,
            "features_in_valid_ranges",
        ),
        (
            lambda f: f.with_columns(active_days_7d=pl.lit(8, pl.Int64)),
            2,
            "features_in_valid_ranges",
        ),
        (lambda f: f.with_columns(revenue_total=pl.lit(-1.0)), 2, "features_in_valid_ranges"),
        (lambda f: f.with_columns(tenure_days=pl.lit(-3, pl.Int64)), 2, "features_in_valid_ranges"),
        (lambda f: f.with_columns(has_purchased=pl.lit(False)), 2, "features_in_valid_ranges"),
    ],
)
def test_user_feature_checks_fail_on_bad_output(mutate, eligible, failing):
    results = _by_name(check_user_features(mutate(_features()), eligible_users=eligible))
    assert not results[failing].passed
    assert results[failing].description != "ok"


def test_daily_metric_checks_pass_and_reconcile():
    results = _by_name(check_daily_metrics(_metrics(), START, END, {START, D(2026, 1, 2)}, MART))
    assert all(r.passed for r in results.values()), results


@pytest.mark.parametrize(
    ("mutate", "failing"),
    [
        (lambda m: m.head(1), "row_count_in_bounds"),  # a day with events has no row
        (lambda m: pl.concat([m, m.head(1)]), "keys_not_null_unique"),
        (lambda m: m.with_columns(metric_date=pl.lit(D(2026, 2, 1))), "keys_not_null_unique"),
        (
            lambda m: m.with_columns(active_users=pl.col("events_total") + 1),
            "metrics_in_valid_ranges",
        ),
        (lambda m: m.with_columns(conversion_rate=pl.lit(1.5)), "metrics_in_valid_ranges"),
        (
            lambda m: m.with_columns(revenue=pl.col("revenue") + 1.0),
            "reconciles_with_fct_daily_events",
        ),
        (
            lambda m: m.with_columns(events_total=pl.col("events_total") * 2),
            "reconciles_with_fct_daily_events",
        ),
    ],
)
def test_daily_metric_checks_fail_on_bad_output(mutate, failing):
    results = _by_name(
        check_daily_metrics(mutate(_metrics()), START, END, {START, D(2026, 1, 2)}, MART)
    )
    assert not results[failing].passed


def test_unreadable_mart_is_a_warning_not_a_crash():
    results = _by_name(check_daily_metrics(_metrics(), START, END, set(), None, "no such table"))
    recon = results["reconciles_with_fct_daily_events"]
    assert not recon.passed and recon.severity == AssetCheckSeverity.WARN
    assert "no such table" in recon.description


def _run(assets, **kw):
    return materialize(
        assets,
        resources={"iceberg": IcebergCatalogResource()},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kw,
    )


def test_blocking_check_failure_writes_nothing(write_upstream, sample, catalog, make):
    """A user duplicated in dim_users (bad upstream) fails the key check: the previous snapshot
    of ml.user_features stays, and the failed evaluation is recorded."""
    events, users = sample
    write_upstream(events, users)
    assert _run([user_features]).success
    good_snapshot = catalog.load_table("ml.user_features").current_snapshot().snapshot_id

    write_upstream(events, users + [users[0]])
    result = _run([user_features])
    assert not result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["keys_not_null_unique"] is False
    assert not result.get_asset_materialization_events()
    assert catalog.load_table("ml.user_features").current_snapshot().snapshot_id == good_snapshot


def test_mart_mismatch_is_recorded_but_does_not_block(write_upstream, sample, catalog, make):
    events, users = sample
    fct = make.fct_rows(events)
    fct[0] = {**fct[0], "event_count": fct[0]["event_count"] + 5}
    write_upstream(events, users, fct=fct)
    result = _run([daily_metrics], partition_key="2026-01-01")
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["reconciles_with_fct_daily_events"].passed is False
    assert evaluations["row_count_in_bounds"].passed is True
    assert catalog.load_table("analytics.daily_metrics").current_snapshot() is not None


def test_features_reconcile_with_dim_users_activity():
    features = _features()
    activity = pl.DataFrame(
        {"user_id": [1, 2], "event_count": [2, 1], "purchase_count": [1, 0], "revenue": [9.0, 0.0]}
    )
    ok = reconcile_features_with_dim_users(features, activity, as_of_is_latest=True)
    assert ok.passed
    off = activity.with_columns(event_count=pl.Series([3, 1]))
    bad = reconcile_features_with_dim_users(features, off, as_of_is_latest=True)
    assert not bad.passed and "user 1" in bad.description
    skipped = reconcile_features_with_dim_users(features, off, as_of_is_latest=False)
    assert skipped.passed
    unreadable = reconcile_features_with_dim_users(
        features, None, as_of_is_latest=True, problem="x"
    )
    assert not unreadable.passed and unreadable.severity == AssetCheckSeverity.WARN


def test_features_from_dim_users_totals_reconcile_the_window_with_the_mart():
    """With the all-time features taken from dim_users, the check compares what came from the
    30-day window of stg_events with the mart: events in the window iff the mart's last event
    day is in it."""
    features = _features()
    ok = reconcile_features_with_dim_users(
        features, None, as_of_is_latest=True, totals_from_mart=True
    )
    assert ok.passed
    # A mart older than the window's events: user 1 has events in the window, but the mart's
    # last event day is before it.
    stale = features.with_columns(
        last_event_date=pl.when(pl.col("user_id") == 1)
        .then(pl.col("as_of_date") - pl.duration(days=40))
        .otherwise(pl.col("last_event_date"))
    )
    bad = reconcile_features_with_dim_users(
        stale, None, as_of_is_latest=True, totals_from_mart=True
    )
    assert not bad.passed and "user 1" in bad.description
