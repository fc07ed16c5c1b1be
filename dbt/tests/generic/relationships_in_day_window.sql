{#
  dbt's `relationships` test for a daily model, both sides inside the run's day window and on the
  same day: every `column_name` of `model` (its rows of the window: give the test
  `config: {where: "__in_day_window__(<day_column>)"}`) is a `field` of `to` on the same
  `day_column` day. dbt's own test reads every row of `to`, a cost that grows with history in a
  run that should cost what its days cost; the days outside the window were tested by their own
  runs. Returns the missing (value, day) pairs.
#}
{% test relationships_in_day_window(model, column_name, to, field, day_column) %}

with child as (

    select {{ column_name }} as from_field, {{ day_column }} as day_value
    from {{ model }}
    where {{ column_name }} is not null

),

parent as (

    select distinct {{ field }} as to_field, {{ day_column }} as day_value
    from {{ to }}
    where {{ in_day_window(day_column) }}

)

select child.from_field, child.day_value
from child
left join parent
    on child.from_field = parent.to_field
    and child.day_value = parent.day_value
where parent.to_field is null

{% endtest %}
