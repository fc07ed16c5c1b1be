{#
  The schema of a model is exactly its custom schema (`staging`, `marts`), not dbt's default
  `<target schema>_<custom schema>`: the Iceberg namespace must be the same in both targets, because
  asset key [schema, model] names Iceberg table <schema>.<model> (shared.keys).
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
