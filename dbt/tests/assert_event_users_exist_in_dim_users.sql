{{ config(
    severity='warn',
    tags=['cross_partitioning', 'nightly'],
    meta={'dagster': {'ref': {'name': 'dim_users'}}},
) }}
-- Events whose user is not (yet) in dim_users: the relationships test of events -> users.
-- A warning, not an error: users and events sync separately, so an event can arrive before its
-- user (a late-arriving dimension row); the next users sync fixes it.
-- Tagged cross_partitioning: it reads a daily model and an unpartitioned one, so it runs with
-- the unpartitioned models (after the daily ones), never in the daily step.
-- Tagged nightly: it reads every event's user, a cost that grows with history, so it runs once a
-- day in a run of its own (transformation/automation.py), not with every rebuild of dim_users.
select events.user_id, count(*) as events
from {{ ref('stg_events') }} as events
left join {{ ref('dim_users') }} as users
    on events.user_id = users.user_id
where users.user_id is null
group by events.user_id
