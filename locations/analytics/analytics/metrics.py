"""Daily business metrics (``analytics.daily_metrics``): pure functions on polars LazyFrames.

For each UTC day ``d`` of the window ``[start, end)`` (events: the rows of
``staging.stg_events`` with an event_id and a user_id, one per event_id, whose ``event_ts``
falls on ``d`` in UTC; staging leaves rows without a user_id out, and so does analytics):

* ``active_users``: distinct non-null user_id with at least one event on ``d``;
* ``events_total``: events on ``d`` (an event always has a user); ``page_views``, ``clicks``, ``add_to_carts``, ``purchases``:
  events of each type on ``d``;
* ``purchasers``: distinct non-null user_id with a ``purchase`` on ``d``;
* ``revenue``: sum of ``amount`` over purchases on ``d`` (null amounts ignored, 0.0 if none),
  rounded to 6 decimal places;
* ``signups``: distinct users of ``marts.dim_users`` whose ``signup_at`` falls on ``d`` (UTC);
* ``conversion_rate`` = purchasers / active_users, ``avg_order_value`` = revenue / purchases
  with an amount (a purchase without one is counted in ``purchases`` but is in neither the
  revenue nor the average; null when the denominator is 0).

A day gets a row when it has at least one event or one signup; other days get no row.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from analytics.frames import count_if, dedupe_events, money_sum, safe_ratio, utc_date

#: Output columns, in order, with their types: the table schema of analytics.daily_metrics.
METRIC_SCHEMA: dict[str, pl.DataType] = {
    "metric_date": pl.Date(),
    "active_users": pl.Int64(),
    "events_total": pl.Int64(),
    "page_views": pl.Int64(),
    "clicks": pl.Int64(),
    "add_to_carts": pl.Int64(),
    "purchases": pl.Int64(),
    "purchasers": pl.Int64(),
    "revenue": pl.Float64(),
    "signups": pl.Int64(),
    "conversion_rate": pl.Float64(),
    "avg_order_value": pl.Float64(),
}


def days_in(start: dt.date, end: dt.date) -> list[dt.date]:
    """The days of the half-open window ``[start, end)``."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def daily_metrics(
    events: pl.LazyFrame, users: pl.LazyFrame, start: dt.date, end: dt.date
) -> pl.LazyFrame:
    """Metrics of each day of ``[start, end)``. See the module docstring for the formulas.

    ``events`` needs ``event_id, user_id, event_type, event_date, amount``; ``users`` needs
    ``user_id, signup_at``. Rows outside the window are ignored, so callers may pass more.
    """
    if end <= start:
        raise ValueError(f"daily_metrics: empty window [{start}, {end})")
    ev = dedupe_events(events).filter(
        (pl.col("event_date") >= start) & (pl.col("event_date") < end)
    )
    etype = pl.col("event_type")
    is_purchase = etype == "purchase"
    per_day = ev.group_by(metric_date=pl.col("event_date")).agg(
        active_users=pl.col("user_id").drop_nulls().n_unique().cast(pl.Int64),
        events_total=pl.len().cast(pl.Int64),
        page_views=count_if(etype == "page_view"),
        clicks=count_if(etype == "click"),
        add_to_carts=count_if(etype == "add_to_cart"),
        purchases=count_if(is_purchase),
        purchasers=pl.col("user_id").filter(is_purchase).drop_nulls().n_unique().cast(pl.Int64),
        revenue=money_sum(pl.col("amount").filter(is_purchase)),
        priced_purchases=count_if(is_purchase & pl.col("amount").is_not_null()),
    )
    signups = (
        users.with_columns(metric_date=utc_date(users, "signup_at"))
        .filter((pl.col("metric_date") >= start) & (pl.col("metric_date") < end))
        .group_by("metric_date")
        .agg(signups=pl.col("user_id").drop_nulls().n_unique().cast(pl.Int64))
    )
    counts = [c for c, t in METRIC_SCHEMA.items() if t == pl.Int64()]
    return (
        per_day.join(signups, on="metric_date", how="full", coalesce=True)
        .with_columns([pl.col(c).fill_null(0) for c in counts] + [pl.col("revenue").fill_null(0.0)])
        .with_columns(
            conversion_rate=safe_ratio(pl.col("purchasers"), pl.col("active_users")),
            # Purchases without an amount: counted as purchases, left out of the average.
            avg_order_value=safe_ratio(pl.col("revenue"), pl.col("priced_purchases")),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in METRIC_SCHEMA.items()])
        .sort("metric_date")
    )
