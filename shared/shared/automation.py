"""The automation conditions of every location: one definition, so the teams cannot drift apart.

Declarative automation conditions, evaluated by one ``AutomationConditionSensorDefinition`` per
location (in the location's code server: ``use_user_code_server=True``, which custom conditions
need). The daemon sees the workspace-wide event log, so a location's conditions react to another
location's materializations although it never imports that location.

Why not ``AutomationCondition.eager()``: it considers only the latest daily partition, while the
data starts on 2026-01-01; and on an unpartitioned asset its "no missing dependency" guard waits
until every day since then of its daily inputs exists.

* :func:`daily_condition` (daily-partitioned assets): a day is requested when

  - that day of a daily input was updated (or will be in this tick): identity partition mapping;
  - or an unpartitioned input (a raw table) recorded that day among the days it changed
    (``shared.changes``), or the day before within the late-data lookback
    (``DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS``, default 1): :class:`ChangedEventDays`.

  An unpartitioned input maps to EVERY day in Dagster's model, so plain ``any_deps_updated``
  would request the whole range since 2026-01-01 on each raw sync: unpartitioned inputs are left
  out of it and read through their recorded days instead. One that records no days (a users
  table) requests no day.
* :func:`full_condition` (unpartitioned assets): requested when an input changed, without
  waiting for missing days of the daily inputs (``ignore_missing``).

Requests for many days become one backfill, which the daily assets' single-run backfill policy
executes as one run over the range (non-contiguous days: one run per contiguous range).
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AutomationCondition,
    AutomationContext,
    AutomationResult,
)

from shared.changes import CHANGED_EVENT_DAYS, Unknown, days_in_metadata, with_lookback


class ChangedEventDays(AutomationCondition):
    """True for the days that new materializations of ``upstream`` (unpartitioned raw tables)
    recorded as changed (:data:`shared.changes.CHANGED_EVENT_DAYS`), plus the late-data lookback.

    Reads the materializations stored since the previous evaluation (by storage id, the tick's
    own window: nothing is seen twice, nothing skipped). A materialization whose days are unknown
    (``null``) marks every day; one without the key marks none. Like ``newly_updated``, the first
    evaluation (no cursor yet) is false.

    Hand-written because Dagster's conditions map an unpartitioned parent to every partition of
    its child and never look at materialization metadata.
    """

    def __init__(self, upstream: Sequence[AssetKey], lookback_days: int | None = None):
        self.upstream = tuple(upstream)
        #: None: read ``DATA_PLATFORM_LATE_DATA_LOOKBACK_DAYS`` when evaluated (never at import).
        self.lookback_days = lookback_days

    @property
    def name(self) -> str:
        return "changed_event_days"

    @property
    def description(self) -> str:
        keys = ", ".join(k.to_user_string() for k in self.upstream)
        return f"Days that new materializations of {keys} recorded in {CHANGED_EVENT_DAYS}"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: AutomationContext) -> AutomationResult:
        if context.previous_temporal_context is None or not self.upstream:
            return AutomationResult(context=context, true_subset=context.get_empty_subset())
        instance = context.asset_graph_view.instance
        days: set = set()
        every_day = False
        for key in self.upstream:
            # (None: the event log was empty at the previous evaluation.)
            previous = context.previous_max_storage_id
            for metadata in _new_materialization_metadata(
                instance, key, previous, context.max_storage_id
            ):
                found = days_in_metadata(metadata)
                if isinstance(found, Unknown):
                    every_day = True
                elif found:
                    days.update(found)
        if every_day:
            subset = context.candidate_subset
        elif not days:
            subset = context.get_empty_subset()
        else:
            keys = {d.isoformat() for d in with_lookback(days, self._lookback())}
            subset = context.asset_graph_view.get_subset_from_partition_keys(
                context.key, context.partitions_def, keys
            ).compute_intersection(context.candidate_subset)
        return AutomationResult(context=context, true_subset=subset)

    def _lookback(self) -> int:
        if self.lookback_days is not None:
            return self.lookback_days
        from shared.settings import late_data_lookback_days

        return late_data_lookback_days()


def _new_materialization_metadata(instance, key: AssetKey, after: int | None, upto: int | None):
    """The metadata of ``key``'s materializations with storage id in ``(after, upto]``."""
    cursor = None
    while True:
        result = instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=key,
                after_storage_id=after,
                before_storage_id=None if upto is None else upto + 1,
            ),
            limit=1000,
            cursor=cursor,
            ascending=True,
        )
        for record in result.records:
            materialization = record.asset_materialization
            if materialization is not None:
                yield materialization.metadata
        if not result.has_more:
            return
        cursor = result.cursor


def daily_condition(
    unpartitioned_inputs: Sequence[AssetKey] = (), lookback_days: int | None = None
) -> AutomationCondition:
    """Run the changed days of a daily asset once its inputs are present and idle.

    ``unpartitioned_inputs``: the asset's unpartitioned parents; their recorded changed days
    (not "every day") trigger it. See the module docstring.
    """
    updated = AutomationCondition.any_deps_updated()
    if unpartitioned_inputs:
        updated = updated.ignore(AssetSelection.assets(*unpartitioned_inputs)) | ChangedEventDays(
            unpartitioned_inputs, lookback_days
        )
    return (
        updated.since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("upstream_day_updated")


def full_condition(
    ignore_missing: Sequence[AssetKey] = (), ignore_updates: Sequence[AssetKey] = ()
) -> AutomationCondition:
    """Rebuild an unpartitioned asset when an input changed; missing days of the daily inputs
    named in ``ignore_missing`` do not hold it back, and updates of the inputs named in
    ``ignore_updates`` do not trigger it (another input, rebuilt after them, does)."""
    missing = AutomationCondition.any_deps_missing()
    if ignore_missing:
        missing = missing.ignore(AssetSelection.assets(*ignore_missing))
    updated = AutomationCondition.any_deps_updated()
    if ignore_updates:
        updated = updated.ignore(AssetSelection.assets(*ignore_updates))
    return (
        updated.since_last_handled()
        & ~missing
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("upstream_updated")
