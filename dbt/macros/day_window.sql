{#
  The day window processed by the daily models: [start, end), ISO dates, end exclusive (Dagster's
  partition time window). Neither set means every day.

  Dagster passes it as dbt's own flags `--event-time-start/--event-time-end`, read here from
  `invocation_args_dict` when the model EXECUTES: flags are not part of what dbt's partial parsing
  compares, so a new window each day keeps the saved parse (the dbt vars `window_start` and
  `window_end`, which still work for manual runs, change dbt's config and force a full re-parse
  on every run). At parse time (`execute` false) only the vars count, so no window of a run is
  baked into the saved manifest.
#}

{% macro day_window() -%}
    {%- set start = var('window_start', none) -%}
    {%- set end = var('window_end', none) -%}
    {%- if start is none and end is none and execute -%}
        {%- set start = invocation_args_dict.get('event_time_start') -%}
        {%- set end = invocation_args_dict.get('event_time_end') -%}
        {%- if start is not none -%}{%- set start = (start | string)[:10] -%}{%- endif -%}
        {%- if end is not none -%}{%- set end = (end | string)[:10] -%}{%- endif -%}
    {%- endif -%}
    {%- if start is none and end is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if start is none or end is none -%}
        {{ exceptions.raise_compiler_error(
            "dbt vars window_start and window_end must be set together (got window_start="
            ~ start ~ ", window_end=" ~ end ~ ")") }}
    {%- endif -%}
    {%- set parsed = [] -%}
    {%- for value in [start, end] -%}
        {%- set text = value | string -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
            {{ exceptions.raise_compiler_error(
                "dbt var window_start/window_end must be an ISO date YYYY-MM-DD, got " ~ text) }}
        {%- endif -%}
        {%- do parsed.append(text) -%}
    {%- endfor -%}
    {%- if parsed[0] >= parsed[1] -%}
        {{ exceptions.raise_compiler_error(
            "empty day window: window_start " ~ parsed[0] ~ " must be before window_end " ~ parsed[1]) }}
    {%- endif -%}
    {{ return({'start': parsed[0], 'end': parsed[1]}) }}
{%- endmacro %}


{#
  The one window predicate, which every comparison with the day window renders: `expr` lies in
  [start, end) of day_window() (`1 = 1`, always true, without a window). `bound` says how a day
  is written: 'date' (`cast('YYYY-MM-DD' as date)`), or 'utc_timestamp' (its first instant in
  UTC, a literal of utc_timestamp_literal, extraction_bound.sql). in_day_window and
  in_day_window_ts below are this with one kind of bound each, so they cannot drift apart.
#}
{% macro day_window_predicate(expr, bound) -%}
    {%- set window = day_window() -%}
    {%- if window is none -%}
        1 = 1
    {%- else -%}
        {{ expr }} >= {{ day_bound_literal(window.start, bound) }}
        and {{ expr }} < {{ day_bound_literal(window.end, bound) }}
    {%- endif -%}
{%- endmacro %}


{# Day `day` ('YYYY-MM-DD') as a SQL literal of kind `bound` (day_window_predicate). #}
{% macro day_bound_literal(day, bound) -%}
    {%- if bound == 'date' -%}
        {{ return("cast('" ~ day ~ "' as date)") }}
    {%- elif bound == 'utc_timestamp' -%}
        {{ return(utc_timestamp_literal(day ~ ' 00:00:00')) }}
    {%- endif -%}
    {{ exceptions.raise_compiler_error(
        "day_bound_literal: bound must be 'date' or 'utc_timestamp', got " ~ bound) }}
{%- endmacro %}


{# A boolean SQL expression: `date_expr` lies in the window (always true without a window). #}
{% macro in_day_window(date_expr) -%}
    {{- day_window_predicate(date_expr, 'date') -}}
{%- endmacro %}


{#
  A boolean SQL expression: timestamp `ts_expr` lies in the day window (always true without a
  window). The same rows as `in_day_window('cast(ts_expr as date)')` (days are UTC days), but a
  comparison of the column itself with UTC timestamp literals, which engines push into their
  scans (DuckDB: parquet row groups; Trino: Iceberg file pruning); the cast is not pushed.
#}
{% macro in_day_window_ts(ts_expr) -%}
    {{- day_window_predicate(ts_expr, 'utc_timestamp') -}}
{%- endmacro %}


{#
  Trino `delete+insert`: extra predicates on the target's delete, so it touches only the window's
  partitions (none without a window).
#}
{% macro day_window_predicates(column) -%}
    {%- set window = day_window() -%}
    {%- if window is none -%}
        {{ return([]) }}
    {%- endif -%}
    {{ return([in_day_window(column) | trim]) }}
{%- endmacro %}


{# The materialization of a daily model: dbt-trino's incremental, or the local Iceberg one. #}
{% macro daily_materialization() -%}
    {{ return('incremental' if target.type == 'trino' else 'iceberg') }}
{%- endmacro %}


{#
  The whole config of a daily model (one row set per UTC day in `column`), in one place so the
  daily models cannot drift apart: each calls `{{ config(**daily_model_config('event_date')) }}`.
  Locally the Iceberg materialization replaces the window's days; on Trino, dbt-trino's
  `delete+insert` deletes exactly the window's partitions and inserts them again.
#}
{% macro daily_model_config(column) -%}
    {{ return({
        'materialized': daily_materialization(),
        'tags': ['daily'],
        'day_partition_column': column,
        'incremental_strategy': 'delete+insert',
        'unique_key': column,
        'incremental_predicates': day_window_predicates(column),
        'on_schema_change': 'append_new_columns',
        'properties': {
            'format': "'PARQUET'",
            'partitioning': "ARRAY['" ~ column ~ "']",
        },
    }) }}
{%- endmacro %}
