"""Asset checks of the analytics outputs: pure functions from frames to ``AssetCheckResult``.

The assets run these checks on the frame they are about to write, BEFORE the Iceberg commit
(write-audit-publish): when a blocking check fails, nothing is written and consumers keep reading
the previous snapshot. Non-blocking checks (reconciliation with a mart owned by another team) are
recorded with the materialization and never hold data back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from analytics.sources import DAILY_METRICS_KEY, USER_FEATURES_KEY

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import polars as pl

#: Relative tolerance when comparing sums of doubles computed by different engines.
REVENUE_REL_TOL = 1e-6

USER_FEATURES_CHECKS = [
    AssetCheckSpec(
        "row_count_in_bounds",
        asset=USER_FEATURES_KEY,
        blocking=True,
        description="One row per eligible user of marts.dim_users: 1 <= rows == eligible users.",
    ),
    AssetCheckSpec(
        "keys_not_null_unique",
        asset=USER_FEATURES_KEY,
        blocking=True,
        description="user_id is never null and unique; as_of_date is set on every row.",
    ),
    AssetCheckSpec(
        "features_in_valid_ranges",
        asset=USER_FEATURES_KEY,
        blocking=True,
        description="Counts >= 0, 7d <= 30d <= total, active days within the window, revenue >= 0, "
        "recency and tenure >= 0, flags consistent with counts.",
    ),
    AssetCheckSpec(
        "reconciles_with_dim_users",
        asset=USER_FEATURES_KEY,
        blocking=False,
        description="When the all-time features come from marts.dim_users' totals (as of its "
        "latest day): the 30-day window read from staging.stg_events agrees with them (a user "
        "has events in the window iff dim_users' last event day falls in it). When they are "
        "computed from every event as of the latest event day: each user's events_total, "
        "purchases_total and revenue_total equal dim_users' event_count, purchase_count and "
        "total revenue (revenue within a relative 1e-6). Skipped for an explicit as_of_date.",
    ),
]

DAILY_METRICS_CHECKS = [
    AssetCheckSpec(
        "row_count_in_bounds",
        asset=DAILY_METRICS_KEY,
        blocking=True,
        description="At most one row per day of the run's window, and a row for every day that "
        "has events in staging.stg_events.",
    ),
    AssetCheckSpec(
        "keys_not_null_unique",
        asset=DAILY_METRICS_KEY,
        blocking=True,
        description="metric_date is never null, unique, and inside the run's partition window.",
    ),
    AssetCheckSpec(
        "metrics_in_valid_ranges",
        asset=DAILY_METRICS_KEY,
        blocking=True,
        description="Counts >= 0, active_users <= events_total, purchasers <= min(active_users, "
        "purchases), typed counts sum to <= events_total, revenue >= 0, conversion in [0, 1].",
    ),
    AssetCheckSpec(
        "reconciles_with_fct_daily_events",
        asset=DAILY_METRICS_KEY,
        blocking=False,
        description="events_total and revenue per day equal the sums of marts.fct_daily_events "
        "over event types for the same day (revenue within a relative 1e-6).",
    ),
]


def _result(
    spec: AssetCheckSpec,
    failures: Sequence[str],
    *,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
    **metadata: object,
) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=not failures,
        severity=severity,
        description="; ".join(failures[:10]) if failures else "ok",
        metadata={"failures": len(failures), **metadata},
    )


def _first_users(bad: pl.DataFrame, describe: Callable[[dict], str]) -> list[str]:
    """One failure line per user of ``bad`` (by ``describe``), the first 10, then how many more."""
    lines = [describe(r) for r in bad.head(10).iter_rows(named=True)]
    if bad.height > 10:
        lines.append(f"... {bad.height - 10} more user(s)")
    return lines


def _spec(specs: list[AssetCheckSpec], name: str) -> AssetCheckSpec:
    return next(s for s in specs if s.name == name)


def _violations(frame: pl.DataFrame, rules: dict[str, pl.Expr]) -> list[str]:
    """For each rule (an expression true on valid rows), how many rows break it."""
    if frame.is_empty():
        return []
    counts = frame.select(
        [(~rule.fill_null(True)).sum().alias(name) for name, rule in rules.items()]
    ).row(0, named=True)
    return [f"{name}: {n} row(s)" for name, n in counts.items() if n]


# --- ml.user_features -------------------------------------------------------------------------


def check_user_features(features: pl.DataFrame, eligible_users: int) -> list[AssetCheckResult]:
    """All checks of ``ml.user_features``; ``eligible_users`` counts dim_users rows signed up by
    the as-of date (computed independently of the feature join, to catch fan-out or losses)."""
    import polars as pl

    specs = USER_FEATURES_CHECKS
    rows = features.height
    bounds = []
    if rows < 1:
        bounds.append("no rows")
    if rows != eligible_users:
        bounds.append(f"{rows} rows but {eligible_users} eligible users in marts.dim_users")

    keys = _violations(
        features,
        {
            "user_id not null": pl.col("user_id").is_not_null(),
            "as_of_date not null": pl.col("as_of_date").is_not_null(),
        },
    )
    dupes = rows - features.get_column("user_id").n_unique() if rows else 0
    if dupes:
        keys.append(f"user_id duplicated: {dupes} extra row(s)")

    c = pl.col
    counts = [n for n, t in features.schema.items() if t == pl.Int64 and n != "user_id"]
    ranges = _violations(
        features,
        {
            **{f"{n} >= 0": c(n) >= 0 for n in counts},
            "events_7d <= events_30d <= events_total": (c("events_7d") <= c("events_30d"))
            & (c("events_30d") <= c("events_total")),
            "active_days_7d <= 7": c("active_days_7d") <= 7,
            "active_days_30d <= 30": c("active_days_30d") <= 30,
            "active_days_7d <= active_days_30d": c("active_days_7d") <= c("active_days_30d"),
            "active_days_30d <= events_30d": c("active_days_30d") <= c("events_30d"),
            "typed 30d counts <= events_30d": (
                c("page_views_30d") + c("clicks_30d") + c("add_to_carts_30d") + c("purchases_30d")
            )
            <= c("events_30d"),
            "purchases_30d <= purchases_total": c("purchases_30d") <= c("purchases_total"),
            "revenue_30d >= 0": c("revenue_30d") >= 0,
            "revenue_30d <= revenue_total": c("revenue_30d")
            <= c("revenue_total") * (1 + REVENUE_REL_TOL) + 1e-9,
            "avg_order_value >= 0": c("avg_order_value") >= 0,
            "first_event_date <= last_event_date <= as_of_date": (
                c("first_event_date") <= c("last_event_date")
            )
            & (c("last_event_date") <= c("as_of_date")),
            "flags match counts": (c("is_active_7d") == (c("events_7d") > 0))
            & (c("is_active_30d") == (c("events_30d") > 0))
            & (c("has_purchased") == (c("purchases_total") > 0))
            & (c("purchased_30d") == (c("purchases_30d") > 0)),
        },
    )
    return [
        _result(_spec(specs, "row_count_in_bounds"), bounds, rows=rows, eligible=eligible_users),
        _result(_spec(specs, "keys_not_null_unique"), keys),
        _result(_spec(specs, "features_in_valid_ranges"), ranges),
    ]


def reconcile_features_with_dim_users(
    features: pl.DataFrame,
    activity: pl.DataFrame | None,
    *,
    as_of_is_latest: bool,
    totals_from_mart: bool = False,
    problem: str | None = None,
) -> AssetCheckResult:
    """The features agree with ``marts.dim_users``.

    * ``totals_from_mart`` (the all-time features were taken from the mart's totals): what the
      mart cannot vouch for is the 30-day window, read from ``stg_events``; the two sources
      must agree: a user has events in the window (``events_30d > 0``) if and only if the
      mart's last event day (``last_event_date``) falls in ``[D-29, D]``. A mart built from
      other events than those read (stale, or ahead) breaks it for the users whose recent
      activity differs. (That the window counts stay within the totals is the blocking
      ``features_in_valid_ranges``.)
    * otherwise, as of the latest event day: per user, the totals computed from every event must
      equal the mart's (``activity``: ``user_id, event_count, purchase_count, revenue``, or None
      with ``problem`` saying why it could not be read). As of an explicit day: skipped.
    """
    import polars as pl

    from analytics.features import WINDOW_DAYS

    spec = _spec(USER_FEATURES_CHECKS, "reconciles_with_dim_users")
    if totals_from_mart:
        window_start = pl.col("as_of_date") - pl.duration(days=WINDOW_DAYS - 1)
        in_window = pl.col("last_event_date").is_not_null() & (
            pl.col("last_event_date") >= window_start
        )
        bad = features.filter((pl.col("events_30d") > 0) != in_window).sort("user_id")
        failures = _first_users(
            bad,
            lambda r: (
                f"user {r['user_id']}: {r['events_30d']} event(s) in the 30-day window "
                f"of stg_events, but dim_users' last event day is {r['last_event_date']}"
            ),
        )
        return _result(
            spec, failures, mismatched_users=bad.height, compared="30-day window vs dim_users"
        )
    if not as_of_is_latest:
        return _result(spec, [], skipped="as_of_date is before the latest event day")
    if activity is None:
        return _result(
            spec,
            [f"marts.dim_users activity not readable: {problem}"],
            severity=AssetCheckSeverity.WARN,
        )
    joined = features.select("user_id", "events_total", "purchases_total", "revenue_total").join(
        activity.with_columns(
            pl.col("event_count", "purchase_count").fill_null(0).cast(pl.Int64),
            pl.col("revenue").fill_null(0.0).cast(pl.Float64),
        ),
        on="user_id",
        how="left",
    )
    bad = joined.filter(
        (pl.col("events_total") != pl.col("event_count"))
        | (pl.col("purchases_total") != pl.col("purchase_count"))
        | (
            (pl.col("revenue_total") - pl.col("revenue")).abs()
            > REVENUE_REL_TOL * pl.max_horizontal(pl.col("revenue").abs(), pl.lit(1.0))
        )
        | pl.col("event_count").is_null()
    ).sort("user_id")
    failures = _first_users(
        bad,
        lambda r: (
            f"user {r['user_id']}: events {r['events_total']} vs {r['event_count']}, "
            f"purchases {r['purchases_total']} vs {r['purchase_count']}, revenue "
            f"{r['revenue_total']} vs {r['revenue']}"
        ),
    )
    return _result(spec, failures, mismatched_users=bad.height)


# --- analytics.daily_metrics ------------------------------------------------------------------


def check_daily_metrics(
    metrics: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    event_days: set[dt.date],
    mart: pl.DataFrame | None,
    mart_problem: str | None = None,
) -> list[AssetCheckResult]:
    """All checks of ``analytics.daily_metrics`` for the window ``[start, end)``.

    ``event_days``: the days of the window with events in the input; ``mart``: rows of
    ``marts.fct_daily_events`` for the window (``event_date, events, revenue``), or None with
    ``mart_problem`` saying why it could not be read.
    """
    import polars as pl

    from analytics.metrics import days_in

    specs = DAILY_METRICS_CHECKS
    window = days_in(start, end)
    rows = metrics.height
    days = set(metrics.get_column("metric_date").drop_nulls().to_list())
    bounds = []
    if rows > len(window):
        bounds.append(f"{rows} rows for a window of {len(window)} day(s)")
    missing = sorted(event_days - days)
    if missing:
        bounds.append(f"days with events but no row: {[d.isoformat() for d in missing]}")

    keys = _violations(metrics, {"metric_date not null": pl.col("metric_date").is_not_null()})
    if rows - metrics.get_column("metric_date").n_unique():
        keys.append("metric_date duplicated")
    outside = sorted(d for d in days if not start <= d < end)
    if outside:
        keys.append(f"metric_date outside [{start}, {end}): {[d.isoformat() for d in outside]}")

    c = pl.col
    counts = [n for n, t in metrics.schema.items() if t == pl.Int64]
    ranges = _violations(
        metrics,
        {
            **{f"{n} >= 0": c(n) >= 0 for n in counts},
            "active_users <= events_total": c("active_users") <= c("events_total"),
            "purchasers <= active_users": c("purchasers") <= c("active_users"),
            "purchasers <= purchases": c("purchasers") <= c("purchases"),
            "typed counts <= events_total": (
                c("page_views") + c("clicks") + c("add_to_carts") + c("purchases")
            )
            <= c("events_total"),
            "revenue >= 0": c("revenue") >= 0,
            "conversion_rate in [0, 1]": c("conversion_rate").is_between(0.0, 1.0),
            "avg_order_value >= 0": c("avg_order_value") >= 0,
        },
    )

    if mart is None:
        recon = [f"marts.fct_daily_events not readable: {mart_problem}"]
        recon_severity = AssetCheckSeverity.WARN
    else:
        recon = reconcile_with_mart(metrics, mart)
        recon_severity = AssetCheckSeverity.ERROR
    return [
        _result(_spec(specs, "row_count_in_bounds"), bounds, rows=rows, window_days=len(window)),
        _result(_spec(specs, "keys_not_null_unique"), keys),
        _result(_spec(specs, "metrics_in_valid_ranges"), ranges),
        _result(_spec(specs, "reconciles_with_fct_daily_events"), recon, severity=recon_severity),
    ]


def reconcile_with_mart(metrics: pl.DataFrame, mart: pl.DataFrame) -> list[str]:
    """Per day, events_total and revenue must equal the mart's sums over event types."""
    import polars as pl

    per_day = mart.group_by(metric_date=pl.col("event_date")).agg(
        mart_events=pl.col("events").sum().cast(pl.Int64),
        mart_revenue=pl.col("revenue").fill_null(0.0).sum().cast(pl.Float64),
    )
    ours = metrics.filter(pl.col("events_total") > 0).select(
        "metric_date", "events_total", "revenue"
    )
    joined = ours.join(per_day, on="metric_date", how="full", coalesce=True).with_columns(
        pl.col("events_total", "mart_events").fill_null(0),
        pl.col("revenue", "mart_revenue").fill_null(0.0),
    )
    bad = joined.filter(
        (pl.col("events_total") != pl.col("mart_events"))
        | (
            (pl.col("revenue") - pl.col("mart_revenue")).abs()
            > REVENUE_REL_TOL * pl.max_horizontal(pl.col("mart_revenue").abs(), pl.lit(1.0))
        )
    ).sort("metric_date")
    return [
        f"{r['metric_date']}: events {r['events_total']} vs mart {r['mart_events']}, "
        f"revenue {r['revenue']:.4f} vs mart {r['mart_revenue']:.4f}"
        for r in bad.iter_rows(named=True)
    ]
