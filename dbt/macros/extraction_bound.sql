{#
  Literal UTC timestamps, so that engines can prune files and row groups by them.

  DuckDB pushes a comparison of a column with a constant into its parquet scans (row-group
  min/max), Trino into the Iceberg connector's file pruning (manifest column bounds); neither
  pushes a scalar subquery, hence literals rendered by dbt. `value`: 'YYYY-MM-DD HH:MM:SS' (UTC).
  Trino's `TIMESTAMP '... UTC'` literal is a timestamp with time zone; DuckDB's equivalent is
  `TIMESTAMPTZ '...+00'` (its `TIMESTAMP '... UTC'` would be a naive timestamp).
#}
{% macro utc_timestamp_literal(value) -%}
    {{ return(adapter.dispatch('utc_timestamp_literal', 'data_platform')(value)) }}
{%- endmacro %}

{% macro default__utc_timestamp_literal(value) -%}
    timestamp '{{ value }} UTC'
{%- endmacro %}

{% macro duckdb__utc_timestamp_literal(value) -%}
    timestamptz '{{ value }}+00'
{%- endmacro %}


{#
  The earliest `_airbyte_extracted_at` of the rows of `relation` that match `where`, floored to
  the second, as 'YYYY-MM-DD HH:MM:SS' (UTC), or none when no bound is known: at parse time (no
  query runs then), when no row matches, or when a matching row has no extraction time.

  One query when the model executes (run_query), whose answer dbt writes into the model's SQL
  as a literal (utc_timestamp_literal). Flooring keeps the bound at or below the true minimum,
  whatever precision the engine returns. A value without a time zone is read as UTC, which is
  what the column holds (sources.yml).
#}
{% macro earliest_extraction(relation, where) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        select
            count(*) as matching_rows,
            count(_airbyte_extracted_at) as extracted_rows,
            min(_airbyte_extracted_at) as earliest
        from {{ relation }}
        where {{ where }}
    {%- endset -%}
    {%- set result = run_query(query) -%}
    {#- No row at all: an engine that answers nothing (the offline Trino check) gives no bound. -#}
    {%- if result is none or (result.rows | length) == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set row = result.rows[0] -%}
    {%- if row[0] == 0 or row[0] != row[1] or row[2] is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set earliest = row[2] -%}
    {%- if earliest is string -%}
        {{ exceptions.raise_compiler_error(
            "earliest_extraction: expected a timestamp from " ~ relation ~ ", got " ~ earliest) }}
    {%- endif -%}
    {%- if earliest.tzinfo is not none -%}
        {%- set earliest = earliest.astimezone(modules.pytz.utc) -%}
    {%- endif -%}
    {{ return(earliest.strftime('%Y-%m-%d %H:%M:%S')) }}
{%- endmacro %}
