{{ config(**daily_model_config('event_date')) }}
{#
  Daily events fact, grain (event_date, user_id, event_type): how many events of each type each
  user produced each UTC day, and the revenue (sum of purchase amounts; 0 for other types).
  Sums over it give per-day, per-type and per-user figures; count(distinct user_id) per day gives
  daily active users.
#}
with events as (

    select * from {{ ref('stg_events') }}
    where {{ in_day_window('event_date') }}

)

select
    {{ dbt.hash(dbt.concat([
        dbt.safe_cast('event_date', dbt.type_string()), "'|'",
        dbt.safe_cast('user_id', dbt.type_string()), "'|'",
        'event_type'
    ])) }} as daily_event_key,
    event_date,
    user_id,
    event_type,
    cast(count(*) as bigint) as event_count,
    -- Rounded to 6 decimals: see dim_users.total_revenue.
    cast(
        round(coalesce(sum(case when event_type = 'purchase' then amount end), 0), 6) as double
    ) as revenue,
    -- Purchases with a known amount: what dim_users.priced_purchase_count sums (a purchase
    -- without an amount is in event_count but in no revenue).
    cast(count(case when event_type = 'purchase' then amount end) as bigint) as priced_event_count,
    min(event_ts) as first_event_at,
    max(event_ts) as last_event_at
from events
group by event_date, user_id, event_type
