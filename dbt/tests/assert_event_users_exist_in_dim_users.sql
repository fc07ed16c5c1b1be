{{ config(
    severity='warn',
    tags=['cross_partitioning'],
    meta={'dagster': {'ref': {'name': 'dim_users'}}},
) }}
-- Events whose user is not (yet) in dim_users: the relationships test of events -> users.
-- A warning, not an error: users and events sync separately, so an event can arrive before its
-- user (a late-arriving dimension row); the next users sync fixes it.
-- Tagged cross_partitioning: it reads a daily model and an unpartitioned one, so it runs with
-- the unpartitioned models (after the daily ones), never in the daily step.
select events.user_id, count(*) as events
from {{ ref('stg_events') }} as events
left join {{ ref('dim_users') }} as users
    on events.user_id = users.user_id
where users.user_id is null
group by events.user_id
