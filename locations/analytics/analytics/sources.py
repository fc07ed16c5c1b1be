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
class Column:
    """A column analytics needs, under its analytics name, and the upstream names accepted for it
    (first found wins), so a rename in a dbt model is absorbed here and nowhere else."""

    name: str
    aliases: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Upstream:
    """An upstream table: its asset key, and the columns analytics reads from it."""

    key: AssetKey
    columns: tuple[Column, ...]

    @property
    def identifier(self) -> str:
        return table_identifier(self.key)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def resolve(self, present: set[str] | list[str]) -> dict[str, str]:
        """Map each analytics column name to the upstream column that holds it.

        Raises ``KeyError`` naming the table and every column it lacks.
        """
        present = set(present)
        found, missing = {}, []
        for col in self.columns:
            physical = next((c for c in col.candidates if c in present), None)
            if physical is None:
                missing.append(" or ".join(col.candidates))
            else:
                found[col.name] = physical
        if missing:
            raise KeyError(
                f"upstream table {self.identifier} lacks column(s) {missing} needed by analytics "
                f"(it has {sorted(present)}); update analytics/sources.py or the upstream model"
            )
        return found


#: dbt ``staging/stg_events``: one row per event_id (deduplicated), daily partitioned on
#: ``event_date``. ``amount`` is set on purchases only. Analytics takes an event's day as the UTC
#: date of ``event_ts``, and reads ``event_date`` for two things: partition pruning (widened by a
#: day on each side, ``analytics.io.read_upstream``) and ``ml.user_features``' default as-of day
#: (the largest ``event_date`` in the manifests, ``analytics.io.metadata_max``). That day is the
#: latest UTC date of ``event_ts`` because dbt writes ``event_date`` as the UTC date of
#: ``event_ts`` on both engines: Trino's Iceberg timestamptz values carry UTC, and the DuckDB
#: session is pinned to UTC in dbt/profiles.yml whatever the process time zone
#: (tests/test_event_date_time_zone.py).
STG_EVENTS = Upstream(
    key=table_key("staging", "stg_events"),
    columns=(
        Column("event_id"),
        Column("user_id"),
        Column("event_type"),
        Column("event_ts"),
        Column("event_date"),
        Column("amount"),
    ),
)

#: dbt ``marts/dim_users``: one row per user (latest version of raw.users), unpartitioned. Its
#: ``country`` and ``plan`` are today's: point-in-time features take them from
#: :data:`STG_USER_VERSIONS` instead.
DIM_USERS = Upstream(
    key=table_key("marts", "dim_users"),
    columns=(
        Column("user_id"),
        Column("country"),
        Column("plan"),
        Column("signup_at", ("signed_up_at",)),
    ),
)

#: dbt ``staging/stg_user_versions``: every version of every user (type-2 history), valid from
#: ``valid_from`` (raw.users.updated_at) until the next version. ``ml.user_features`` takes a
#: user's attributes from the version valid at the end of its as-of day (no future leaks in).
STG_USER_VERSIONS = Upstream(
    key=table_key("staging", "stg_user_versions"),
    columns=(
        Column("user_id"),
        Column("country"),
        Column("plan"),
        Column("valid_from", ("updated_at",)),
    ),
)

#: The activity totals of ``marts/dim_users``, read only to reconcile ``ml.user_features``.
DIM_USERS_ACTIVITY = Upstream(
    key=table_key("marts", "dim_users"),
    columns=(
        Column("user_id"),
        Column("event_count"),
        Column("purchase_count"),
        Column("revenue", ("total_revenue",)),
    ),
)

#: The all-time totals of ``marts/dim_users`` (over every event of ``stg_events``):
#: ``ml.user_features`` as of the latest day takes its all-time features from them and reads only
#: the last 30 days of events (``analytics.features.totals_from_dim_users``).
DIM_USERS_TOTALS = Upstream(
    key=table_key("marts", "dim_users"),
    columns=(
        *DIM_USERS_ACTIVITY.columns,
        Column("priced_purchase_count"),
        Column("first_event_at"),
        Column("last_event_at"),
    ),
)

#: dbt ``marts/fct_daily_events``: grain (event_date, user_id, event_type) or
#: (event_date, event_type); read only to reconcile ``analytics.daily_metrics`` with the mart.
FCT_DAILY_EVENTS = Upstream(
    key=table_key("marts", "fct_daily_events"),
    columns=(
        Column("event_date"),
        Column("events", ("event_count",)),
        Column("revenue", ("total_revenue",)),
    ),
)

#: Outputs of this location.
USER_FEATURES_KEY = table_key("ml", "user_features")
DAILY_METRICS_KEY = table_key("analytics", "daily_metrics")

#: The event types the platform knows (raw.events contract). Counts by type are columns of the
#: outputs; an unknown type still counts in the totals.
EVENT_TYPES = ("page_view", "click", "add_to_cart", "purchase")
