"""Small polars helpers shared by features and metrics (pure functions, no I/O)."""

from __future__ import annotations

import polars as pl

#: An event is a row with an event_id and a user_id: the contract of ``staging.stg_events``,
#: which leaves other raw rows out (counted by the raw check ``raw_events_null_keys``). Applied
#: here too, before deduplication as in staging, so every figure follows the same contract.
IS_EVENT = pl.col("event_id").is_not_null() & pl.col("user_id").is_not_null()


def dedupe_events(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per ``event_id``; rows without an event_id or a user_id are dropped first
    (:data:`IS_EVENT`).

    ``staging.stg_events`` is already deduplicated; this guard makes every figure of analytics
    defined on distinct event_ids even if an upstream ever delivers a duplicate (at-least-once
    sync). Among the rows of a duplicated event_id, the kept one is the first by
    ``(event_id, event_date, user_id, event_type)``, so the choice does not depend on file order.
    Only duplicated ids are sorted (sorting every string id cost 3x the whole feature query).
    ``event_date`` is first set from ``event_ts`` (UTC) when the frame has it
    (:func:`with_utc_event_date`).
    """
    flag = "__analytics_duplicated"
    flagged = (
        with_utc_event_date(events)
        .filter(IS_EVENT)
        .with_columns(pl.col("event_id").is_duplicated().alias(flag))
        .cache()
    )
    duplicated = (
        flagged.filter(pl.col(flag))
        .sort(["event_id", "event_date", "user_id", "event_type"], nulls_last=True)
        .unique(subset=["event_id"], keep="first", maintain_order=True)
    )
    return pl.concat([flagged.filter(~pl.col(flag)), duplicated]).drop(flag)


def with_utc_event_date(events: pl.LazyFrame) -> pl.LazyFrame:
    """Set ``event_date`` to the UTC date of ``event_ts`` when the frame has ``event_ts``.

    The day of an event is defined on its timestamp in UTC; an upstream ``event_date`` computed
    in another time zone would otherwise move events across days.
    """
    if "event_ts" not in events.collect_schema().names():
        return events
    return events.with_columns(event_date=utc_date(events, "event_ts"))


def utc_date(frame: pl.LazyFrame, column: str) -> pl.Expr:
    """The UTC calendar date of timestamp ``column`` (a naive timestamp is taken as UTC)."""
    dtype = frame.collect_schema()[column]
    expr = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        else:
            expr = expr.dt.convert_time_zone("UTC")
        return expr.dt.date()
    if isinstance(dtype, pl.Date):
        return expr
    raise TypeError(f"column {column!r} must be a timestamp or a date, got {dtype}")


def count_if(condition: pl.Expr) -> pl.Expr:
    """Number of rows of the group where ``condition`` is true, as Int64."""
    return condition.fill_null(False).sum().cast(pl.Int64)


def safe_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator`` as Float64, null when the denominator is 0 or null."""
    return (
        pl.when(denominator > 0)
        .then(numerator.cast(pl.Float64) / denominator.cast(pl.Float64))
        .otherwise(None)
    )


#: Decimal places kept on sums of money. Amounts are in cents; a float sum depends on the order of
#: its terms in the last bits, so rounding makes a re-run (or another engine) give the same value.
MONEY_DECIMALS = 6


def money_sum(values: pl.Expr) -> pl.Expr:
    """Sum of ``values`` (nulls ignored, 0.0 when empty) rounded to :data:`MONEY_DECIMALS`."""
    return values.sum().cast(pl.Float64).round(MONEY_DECIMALS)
