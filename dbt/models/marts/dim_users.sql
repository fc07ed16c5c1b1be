{{ config(tags=['full']) }}
{#
  One row per user (from stg_users) with activity attributes over all of the user's events.
  Rebuilt in full on every run: activity spans every day, so a day's re-run changes it.
  The totals are sums over marts.fct_daily_events (one row per user, day and event type), not
  over stg_events: the same figures from a table about half as long at 20k events a day (a tenth
  at 200k) and far narrower (no event ids), so the rebuild grows much more slowly with history.
#}
with users as (

    select * from {{ ref('stg_users') }}

),

daily as (

    select * from {{ ref('fct_daily_events') }}

),

activity as (

    select
        user_id,
        cast(sum(event_count) as bigint) as event_count,
        cast(count(distinct event_date) as bigint) as active_days,
        cast(sum(case when event_type = 'purchase' then event_count else 0 end) as bigint)
            as purchase_count,
        -- Purchases with a known amount: the denominator of an average order value (a purchase
        -- without an amount is in purchase_count but in no revenue).
        -- Unknown (null) while one of the user's purchase rows comes from a day built before
        -- fct_daily_events had priced_event_count (a deployment upgraded until those days are
        -- rebuilt): a sum over the known days would be silently too low. ml.user_features then
        -- counts from the events instead.
        case
            when sum(case when event_type = 'purchase' and priced_event_count is null then 1 else 0 end) > 0
                then null
            else cast(sum(priced_event_count) as bigint)
        end as priced_purchase_count,
        -- Rounded to 6 decimals: each daily revenue is a rounded sum of 2-decimal amounts, so
        -- this equals the rounded sum over the events; a float sum's last bit depends on the
        -- order rows arrive in, which must not make a re-run differ.
        cast(round(coalesce(sum(revenue), 0), 6) as double) as total_revenue,
        min(first_event_at) as first_event_at,
        max(last_event_at) as last_event_at,
        min(event_date) as first_active_date,
        max(event_date) as last_active_date
    from daily
    group by user_id

)

select
    users.user_id,
    users.email,
    users.full_name,
    users.country,
    users.plan,
    users.signed_up_at,
    users.updated_at,
    coalesce(activity.event_count, 0) as event_count,
    coalesce(activity.active_days, 0) as active_days,
    coalesce(activity.purchase_count, 0) as purchase_count,
    case when activity.user_id is null then 0 else activity.priced_purchase_count end
        as priced_purchase_count,
    coalesce(activity.total_revenue, 0) as total_revenue,
    activity.first_event_at,
    activity.last_event_at,
    activity.first_active_date,
    activity.last_active_date,
    cast(
        {{ dbt.datediff('cast(users.signed_up_at as date)', 'activity.last_active_date', 'day') }}
        as bigint
    ) as days_from_signup_to_last_activity,
    activity.user_id is not null as is_active
from users
left join activity
    on users.user_id = activity.user_id
