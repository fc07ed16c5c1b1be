"""Analytics assets: thin shells that read upstream tables, call pure functions, check, write.

Each asset follows write-audit-publish: the output frame is checked in memory (analytics.checks)
and written to Iceberg in one atomic commit only if every blocking check passed, so consumers
never read a snapshot that failed a blocking check.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
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
    DIM_USERS_TOTALS,
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


def _table_metadata(key: AssetKey, columns: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    """The table's column schema and Iceberg name, for the catalog before the first run."""
    return {
        **TableMetadataSet(column_schema=table_schema(columns), table_name=table_identifier(key))
    }


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


def _not_older(mart, events) -> bool:
    """Whether the snapshot of ``marts.dim_users`` read (``mart``) was committed no earlier than
    the snapshot of ``staging.stg_events`` read (``events``): the mart was rebuilt after the
    events last changed, so its totals cover them.

    Iceberg keeps no lineage between two tables: the commit times are what tells (a rebuild of
    dim_users always follows the stg_events days it read). Not sure means False: the full
    history is read, which is always right.
    """
    if mart is None or mart.snapshot_id is None:
        return False
    if events.snapshot_id is None:  # no events at all: the mart's totals are zeros
        return True
    # The commit times of the very snapshots read (read_upstream keeps them): no reload.
    if mart.snapshot_timestamp_ms is None or events.snapshot_timestamp_ms is None:
        return False
    return mart.snapshot_timestamp_ms >= events.snapshot_timestamp_ms


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
    metadata=_table_metadata(USER_FEATURES_KEY, USER_FEATURES_COLUMNS),
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

    What is read (the cost follows the window, not the history): the 7d/30d features come from
    the events of [D-29, D] only; the all-time ones (`events_total`, `purchases_total`,
    `revenue_total`, first/last event dates, the priced purchases of `avg_order_value`) from
    `marts.dim_users`' totals (`event_count`, `purchase_count`, `total_revenue`,
    `first_event_at`, `last_event_at`, `priced_purchase_count`, the same definitions over every
    event) when they are the totals as of D: its latest event day is <= D and its snapshot is
    not older than stg_events' one. Otherwise (features as of a past day, or dim_users not yet
    rebuilt after new events) every event up to D is read and the totals computed from them.
    Both paths give the same rows (tests/test_features.py).
    """

    from analytics import features as feature_defs
    from analytics.io import metadata_max, output_metadata, read_upstream, to_arrow

    explicit = dt.date.fromisoformat(config.as_of_date) if config.as_of_date else None
    users = read_upstream(iceberg, DIM_USERS)
    if explicit is not None:
        as_of = explicit
    else:
        latest = read_upstream(iceberg, STG_EVENTS)  # lazy: no data read here
        try:  # the latest event_date from stg_events' manifests, for the snapshot loaded
            as_of = metadata_max(iceberg, latest, STG_EVENTS, "event_date")
        except LookupError:  # metadata cannot tell (delete files): from the events themselves
            as_of = feature_defs.latest_event_date(latest.frame)
        if as_of is None:
            raise Failure(
                f"{STG_EVENTS.identifier} has no events: there is no day to compute features "
                "as of. Materialize the upstream, or set as_of_date in the run config."
            )
    end = as_of + dt.timedelta(days=1)
    # The all-time totals of dim_users, when it has them (a mart built before the column existed
    # does not): the features as of its latest day then read only 30 days of events.
    totals_read, totals, problem = None, None, None
    try:
        totals_read = read_upstream(iceberg, DIM_USERS_TOTALS)
        totals = feature_defs.totals_from_dim_users(totals_read.frame).collect()
    except Exception as exc:  # another team's columns: fall back to the full history
        problem = str(exc)
    events = read_upstream(
        iceberg,
        STG_EVENTS,
        window_column="event_ts",
        start=feature_defs.window_start(as_of),
        end=end,
        pruning_column="event_date",
    )
    use_totals = (
        totals is not None
        and feature_defs.totals_complete(totals)
        and feature_defs.totals_cover(
            as_of,
            feature_defs.totals_latest_day(totals.lazy()),
            _not_older(totals_read, events),
        )
    )
    if not use_totals:
        # A past day (or a mart not rebuilt since the events changed): every event up to D is
        # read; events after an explicit D are never read (pushed down to the scan).
        events = read_upstream(
            iceberg,
            STG_EVENTS,
            window_column="event_ts",
            end=end,
            pruning_column="event_date",
        )
    # With an explicit as-of date, versions valid only later are never read.
    versions = read_upstream(
        iceberg,
        STG_USER_VERSIONS,
        window_column="valid_from" if explicit else None,
        end=end if explicit else None,
    )
    frame = feature_defs.user_features(
        users.frame,
        events.frame,
        as_of,
        versions.frame,
        totals=totals.lazy() if use_totals else None,
    ).collect()
    eligible = feature_defs.eligible_users(users.frame, as_of)
    activity = None
    if totals is not None:
        activity = totals.select(
            "user_id",
            event_count="events_total",
            purchase_count="purchases_total",
            revenue="revenue_total",
        )
    else:
        try:
            activity = read_upstream(iceberg, DIM_USERS_ACTIVITY).frame.collect()
        except Exception as exc:  # the mart's activity columns are another team's: report only
            problem = str(exc)
    results = [
        *check_user_features(frame, eligible),
        reconcile_features_with_dim_users(
            frame,
            activity,
            as_of_is_latest=explicit is None,
            totals_from_mart=use_totals,
            problem=problem,
        ),
    ]
    failure = _blocking_failure(context, results, USER_FEATURES_CHECKS)
    if failure:
        yield from results  # recorded as failed evaluations in the UI
        raise failure
    written = iceberg.write(table_identifier(USER_FEATURES_KEY), to_arrow(frame), mode="overwrite")
    path = (
        "last 30 days of events + all-time totals of marts.dim_users"
        if use_totals
        else "every event up to as_of_date"
    )
    context.log.info(
        f"wrote {written.rows_written} rows to {written.identifier} as of {as_of} ({path})"
    )
    yield MaterializeResult(
        metadata=output_metadata(
            written,
            frame,
            [events, users, versions, *([totals_read] if use_totals else [])],
            as_of_date=as_of.isoformat(),
            features_from=path,
            write_mode="overwrite (whole table)",
        ),
        check_results=results,
    )


# Alike in shape to user_features' declaration, but every value differs: nothing to share.
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
    metadata=_table_metadata(DAILY_METRICS_KEY, DAILY_METRICS_COLUMNS),
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
    # The metrics and the days that have events (for the checks) in one collect: polars plans
    # the events scan once and reads the window's files once for both.
    frame, days = pl.collect_all(
        [
            metric_defs.daily_metrics(events.frame, users.frame, start, end),
            with_utc_event_date(events.frame)
            .filter(IS_EVENT)
            .select(pl.col("event_date").unique()),
        ]
    )
    event_days = set(days.to_series().to_list())
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
