"""The upstream tables analytics reads, and the columns it needs from each: the ONE place to edit.

Analytics never imports the transformation location: it names the upstream asset keys (which are
the Iceberg identifiers, see :mod:`shared.keys`) and the columns it projects. If a dbt model
renames a column, only this module changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetKey

from shared.keys import table_identifier, table_key


@dataclass(frozen=True)
class Upstream:
    """An upstream table: its asset key, and the columns analytics reads from it."""

    key: AssetKey
    columns: tuple[str, ...]

    @property
    def identifier(self) -> str:
        return table_identifier(self.key)


#: dbt ``staging/stg_events``: one row per event_id (deduplicated), daily partitioned on
#: ``event_date`` (the UTC date of ``event_ts``). ``amount`` is set on purchases only.
STG_EVENTS = Upstream(
    key=table_key("staging", "stg_events"),
    columns=("event_id", "user_id", "event_type", "event_date", "amount"),
)

#: dbt ``marts/dim_users``: one row per user (latest version), unpartitioned.
DIM_USERS = Upstream(
    key=table_key("marts", "dim_users"),
    columns=("user_id", "country", "plan", "signup_at"),
)

#: dbt ``marts/fct_daily_events``: one row per (event_date, event_type); read only to reconcile
#: ``analytics.daily_metrics`` with the mart.
FCT_DAILY_EVENTS = Upstream(
    key=table_key("marts", "fct_daily_events"),
    columns=("event_date", "event_type", "events", "revenue"),
)

#: Outputs of this location.
USER_FEATURES_KEY = table_key("ml", "user_features")
DAILY_METRICS_KEY = table_key("analytics", "daily_metrics")

#: The event types the platform knows (raw.events contract). Counts by type are columns of the
#: outputs; an unknown type still counts in the totals.
EVENT_TYPES = ("page_view", "click", "add_to_cart", "purchase")
