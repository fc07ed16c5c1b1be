{#
  Local (DuckDB) target: dbt's `ref` and `source`, plus registering the Iceberg table they name
  as a DuckDB view the first time a node of the run resolves it (transformation/duckdb_iceberg.py,
  Plugin.register). A run loads only the tables it reads, not every table of the catalog at
  connect. Nothing changes at parse time (`execute` false) nor on Trino, which reads Iceberg
  itself. dbt-duckdb's own source plugins cover sources only (and copy or register dataframes),
  not refs to models built by earlier runs, hence these overrides (dbt's documented way:
  `builtins.ref` / `builtins.source`).
#}
{% macro ref() -%}
    {%- set relation = builtins.ref(*varargs, **kwargs) -%}
    {%- do iceberg_register(relation) -%}
    {{- return(relation) -}}
{%- endmacro %}


{% macro source(source_name, table_name) -%}
    {%- set relation = builtins.source(source_name, table_name) -%}
    {%- do iceberg_register(relation) -%}
    {{- return(relation) -}}
{%- endmacro %}


{% macro iceberg_register(relation) -%}
    {%- if execute and target.type == 'duckdb' and relation is not none -%}
        {%- set request = {
              'action': 'register',
              'identifier': relation.schema ~ '.' ~ relation.identifier,
            } -%}
        {#- Opens the node's connection first (dbt-duckdb creates the plugin's environment with the
            first connection; `dbt compile` has none yet when a model resolves its first ref). -#}
        {%- do run_query('select 1') -%}
        {%- do adapter.store_relation('iceberg', relation, [], '', 'parquet', request) -%}
    {%- endif -%}
{%- endmacro %}
