{#
  A column of `relation` that some writers of the table add and others do not, or a typed null.

  Used for `_ab_record_index`, the delivery order that the platform's landing loader writes and
  Airbyte's destinations do not: staging orders by it where it exists. Looked up when dbt
  executes (the relation's columns); while parsing, and where the column is absent, a typed null.
#}
{% macro optional_column(relation, column, data_type) -%}
    {%- if execute -%}
        {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- if column | lower in names -%}
            {{ return(column) }}
        {%- endif -%}
    {%- endif -%}
    {{ return('cast(null as ' ~ data_type ~ ')') }}
{%- endmacro %}
