{{ config(**daily_model_config('event_date')) }}
{#
  One row per event_id: the latest delivered version, for the events of the day window (every day
  without a window).

  The contract for incomplete rows: a raw row without an event_id, a user_id or an event_ts is
  left out here, before deduplication (it is no version of anything). raw.events keeps it and the
  raw check raw_events_null_keys (WARN) counts such rows with examples; marts and analytics,
  built from this model only, follow.

  The latest version: latest extraction (_airbyte_extracted_at), then, within one delivery (same
  extraction time), the record delivered last (_ab_record_index: files in name order, rows in
  file order; written by the landing loader, null from Airbyte), then Airbyte's record id as a
  last, deterministic tie-break.

  Deduplication looks at every version of the window's event ids that could be the latest, not
  only the versions inside the window, so an event whose later version moved to another day is
  not kept twice. Which versions could be the latest is decided by extraction time, so that a run
  reads the recent syncs' files and not the event_id column of all of raw.events (random ids
  prune nothing): with M the earliest extraction of the window's rows (those with the three
  keys), a version extracted before M loses to every version of its event in the window (latest extraction first), so only
  rows extracted at or after M are read (ties at M still go to record index and raw id). The
  window's own rows all qualify. M is queried when the model executes and written into the SQL as
  a literal (floored to the second), which DuckDB pushes into its parquet scans and Trino into
  Iceberg file pruning (a subquery is pushed by neither). No bound without a window, when the
  window has no row, or when a window row has no extraction time (a null ranks last: any version
  may beat it). A new day after a nightly sync reads about one day of files; a re-run of a day
  100 days back reads the ~100 days extracted since. The window itself is compared on event_ts
  with UTC timestamp bounds (pushed into the scans; `cast(event_ts as date)` is not).

  On Trino the bound and the model are two queries: rows committed in between with an extraction
  time before M could be missed by this run; their sync records their days, which are then run
  again (docs/architecture.md, changed_event_days). Locally both read the same snapshot.
#}
{%- set events = source('raw', 'events') -%}
{%- set valid_row -%}
    event_id is not null
        and user_id is not null
        and event_ts is not null
{%- endset -%}
{%- set earliest = earliest_extraction(events, in_day_window_ts('event_ts') ~ ' and ' ~ valid_row)
        if day_window() is not none else none -%}
with source as (

    select * from {{ events }}
    {%- if earliest is not none %}
    where _airbyte_extracted_at >= {{ utc_timestamp_literal(earliest) }}
    {%- endif %}

),

window_event_ids as (

    select distinct event_id
    from source
    where {{ in_day_window_ts('event_ts') }}
        and {{ valid_row }}

),

versions as (

    select
        cast(source.event_id as {{ dbt.type_string() }}) as event_id,
        cast(source.user_id as bigint) as user_id,
        cast(source.event_type as {{ dbt.type_string() }}) as event_type,
        source.event_ts,
        cast(source.event_ts as date) as event_date,
        cast(source.amount as double) as amount,
        source._airbyte_raw_id as airbyte_raw_id,
        source._airbyte_extracted_at as extracted_at,
        row_number() over (
            partition by source.event_id
            order by
                source._airbyte_extracted_at desc nulls last,
                {{ optional_column(events, '_ab_record_index', 'bigint') }} desc nulls last,
                source._airbyte_raw_id desc
        ) as version_rank
    from source
    inner join window_event_ids
        on source.event_id = window_event_ids.event_id
    where source.user_id is not null
        and source.event_ts is not null

)

select
    event_id,
    user_id,
    event_type,
    event_ts,
    event_date,
    amount,
    airbyte_raw_id,
    extracted_at
from versions
where version_rank = 1
    and {{ in_day_window('event_date') }}
