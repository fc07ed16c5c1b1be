"""The output columns of the analytics tables, for the catalog: name, type, description.

Declared without polars (loading the definitions must stay cheap: polars is imported in the asset
bodies), and tested against the frames' declared schemas (``features.FEATURE_SCHEMA``,
``metrics.METRIC_SCHEMA``: ``tests/test_catalog.py``), so the catalog shows each table's columns
before its first run.
"""

from __future__ import annotations

from dagster import TableColumn, TableSchema

#: ``ml.user_features``: (name, polars type, description), in table order. D = the as-of day.
USER_FEATURES_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("user_id", "Int64", "The user (marts.dim_users.user_id)."),
    ("as_of_date", "Date", "D: the UTC day the features are computed as of (end of day)."),
    ("country", "String", "The user's country code (dim_users)."),
    ("plan", "String", "The user's plan (dim_users)."),
    ("signup_date", "Date", "UTC day of the user's signup."),
    ("tenure_days", "Int64", "Days from signup_date to D."),
    ("first_event_date", "Date", "UTC day of the user's first event (null without events)."),
    (
        "last_event_date",
        "Date",
        "UTC day of the user's latest event up to D (null without events).",
    ),
    ("days_since_first_event", "Int64", "D - first_event_date (null without events)."),
    ("days_since_last_event", "Int64", "D - last_event_date (null without events)."),
    ("events_total", "Int64", "Events of the user up to D (deduplicated)."),
    ("events_7d", "Int64", "Events in the 7 days ending on D."),
    ("events_30d", "Int64", "Events in the 30 days ending on D."),
    ("active_days_7d", "Int64", "Distinct days with events in the 7 days ending on D."),
    ("active_days_30d", "Int64", "Distinct days with events in the 30 days ending on D."),
    ("page_views_30d", "Int64", "page_view events in the 30 days ending on D."),
    ("clicks_30d", "Int64", "click events in the 30 days ending on D."),
    ("add_to_carts_30d", "Int64", "add_to_cart events in the 30 days ending on D."),
    ("purchases_30d", "Int64", "purchase events in the 30 days ending on D."),
    ("purchases_total", "Int64", "purchase events up to D."),
    ("revenue_30d", "Float64", "Sum of purchase amounts in the 30 days ending on D (6 decimals)."),
    ("revenue_total", "Float64", "Sum of purchase amounts up to D (6 decimals)."),
    ("avg_order_value", "Float64", "revenue_total / purchases_total (null without purchases)."),
    ("is_active_7d", "Boolean", "events_7d > 0."),
    ("is_active_30d", "Boolean", "events_30d > 0."),
    ("has_purchased", "Boolean", "purchases_total > 0."),
    ("purchased_30d", "Boolean", "purchases_30d > 0."),
)

#: ``analytics.daily_metrics``: (name, polars type, description), in table order; one row per day d.
DAILY_METRICS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("metric_date", "Date", "The UTC day d; the table's (and the asset's) partition."),
    ("active_users", "Int64", "Distinct users with at least one event on d."),
    ("events_total", "Int64", "Events on d (an event always has a user)."),
    ("page_views", "Int64", "page_view events on d."),
    ("clicks", "Int64", "click events on d."),
    ("add_to_carts", "Int64", "add_to_cart events on d."),
    ("purchases", "Int64", "purchase events on d."),
    ("purchasers", "Int64", "Distinct users with a purchase on d."),
    ("revenue", "Float64", "Sum of purchase amounts on d (6 decimals)."),
    ("signups", "Int64", "Users whose signup day is d."),
    ("conversion_rate", "Float64", "purchasers / active_users (null without active users)."),
    (
        "avg_order_value",
        "Float64",
        "revenue / purchases with an amount (null without any).",
    ),
)


def table_schema(columns: tuple[tuple[str, str, str], ...]) -> TableSchema:
    """Dagster table-schema metadata of declared columns."""
    return TableSchema(columns=[TableColumn(name=n, type=t, description=d) for n, t, d in columns])
