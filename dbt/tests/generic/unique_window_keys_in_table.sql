{#
  `unique` for a daily model whose key must be unique across ALL days (stg_events.event_id: an
  event whose later version moved to another day must not stay on both), at a cost that follows
  the run's window: the window's keys are counted over the whole table. A key of the window that
  is also on another day (or twice in the window) fails, as the whole-table `unique` failed.

  Why it protects the same: every row is in the window of the run that writes it, so a duplicate
  is seen by the run that writes its second copy (a duplicate of two days outside the window was
  seen when the later of them was written). Why it is cheaper: outside the window only the key
  column is read, probed against the window's keys (a hash of one window's keys, not of every key
  of the table: docs/benchmarks.md, "File layout and history-flat reads"). Without a window (a
  full build) it is the whole-table `unique`.

  What it does not keep: a duplicate left by an earlier run is reported again only by runs whose
  window holds one of its days, not by every later run.
#}
{% test unique_window_keys_in_table(model, column_name, day_column) %}

with window_keys as (

    select {{ column_name }} as window_key
    from {{ model }}
    where {{ in_day_window(day_column) }}
        and {{ column_name }} is not null

)

select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ model }}
where {{ column_name }} in (select window_key from window_keys)
group by {{ column_name }}
having count(*) > 1

{% endtest %}
