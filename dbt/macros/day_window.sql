{#
  The day window processed by the daily models: [var('window_start'), var('window_end')), ISO
  dates, end exclusive (Dagster's partition time window). Both unset means every day.
#}

{% macro day_window() -%}
    {%- set start = var('window_start', none) -%}
    {%- set end = var('window_end', none) -%}
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


{# A boolean SQL expression: `date_expr` lies in the window (always true without a window). #}
{% macro in_day_window(date_expr) -%}
    {%- set window = day_window() -%}
    {%- if window is none -%}
        1 = 1
    {%- else -%}
        {{ date_expr }} >= cast('{{ window.start }}' as date)
        and {{ date_expr }} < cast('{{ window.end }}' as date)
    {%- endif -%}
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
