{{ config(tags=['full']) }}
{#
  One row per user: the latest version of each user in raw.users (latest updated_at, then the
  delivery order shared with stg_user_versions: macros/user_versions.sql). Rows without an id are
  left out (counted by the raw check raw_users_null_keys); rows without an updated_at are kept,
  ranked last, unlike stg_user_versions: a user whose only rows lack one still has a row here.
#}
with source as (

    select * from {{ source('raw', 'users') }}

),

versions as (

    select
        {{ user_version_columns() }},
        row_number() over (
            partition by id
            order by
                updated_at desc nulls last,
                {{ user_delivery_order(source('raw', 'users')) }}
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
