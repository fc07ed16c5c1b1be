"""ML features per user (``ml.user_features``): pure functions on polars LazyFrames.

Definitions (the asset docstring and the README repeat them so another engine can recompute
them). An event's day ``event_date`` is the UTC date of its ``event_ts``. ``D`` is the as-of date;
events are the rows of ``staging.stg_events`` with an event_id and a user_id (staging leaves
other raw rows out; so does analytics, before deduplication), one per event_id, with
``event_date <= D``; "7d" means ``event_date`` in ``[D-6, D]`` and "30d"
means ``event_date`` in ``[D-29, D]`` (both ends included, so the windows hold 7 and 30 days).
Revenue is the sum of ``amount`` over ``purchase`` events (null amounts ignored, 0.0 if none),
rounded to 6 decimal places. Average order value is revenue over the purchases WITH an amount:
a purchase without one (its amount unknown, not zero) counts in ``purchases_*`` but neither
in the revenue nor in the average (null when no purchase has an amount).

Population: every user of ``marts.dim_users`` whose ``signup_at`` is null or falls on or before
``D`` (UTC date). A user without events gets 0 counts, 0.0 revenue and null event dates.

Point in time: ``country`` and ``plan`` are those of the user's version valid at the end of day
``D`` (``staging.stg_user_versions``: the version with the latest ``valid_from`` before ``D+1``
00:00 UTC), never a later one, so training rows as of a past day do not leak the future. When no
version was valid yet (the first version we know came later), both are null.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from analytics.frames import (
    IS_EVENT,
    MONEY_DECIMALS,
    count_if,
    dedupe_events,
    money_sum,
    safe_ratio,
    utc_date,
    with_utc_event_date,
)

#: Output columns, in order, with their types: the table schema of ml.user_features.
FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "as_of_date": pl.Date(),
    "country": pl.String(),
    "plan": pl.String(),
    "signup_date": pl.Date(),
    "tenure_days": pl.Int64(),
    "first_event_date": pl.Date(),
    "last_event_date": pl.Date(),
    "days_since_first_event": pl.Int64(),
    "days_since_last_event": pl.Int64(),
    "events_total": pl.Int64(),
    "events_7d": pl.Int64(),
    "events_30d": pl.Int64(),
    "active_days_7d": pl.Int64(),
    "active_days_30d": pl.Int64(),
    "page_views_30d": pl.Int64(),
    "clicks_30d": pl.Int64(),
    "add_to_carts_30d": pl.Int64(),
    "purchases_30d": pl.Int64(),
    "purchases_total": pl.Int64(),
    "revenue_30d": pl.Float64(),
    "revenue_total": pl.Float64(),
    "avg_order_value": pl.Float64(),
    "is_active_7d": pl.Boolean(),
    "is_active_30d": pl.Boolean(),
    "has_purchased": pl.Boolean(),
    "purchased_30d": pl.Boolean(),
}

_COUNT_COLUMNS = [
    "events_total",
    "events_7d",
    "events_30d",
    "active_days_7d",
    "active_days_30d",
    "page_views_30d",
    "clicks_30d",
    "add_to_carts_30d",
    "purchases_30d",
    "purchases_total",
]


def latest_event_date(events: pl.LazyFrame) -> dt.date | None:
    """The default as-of date: the latest event day (UTC date of ``event_ts`` when present) of
    the events (rows with an event_id and a user_id; None if there are none)."""
    return (
        with_utc_event_date(events)
        .filter(IS_EVENT)
        .select(pl.col("event_date").max())
        .collect()
        .item()
    )


def attributes_as_of(versions: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    """``user_id, country, plan`` of each user's version valid at the end of day ``as_of``
    (UTC): the latest ``valid_from`` whose UTC date is on or before ``as_of``."""
    return (
        versions.with_columns(
            user_id=pl.col("user_id").cast(pl.Int64), valid_date=utc_date(versions, "valid_from")
        )
        .filter(pl.col("user_id").is_not_null() & (pl.col("valid_date") <= as_of))
        .sort("user_id", "valid_from")
        .group_by("user_id")
        .agg(pl.col("country").last(), pl.col("plan").last())
    )


#: The per-user all-time totals the features need, under the names :func:`user_features` uses.
#: Computed from every event up to D (:func:`_lifetime_totals`), or taken from ``marts.dim_users``
#: (:func:`totals_from_dim_users`), which holds them over every event already.
LIFETIME_COLUMNS = (
    "first_event_date",
    "last_event_date",
    "events_total",
    "purchases_total",
    "revenue_total",
    "priced_purchases",
)

#: Days of events the 7d and 30d features need: [D-29, D].
WINDOW_DAYS = 30


def eligible_users(users: pl.LazyFrame, as_of: dt.date) -> int:
    """How many users of ``users`` (``signup_at``) the features as of ``as_of`` cover: signed up
    on or before it, or with no sign-up time (the population; its row-count check)."""
    return (
        users.with_columns(d=utc_date(users, "signup_at"))
        .filter(pl.col("d").is_null() | (pl.col("d") <= as_of))
        .select(pl.len())
        .collect()
        .item()
    )


def window_start(as_of: dt.date) -> dt.date:
    """The first day of the longest feature window (30d): ``as_of - 29``."""
    return as_of - dt.timedelta(days=WINDOW_DAYS - 1)


def _lifetime_totals(deduped: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    """Per user, the all-time totals (:data:`LIFETIME_COLUMNS`) over every deduplicated event
    up to ``as_of``: the full-history path, needed for features as of a past day."""
    ev = deduped.filter(pl.col("event_date") <= as_of)
    date = pl.col("event_date")
    is_purchase = pl.col("event_type") == "purchase"
    return ev.group_by(pl.col("user_id").cast(pl.Int64)).agg(
        first_event_date=date.min(),
        last_event_date=date.max(),
        events_total=pl.len().cast(pl.Int64),
        purchases_total=count_if(is_purchase),
        revenue_total=money_sum(pl.col("amount").filter(is_purchase)),
        priced_purchases=count_if(is_purchase & pl.col("amount").is_not_null()),
    )


def totals_from_dim_users(dim_users: pl.LazyFrame) -> pl.LazyFrame:
    """The all-time totals (:data:`LIFETIME_COLUMNS`) as ``marts.dim_users`` holds them.

    ``dim_users`` needs ``user_id, event_count, purchase_count, priced_purchase_count, revenue
    (total_revenue), first_event_at, last_event_at``: the mart computes them with the same
    definitions over every event of ``staging.stg_events`` (the days are the UTC dates of the
    first/last ``event_ts``; the revenue is rounded again here, a no-op on the mart's rounded
    sums). Only equal to :func:`_lifetime_totals` when the mart is up to date with the events
    and has no event after D: :func:`totals_cover` decides.
    """
    return dim_users.select(
        pl.col("user_id").cast(pl.Int64),
        first_event_date=utc_date(dim_users, "first_event_at"),
        last_event_date=utc_date(dim_users, "last_event_at"),
        events_total=pl.col("event_count").fill_null(0).cast(pl.Int64),
        purchases_total=pl.col("purchase_count").fill_null(0).cast(pl.Int64),
        revenue_total=pl.col("revenue").fill_null(0.0).cast(pl.Float64).round(MONEY_DECIMALS),
        # Not filled: null means dim_users does not know it (see totals_complete).
        priced_purchases=pl.col("priced_purchase_count").cast(pl.Int64),
    )


def totals_complete(totals: pl.DataFrame) -> bool:
    """Whether every user's totals are known: ``dim_users`` leaves ``priced_purchase_count`` null
    for a user whose purchases include a day built before ``fct_daily_events`` counted priced
    purchases (an upgraded deployment, until those days are rebuilt). Then the features count
    from the events, never from a count that is too low."""
    return totals.get_column("priced_purchases").null_count() == 0


def totals_latest_day(totals: pl.LazyFrame) -> dt.date | None:
    """The latest event day in the totals (:func:`totals_from_dim_users`), None without events."""
    return totals.select(pl.col("last_event_date").max()).collect().item()


def totals_cover(as_of: dt.date, latest_day: dt.date | None, up_to_date: bool) -> bool:
    """Whether the mart's all-time totals are the totals as of ``as_of``.

    They are when the mart was rebuilt from the events being read (``up_to_date``: its snapshot
    is not older than the events' one) and holds no event after ``as_of`` (``latest_day`` is
    its latest event day). Otherwise (a past day, or a mart not yet rebuilt after new events)
    the totals are computed from every event up to ``as_of``.
    """
    return up_to_date and (latest_day is None or latest_day <= as_of)


def _window_features(deduped: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    """Per user, the 7d and 30d features from the deduplicated events of
    ``[as_of - 29, as_of]`` (events outside the window are ignored, so the frame may hold only
    those days)."""
    d7 = as_of - dt.timedelta(days=6)
    date = pl.col("event_date")
    ev = deduped.filter((date >= window_start(as_of)) & (date <= as_of))
    etype = pl.col("event_type")
    in7 = date >= d7
    is_purchase = etype == "purchase"
    return ev.group_by(pl.col("user_id").cast(pl.Int64)).agg(
        events_7d=count_if(in7),
        events_30d=pl.len().cast(pl.Int64),
        active_days_7d=date.filter(in7).n_unique().cast(pl.Int64),
        active_days_30d=date.n_unique().cast(pl.Int64),
        page_views_30d=count_if(etype == "page_view"),
        clicks_30d=count_if(etype == "click"),
        add_to_carts_30d=count_if(etype == "add_to_cart"),
        purchases_30d=count_if(is_purchase),
        revenue_30d=money_sum(pl.col("amount").filter(is_purchase)),
    )


def user_features(
    users: pl.LazyFrame,
    events: pl.LazyFrame,
    as_of: dt.date,
    versions: pl.LazyFrame | None = None,
    totals: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Features of every user as of the end of day ``as_of`` (UTC). See the module docstring.

    ``users`` (the population) needs ``user_id, signup_at``; ``events`` needs
    ``event_id, user_id, event_type, event_date, amount``; ``versions`` (every version of every
    user) needs ``user_id, country, plan, valid_from``. Without ``versions``, ``users``' own
    ``country`` and ``plan`` are taken as valid since signup (tests and single-version data).

    Two paths, identical results (``tests/test_features.py``):

    * ``totals`` None (full history): the all-time totals are computed from ``events``, which
      must hold every event up to ``as_of``;
    * ``totals`` given (:func:`totals_from_dim_users`, valid when :func:`totals_cover`): the
      all-time totals are taken from it, and ``events`` need only hold the 30-day window: the
      cost follows the window, not the history.
    """
    if versions is None:
        versions = users.select("user_id", "country", "plan", valid_from=pl.col("signup_at"))
    # Deduplicated once: both aggregations read the same (cached) frame.
    deduped = dedupe_events(events)
    if totals is None:
        totals = _lifetime_totals(deduped, as_of)
    per_user = totals.select("user_id", *LIFETIME_COLUMNS).join(
        _window_features(deduped, as_of), on="user_id", how="full", coalesce=True
    )
    people = (
        users.with_columns(
            user_id=pl.col("user_id").cast(pl.Int64), signup_date=utc_date(users, "signup_at")
        )
        .filter(pl.col("signup_date").is_null() | (pl.col("signup_date") <= as_of))
        .select("user_id", "signup_date")
        .join(attributes_as_of(versions, as_of), on="user_id", how="left")
    )
    as_of_lit = pl.lit(as_of, dtype=pl.Date)
    joined = people.join(per_user, on="user_id", how="left").with_columns(
        [pl.col(c).fill_null(0) for c in _COUNT_COLUMNS]
        + [pl.col(c).fill_null(0.0) for c in ("revenue_30d", "revenue_total")]
    )
    return (
        joined.with_columns(
            as_of_date=as_of_lit,
            tenure_days=(as_of_lit - pl.col("signup_date")).dt.total_days(),
            days_since_first_event=(as_of_lit - pl.col("first_event_date")).dt.total_days(),
            days_since_last_event=(as_of_lit - pl.col("last_event_date")).dt.total_days(),
            # Purchases without an amount: counted as purchases, left out of the average.
            avg_order_value=safe_ratio(pl.col("revenue_total"), pl.col("priced_purchases")),
            is_active_7d=pl.col("events_7d") > 0,
            is_active_30d=pl.col("events_30d") > 0,
            has_purchased=pl.col("purchases_total") > 0,
            purchased_30d=pl.col("purchases_30d") > 0,
        )
        .select([pl.col(name).cast(dtype) for name, dtype in FEATURE_SCHEMA.items()])
        .sort("user_id")
    )
