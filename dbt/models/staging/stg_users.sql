{{ config(tags=['full']) }}
{#
  One row per user: the latest version of each user in raw.users (latest updated_at, then latest
  extraction, then the record delivered last within one delivery (_ab_record_index, see
  stg_events), then Airbyte's record id as a deterministic tie-break). Rows without an id are
  left out (counted by the raw check raw_users_null_keys).
#}
with source as (

    select * from {{ source('raw', 'users') }}

),

versions as (

    select
        cast(id as bigint) as user_id,
        cast(email as {{ dbt.type_string() }}) as email,
        cast(name as {{ dbt.type_string() }}) as full_name,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(plan as {{ dbt.type_string() }}) as plan,
        signup_at as signed_up_at,
        updated_at,
        _airbyte_raw_id as airbyte_raw_id,
        _airbyte_extracted_at as extracted_at,
        row_number() over (
            partition by id
            order by
                updated_at desc nulls last,
                _airbyte_extracted_at desc nulls last,
                {{ optional_column(source('raw', 'users'), '_ab_record_index', 'bigint') }} desc nulls last,
                _airbyte_raw_id desc
        ) as version_rank
    from source
    where id is not null

)

select
    user_id,
    email,
    full_name,
    country,
    plan,
    signed_up_at,
    updated_at,
    airbyte_raw_id,
    extracted_at
from versions
where version_rank = 1
