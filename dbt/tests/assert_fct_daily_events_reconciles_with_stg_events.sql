{{ config(tags=['daily'], meta={'dagster': {'ref': {'name': 'fct_daily_events'}}}) }}
-- Every deduplicated event is counted exactly once in the fact, per day (and amounts match).
-- Returns the days where they disagree. Only the run's day window (every day without one): the
-- other days were checked by their own runs, and this test must not grow with history.
with staged as (
    select
        event_date,
        cast(count(*) as bigint) as events,
        coalesce(sum(case when event_type = 'purchase' then amount end), 0) as revenue
    from {{ ref('stg_events') }}
    where {{ in_day_window('event_date') }}
    group by event_date
),

fact as (
    select event_date, sum(event_count) as events, sum(revenue) as revenue
    from {{ ref('fct_daily_events') }}
    where {{ in_day_window('event_date') }}
    group by event_date
)

select
    coalesce(staged.event_date, fact.event_date) as event_date,
    staged.events as staged_events,
    fact.events as fact_events
from staged
full outer join fact
    on staged.event_date = fact.event_date
where staged.events is null
    or fact.events is null
    or staged.events <> fact.events
    or abs(staged.revenue - fact.revenue) > 0.001
