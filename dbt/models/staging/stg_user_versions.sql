{{ config(tags=['full']) }}
{#
  Every version of every user (slowly changing dimension, type 2), from raw.users: one row per
  (user_id, updated_at). A version is valid from its updated_at until the next version's
  (valid_to; null for the current one). When one updated_at was delivered more than once, the
  copy kept is chosen as in stg_users (one definition of the columns and of that order:
  macros/user_versions.sql). Rows without an id or an updated_at are left out (an unknown
  validity), where stg_users keeps those without an updated_at.

  Point-in-time reads use it: ml.user_features as of a past day takes the version valid at the
  end of that day, never a later one.

  The query's skeleton stays alike in stg_users: what differs (partition, rows kept) is the point.
#}
with source as (

    select * from {{ source('raw', 'users') }}

),

deliveries as (

    select
        {{ user_version_columns() }},
        row_number() over (
            partition by id, updated_at
            order by
                {{ user_delivery_order(source('raw', 'users')) }}
        ) as delivery_rank
    from source
    where id is not null
        and updated_at is not null

)

select
    {{ dbt.hash(dbt.concat([
        dbt.safe_cast('user_id', dbt.type_string()), "'|'",
        dbt.safe_cast('updated_at', dbt.type_string())
    ])) }} as user_version_key,
    user_id,
    email,
    full_name,
    country,
    plan,
    signed_up_at,
    updated_at as valid_from,
    lead(updated_at) over (partition by user_id order by updated_at) as valid_to,
    airbyte_raw_id,
    extracted_at
from deliveries
where delivery_rank = 1
