"""An event re-delivered with its timestamp on another day, end to end through `data-platform demo`.

Landing batches (loaded by the demo as the landing sensor does) move events between days of a
lakehouse the demo already built. The day an event left must be re-run too: otherwise it keeps
the old version and the event is counted on two days. After the run, `stg_events` holds each
moved event once, on its new day, and `fct_daily_events` / `daily_metrics` of every day touched
equal a DuckDB recomputation from the raw tables' data files alone (the staging rule: the latest
delivered version of each event_id).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.table import StaticTable

from shared.changes import utc_dates
from shared.partitions import day_of

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).parent))  # the demo helpers of test_end_to_end

DAYS = 3
#: A day after the stand-in's days with no event but the one batch "a-lonely" puts on it: when
#: that event moves away, every daily table must be left with nothing for that day.
LONELY_DAY = day_of(DAYS + 2)
DAILY = ("staging/stg_events", "marts/fct_daily_events", "analytics/daily_metrics")


def run_demo(home) -> dict:
    import subprocess

    from test_end_to_end import STANDIN

    cmd = [sys.executable, "-m", "data_platform.cli", "demo", "--json", "--home", str(home),
           "--users", str(STANDIN.users), "--events-per-day", str(STANDIN.events_per_day),
           "--days", str(DAYS), "--seed", str(STANDIN.seed)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATA_PLATFORM_")}
    # Pinned (as in test_end_to_end) so that the partitions reach LONELY_DAY and beyond.
    env["DATA_PLATFORM_STANDIN_END"] = day_of(DAYS - 1).isoformat()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, f"demo failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def drop_batch(home, name: str, rows: list[dict]) -> None:
    """A complete landing batch (the landing protocol: ``_SUCCESS`` written last)."""
    from ingestion.settings import landing_dir
    from shared.settings import load_settings

    folder = landing_dir(load_settings({"DATA_PLATFORM_HOME": str(home)})) / name
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "_SUCCESS").touch()


def tables_of(report) -> dict[str, StaticTable]:
    return {
        t["identifier"]: StaticTable.from_metadata(t["metadata_location"]) for t in report["tables"]
    }


def files_of(table: StaticTable) -> list[str]:
    return [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]


def latest_versions(con: duckdb.DuckDBPyConnection, raw_events: StaticTable) -> None:
    """View ``events``: staging's rule recomputed from raw alone (the latest delivered version
    of each event_id among the rows with event_id, user_id and event_ts)."""
    con.execute(
        "create or replace view events as select * exclude (rn) from ("
        " select *, cast(timezone('UTC', event_ts) as date) as event_date, row_number() over ("
        "  partition by event_id order by _airbyte_extracted_at desc nulls last,"
        "  _ab_record_index desc nulls last, _airbyte_raw_id desc) as rn"
        f" from read_parquet({files_of(raw_events)!r}, union_by_name = true)"
        " where event_id is not null and user_id is not null and event_ts is not null)"
        " where rn = 1"
    )


def materialized_days(home, report) -> dict[str, set]:
    from test_end_to_end import materialized_partitions

    return {k: set(v) for k, v in materialized_partitions(home, report).items() if k in DAILY}


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A demo (with a lonely event on LONELY_DAY), then a batch moving events between days."""
    home = tmp_path_factory.mktemp("lake")
    drop_batch(home, "a-lonely", [
        {"event_id": "lonely", "user_id": 1, "event_type": "purchase",
         "event_ts": f"{LONELY_DAY}T08:00:00Z", "amount": 12.5},
    ])  # fmt: skip
    first = run_demo(home)
    raw = tables_of(first)["raw.events"].scan().to_arrow()
    assert "lonely" in raw["event_id"].to_pylist()
    # An event of the first day, re-delivered on the last day as a purchase: its old version
    # must leave day 0's tables; the lonely event moves to day 1, leaving LONELY_DAY empty.
    first_day = raw.filter(pc.equal(utc_dates(raw["event_ts"]), pa.scalar(day_of(0))))
    old_id = first_day["event_id"][0].as_py()
    drop_batch(home, "b-moves", [
        {"event_id": old_id, "user_id": 2, "event_type": "purchase",
         "event_ts": f"{day_of(DAYS - 1)}T23:30:00Z", "amount": 99.0},
        {"event_id": "lonely", "user_id": 1, "event_type": "purchase",
         "event_ts": f"{day_of(1)}T08:00:00Z", "amount": 12.5},
    ])  # fmt: skip
    second = run_demo(home)
    return home, first, second, old_id


def test_the_days_events_left_are_rebuilt_with_the_days_they_moved_to(moved):
    home, _, second, _ = moved
    assert [b["outcome"] for b in second["landing"]] == ["loaded"]
    touched = {day_of(0), day_of(1), day_of(DAYS - 1), LONELY_DAY}
    # Each touched day and the day before it (default lookback 1), and no other day.
    expected = {(d - dt.timedelta(days=k)).isoformat() for d in touched for k in (0, 1)}
    expected &= {day_of(i).isoformat() for i in range(DAYS + 3)}  # partitions start on day 0
    assert materialized_days(home, second) == {key: expected for key in DAILY}
    # Every check passes. The whole-table unique test of stg_events.event_id, which could warn
    # in the run of the day an event moved to (before the run of the day it left), runs once a
    # day on its own (staging.yml), not in these runs.
    failed = [c for c in second["checks"] if not c["passed"]]
    assert not failed, failed
    assert "unique_stg_events_event_id" not in {c["name"] for c in second["checks"]}


def test_each_moved_event_is_held_once_on_its_new_day(moved):
    _, _, second, old_id = moved
    stg = tables_of(second)["staging.stg_events"].scan().to_arrow()
    assert len(set(stg["event_id"].to_pylist())) == stg.num_rows  # one row per event_id
    rows = {r["event_id"]: r for r in stg.to_pylist() if r["event_id"] in (old_id, "lonely")}
    assert rows[old_id]["event_date"] == day_of(DAYS - 1)
    assert (rows[old_id]["event_type"], rows[old_id]["amount"]) == ("purchase", 99.0)
    assert rows["lonely"]["event_date"] == day_of(1)
    assert not [r for r in stg.to_pylist() if r["event_date"] == LONELY_DAY]


def test_daily_tables_of_every_touched_day_equal_duckdb_recomputed_from_raw(moved):
    _, _, second, _ = moved
    tables = tables_of(second)
    con = duckdb.connect()
    latest_versions(con, tables["raw.events"])
    con.register("fct", tables["marts.fct_daily_events"].scan().to_arrow())
    con.register("metrics", tables["analytics.daily_metrics"].scan().to_arrow())
    days = [day_of(0), day_of(1), day_of(DAYS - 1), LONELY_DAY]

    def rows(sql: str) -> list[tuple]:
        return sorted(con.execute(sql, [days]).fetchall())

    ours = rows(
        "select event_date, user_id, event_type, event_count, revenue from fct"
        " where list_contains(?, event_date)"
    )
    theirs = rows(
        "select event_date, user_id, event_type, count(*),"
        " round(coalesce(sum(amount) filter (where event_type = 'purchase'), 0), 6)"
        " from events where list_contains(?, event_date) group by all"
    )
    assert ours and ours == theirs
    ours = rows(
        "select metric_date, active_users, events_total, purchases, purchasers, revenue"
        " from metrics where list_contains(?, metric_date) and events_total > 0"
    )
    theirs = rows(
        "select event_date, count(distinct user_id), count(*),"
        " count(*) filter (where event_type = 'purchase'),"
        " count(distinct user_id) filter (where event_type = 'purchase'),"
        " round(coalesce(sum(amount) filter (where event_type = 'purchase'), 0), 6)"
        " from events where list_contains(?, event_date) group by all"
    )
    assert ours == theirs
    # The day the lonely event left has no event left in any daily table (a row of
    # daily_metrics may remain only for sign-ups that day).
    lonely = con.execute(
        "select coalesce(sum(events_total), 0) from metrics where metric_date = ?", [LONELY_DAY]
    ).fetchone()[0]
    assert lonely == 0
