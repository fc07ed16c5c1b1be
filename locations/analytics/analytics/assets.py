"""Analytics assets: thin shells that read upstream tables, call pure functions, check, write.

Each asset follows write-audit-publish: the output frame is checked in memory (analytics.checks)
and written to Iceberg in one atomic commit only if every blocking check passed, so consumers
never read a snapshot that failed a blocking check.
"""

import datetime as dt
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
)
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet
from pydantic import Field

# polars and analytics.io/features/metrics/frames are imported inside the asset bodies: loading
# the definitions must stay cheap (docs/benchmarks.md).
from analytics.automation import daily_metrics_condition, user_features_condition
from analytics.checks import (
    DAILY_METRICS_CHECKS,
    USER_FEATURES_CHECKS,
    check_daily_metrics,
    check_user_features,
    reconcile_features_with_dim_users,
)
from analytics.columns import DAILY_METRICS_COLUMNS, USER_FEATURES_COLUMNS, table_schema
from analytics.sources import (
    DAILY_METRICS_KEY,
    DIM_USERS,
    DIM_USERS_ACTIVITY,
    FCT_DAILY_EVENTS,
    STG_EVENTS,
    STG_USER_VERSIONS,
    USER_FEATURES_KEY,
)
from shared.catalog import layer_tags, owners
from shared.keys import table_identifier
from shared.partitions import daily_partitions
from shared.resources import IcebergCatalogResource

_SAME_DAY = TimeWindowPartitionMapping()


def _blocking_failure(
    context: AssetExecutionContext, results: list[AssetCheckResult], specs: list
) -> Failure | None:
    """The failure to raise (writing nothing) when a blocking check failed; logs failed checks."""
    blocking = {s.name for s in specs if s.blocking}
    failed = [r for r in results if not r.passed]
    for r in failed:
        context.log.warning(f"check {r.check_name} failed: {r.description}")
    fatal = [r for r in failed if r.check_name in blocking]
    if not fatal:
        return None
    return Failure(
        description="blocking check(s) failed, nothing was written (consumers keep the previous "
        "snapshot): " + "; ".join(f"{r.check_name}: {r.description}" for r in fatal),
        metadata={r.check_name: r.description or "" for r in fatal},
    )


class UserFeaturesConfig(Config):
    """Run configuration of `ml/user_features`."""

    as_of_date: str | None = Field(
        default=None,
        description="Compute features as of the end of this UTC day (YYYY-MM-DD). Default: the "
        "latest event_date in staging.stg_events.",
    )


@asset(
    key=USER_FEATURES_KEY,
    deps=[STG_EVENTS.key, DIM_USERS.key, STG_USER_VERSIONS.key],
    group_name="ml",
    kinds={"polars", "iceberg"},
    check_specs=USER_FEATURES_CHECKS,
    automation_condition=user_features_condition(),
    owners=owners("analytics"),
    tags=layer_tags("ml"),
    metadata={
        **TableMetadataSet(
            column_schema=table_schema(USER_FEATURES_COLUMNS),
            table_name=table_identifier(USER_FEATURES_KEY),
        )
    },
)
def user_features(
    context: AssetExecutionContext, config: UserFeaturesConfig, iceberg: IcebergCatalogResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """ML features per user as of the end of day D (table `ml.user_features`, full overwrite).

    An event's day `event_date` is the UTC date of its `event_ts`. D = run config
    `as_of_date`, else the latest event day in `staging.stg_events`. Events E = rows of
    stg_events with event_id and user_id not null (staging's contract: rows without them are
    left out, before deduplication), one per `event_id`, with `event_date <= D`.
    7d = `event_date` in [D-6, D]; 30d = `event_date` in [D-29, D]. One row per user of
    `marts.dim_users` whose `signup_at` is null or has UTC date <= D:

    - `country`, `plan`: of the user's version valid at the end of D
      (`staging.stg_user_versions`, latest `valid_from` with UTC date <= D; null if none),
      never a later version; `signup_date` = UTC date of signup_at;
      `tenure_days` = D - signup_date; `as_of_date` = D
    - `first_event_date` / `last_event_date` = min / max event_date of the user's E;
      `days_since_first_event` / `days_since_last_event` = D - those (null without events)
    - `events_total` / `events_7d` / `events_30d` = count of the user's E (in the window)
    - `active_days_7d` / `active_days_30d` = distinct event_date in the window
    - `page_views_30d`, `clicks_30d`, `add_to_carts_30d`, `purchases_30d` = count by
      event_type (page_view, click, add_to_cart, purchase) in 30d; `purchases_total` all time
    - `revenue_30d` / `revenue_total` = sum(amount) of purchase events (0.0 if none),
      rounded to 6 decimals
    - `avg_order_value` = revenue_total / purchases with a non-null amount (null if none:
      a purchase without an amount counts in purchases_* but not in the average)
    - `is_active_7d` = events_7d > 0, `is_active_30d` = events_30d > 0,
      `has_purchased` = purchases_total > 0, `purchased_30d` = purchases_30d > 0

    Counts are 0 (not null) for users without events. Sorted by user_id.
    """
    import polars as pl

    from analytics import features as feature_defs
    from analytics.frames import utc_date
    from analytics.io import metadata_max, output_metadata, read_upstream, to_arrow

    as_of = dt.date.fromisoformat(config.as_of_date) if config.as_of_date else None
    # With an explicit as-of date, events after it are never read (pushed down to the scan).
    events = read_upstream(
        iceberg,
        STG_EVENTS,
        window_column="event_ts" if as_of else None,
        end=as_of + dt.timedelta(days=1) if as_of else None,
        pruning_column="event_date",
    )
    users = read_upstream(iceberg, DIM_USERS)
    # With an explicit as-of date, versions valid only later are never read.
    versions = read_upstream(
        iceberg,
        STG_USER_VERSIONS,
        window_column="valid_from" if as_of else None,
        end=as_of + dt.timedelta(days=1) if as_of else None,
    )
    if as_of is None:
        try:  # the latest event_date from stg_events' manifests, for the snapshot read
            as_of = metadata_max(iceberg, events, STG_EVENTS, "event_date")
        except LookupError:  # metadata cannot tell (delete files): from the events themselves
            as_of = feature_defs.latest_event_date(events.frame)
        if as_of is None:
            raise Failure(
                f"{STG_EVENTS.identifier} has no events: there is no day to compute features "
                "as of. Materialize the upstream, or set as_of_date in the run config."
            )
    frame = feature_defs.user_features(users.frame, events.frame, as_of, versions.frame).collect()
    eligible = (
        users.frame.with_columns(d=utc_date(users.frame, "signup_at"))
        .filter(pl.col("d").is_null() | (pl.col("d") <= as_of))
        .select(pl.len())
        .collect()
        .item()
    )
    activity, problem = None, None
    try:
        activity_read = read_upstream(iceberg, DIM_USERS_ACTIVITY)
        activity = activity_read.frame.collect()
    except Exception as exc:  # the mart's activity columns are another team's: report only
        problem = str(exc)
    results = [
        *check_user_features(frame, eligible),
        reconcile_features_with_dim_users(
            frame, activity, as_of_is_latest=config.as_of_date is None, problem=problem
        ),
    ]
    failure = _blocking_failure(context, results, USER_FEATURES_CHECKS)
    if failure:
        yield from results  # recorded as failed evaluations in the UI
        raise failure
    written = iceberg.write(table_identifier(USER_FEATURES_KEY), to_arrow(frame), mode="overwrite")
    context.log.info(f"wrote {written.rows_written} rows to {written.identifier} as of {as_of}")
    yield MaterializeResult(
        metadata=output_metadata(
            written,
            frame,
            [events, users, versions],
            as_of_date=as_of.isoformat(),
            write_mode="overwrite (whole table)",
        ),
        check_results=results,
    )


@asset(
    key=DAILY_METRICS_KEY,
    deps=[
        AssetDep(STG_EVENTS.key, partition_mapping=_SAME_DAY),
        AssetDep(FCT_DAILY_EVENTS.key, partition_mapping=_SAME_DAY),
        DIM_USERS.key,
    ],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="analytics",
    kinds={"polars", "iceberg"},
    check_specs=DAILY_METRICS_CHECKS,
    automation_condition=daily_metrics_condition(),
    owners=owners("analytics"),
    tags=layer_tags("analytics"),
    metadata={
        **TableMetadataSet(
            column_schema=table_schema(DAILY_METRICS_COLUMNS),
            table_name=table_identifier(DAILY_METRICS_KEY),
        )
    },
)
def daily_metrics(
    context: AssetExecutionContext, iceberg: IcebergCatalogResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Business metrics per UTC day (table `analytics.daily_metrics`, partitioned by day).

    A run covers the partition window [start, end) (one day, or a range in one run) and
    overwrites exactly those days of the table; other days are untouched. For each day d, with
    E_d = rows of `staging.stg_events` with event_id and user_id not null (staging's contract),
    one per `event_id`, whose `event_ts` falls on d (UTC):

    - `metric_date` = d
    - `active_users` = count distinct non-null user_id in E_d
    - `events_total` = count of E_d (a row without a user_id is no event: not counted)
    - `page_views`, `clicks`, `add_to_carts`, `purchases` = count of E_d by event_type
    - `purchasers` = count distinct non-null user_id of purchase events in E_d
    - `revenue` = sum(amount) of purchase events in E_d (0.0 if none), rounded to 6 decimals
    - `signups` = count distinct user_id of `marts.dim_users` with UTC date(signup_at) = d
    - `conversion_rate` = purchasers / active_users (null if 0 active users)
    - `avg_order_value` = revenue / purchases with a non-null amount (null if none)

    A day has a row iff it has at least one event or one signup. Sorted by metric_date.
    """
    import polars as pl

    from analytics import metrics as metric_defs
    from analytics.frames import IS_EVENT, with_utc_event_date
    from analytics.io import output_metadata, read_upstream, to_arrow

    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    # The exact window is on event_ts (UTC); event_date prunes partitions in the manifests.
    events = read_upstream(
        iceberg,
        STG_EVENTS,
        window_column="event_ts",
        start=start,
        end=end,
        pruning_column="event_date",
    )
    users = read_upstream(iceberg, DIM_USERS, window_column="signup_at", start=start, end=end)
    frame = metric_defs.daily_metrics(events.frame, users.frame, start, end).collect()

    event_days = set(
        with_utc_event_date(events.frame)
        .filter(IS_EVENT)
        .select(pl.col("event_date").unique())
        .collect()
        .to_series()
        .to_list()
    )
    mart, mart_problem, reads = None, None, [events, users]
    try:
        mart_read = read_upstream(
            iceberg, FCT_DAILY_EVENTS, window_column="event_date", start=start, end=end
        )
        mart = mart_read.frame.collect()
        reads.append(mart_read)
    except Exception as exc:  # the mart is another team's table: report, never crash
        mart_problem = str(exc)
    results = check_daily_metrics(frame, start, end, event_days, mart, mart_problem)
    failure = _blocking_failure(context, results, DAILY_METRICS_CHECKS)
    if failure:
        yield from results  # recorded as failed evaluations in the UI
        raise failure

    identifier = table_identifier(DAILY_METRICS_KEY)
    # Replaces exactly the run's days (an Iceberg row filter, applied by pyiceberg's overwrite).
    overwrite = f"metric_date >= '{start.isoformat()}' and metric_date < '{end.isoformat()}'"
    written = iceberg.write(
        identifier,
        to_arrow(frame),
        mode="overwrite",
        overwrite_filter=overwrite,
        partition_by_day="metric_date",
    )
    context.log.info(
        f"wrote {written.rows_written} rows to {identifier} for [{start}, {end}) "
        f"(replaced exactly those days)"
    )
    yield MaterializeResult(
        metadata=output_metadata(
            written,
            frame,
            reads,
            partition_window=f"{start.isoformat()}..{(end - dt.timedelta(days=1)).isoformat()}",
            partitions_in_run=len(context.partition_keys),
            days_written=[d.isoformat() for d in frame.get_column("metric_date").to_list()],
            write_mode=f"overwrite where {overwrite}",
        ),
        check_results=results,
    )
