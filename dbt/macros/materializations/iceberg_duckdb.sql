{#
  Local mode: build a model with DuckDB and store it as the Iceberg table <schema>.<model>.

  1. The model's SQL runs in DuckDB into a scratch table (only the day window for daily models).
  2. The scratch table is copied to a parquet file (a daily model's rows in day order), which the `iceberg` plugin
     (transformation/duckdb_iceberg.py) writes to the Iceberg table in ONE atomic commit through
     shared.iceberg.write_table: the whole table, or, for a model with `day_partition_column`,
     exactly the rows of the day window (re-running a day replaces it, never duplicates it).
  3. `this` becomes a DuckDB view over the table's committed snapshot, so downstream refs and dbt
     tests read the FULL Iceberg table, not just the window written by this run.

  The plugin talks back through the `request` dict (its `prepare` step fills `path`, its `store`
  step fills `scan_sql` and `result`): adapter.store_relation is the only plugin entry point a
  macro can call.
#}
{% materialization iceberg, adapter='duckdb', supported_languages=['sql'] %}
  {%- set identifier = this.schema ~ '.' ~ this.identifier -%}
  {%- set plugin_name = config.get('plugin', 'iceberg') -%}
  {%- set day_column = config.get('day_partition_column') -%}
  {%- set window = day_window() if day_column else none -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set scratch = api.Relation.create(
        database=this.database, schema=this.schema,
        identifier=this.identifier ~ '__dp_batch', type='table') -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('create_schema') -%}
    create schema if not exists {{ this.schema }}
  {%- endcall %}

  {% call statement('main') -%}
    create or replace table {{ scratch }} as (
      {{ compiled_code }}
    )
  {%- endcall %}

  {%- set request = {
        'action': 'prepare',
        'identifier': identifier,
        'day_partition_column': day_column,
        'window_start': window.start if window else none,
        'window_end': window.end if window else none,
      } -%}
  {% do adapter.store_relation(plugin_name, target_relation, [], '', 'parquet', request) %}

  {#- A daily model's rows are copied in day order: the plugin then hands each day to the
      Iceberg writer whole (day_chunks in duckdb_iceberg.py), so a write makes one data file per
      day instead of one per (batch, day). DuckDB's sort spills to disk past its memory limit. -#}
  {% call statement('write_batch') -%}
    {% if day_column -%}
    copy (select * from {{ scratch }} order by {{ adapter.quote(day_column) }})
      to '{{ request['path'] }}' (format parquet)
    {%- else -%}
    copy {{ scratch }} to '{{ request['path'] }}' (format parquet)
    {%- endif %}
  {%- endcall %}

  {% do request.update({'action': 'store'}) %}
  {% do adapter.store_relation(plugin_name, target_relation, [], request['path'], 'parquet', request) %}
  {% do log('iceberg ' ~ identifier ~ ': ' ~ request['result'], info=True) %}

  {% call statement('expose_table') -%}
    create or replace view {{ target_relation }} as select * from {{ request['scan_sql'] }}
  {%- endcall %}

  {% call statement('drop_batch') -%}
    drop table if exists {{ scratch }}
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
