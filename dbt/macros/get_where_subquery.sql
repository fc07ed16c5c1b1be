{#
  dbt's `where` test config, plus one placeholder: `__in_day_window__(<column>)` becomes
  `in_day_window(<column>)` (day_window.sql) when the test EXECUTES, i.e. the run's day window
  (`1 = 1` without one). The daily models' tests use it so that a day's run tests that day's rows,
  not the whole (growing) table. A custom macro cannot be called from `where` itself (yml configs
  are rendered at parse time, without the run's flags); overriding get_where_subquery is dbt's
  documented way to template it ("where" config docs). Otherwise identical to dbt's default.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = day_window_placeholders(where) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{#
  `where` with every `__in_day_window__(<column>)` replaced by the run's window predicate:
  in_day_window itself (day_window.sql) on one line, with the pattern's column (\1) as its
  expression, so one substitution gives every column the same bounds.
#}
{% macro day_window_placeholders(where) -%}
    {%- set predicate = '(' ~ (in_day_window('\\1').split() | join(' ')) ~ ')' -%}
    {{- return(modules.re.sub(
          '__in_day_window__\\(\\s*([A-Za-z_][A-Za-z0-9_]*)\\s*\\)', predicate, where)) -}}
{%- endmacro %}
