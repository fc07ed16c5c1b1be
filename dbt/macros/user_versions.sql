{#
  What stg_users (the latest version of each user) and stg_user_versions (every version) share,
  written once so the two cannot drift apart: the columns of a user version, cast and renamed
  from raw.users, and which of several deliveries of one version is kept.

  They differ on purpose in the rows they keep: stg_user_versions leaves out rows without an
  updated_at (a version with no known validity interval), while stg_users keeps them, ranked
  below every dated version, so a user whose only rows lack an updated_at still has a row.
#}

{# The select list of a user version (staging names and types), one column per line. #}
{% macro user_version_columns() -%}
cast(id as bigint) as user_id,
        cast(email as {{ dbt.type_string() }}) as email,
        cast(name as {{ dbt.type_string() }}) as full_name,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(plan as {{ dbt.type_string() }}) as plan,
        signup_at as signed_up_at,
        updated_at,
        _airbyte_raw_id as airbyte_raw_id,
        _airbyte_extracted_at as extracted_at
{%- endmacro %}

{#
  The order of several deliveries of one user version, the one to keep first: latest extraction,
  then the record delivered last within one delivery (_ab_record_index, see stg_events), then
  Airbyte's record id as a deterministic tie-break. `relation` is raw.users (source()).
#}
{% macro user_delivery_order(relation) -%}
_airbyte_extracted_at desc nulls last,
                {{ optional_column(relation, '_ab_record_index', 'bigint') }} desc nulls last,
                _airbyte_raw_id desc
{%- endmacro %}
