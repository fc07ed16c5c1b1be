"""`event_date` is the UTC date of `event_ts` whatever the time zone of the process dbt runs in.

`ml.user_features` takes its default as-of day from the largest `stg_events.event_date` in the
table's manifests (`analytics.io.metadata_max`); analytics' own day of an event is the UTC date
of `event_ts` (and it was the latest UTC date of `event_ts` before). The two agree only if dbt
writes `event_date` as the UTC date of `event_ts`. DuckDB's `cast(timestamptz as date)` uses
the session time zone, which defaults to the PROCESS time zone (TZ): dbt/profiles.yml pins
`TimeZone: UTC`. This test runs dbt (DuckDB, in the step's process as in production) and then
user_features in a process 14 hours ahead of UTC, and in one 10 hours behind, on events near
midnight UTC whose local dates differ from their UTC dates: every event_date must be the UTC
date, and the as-of day the latest UTC date of event_ts.

Without the profile's setting this fails: in America/Adak the events of Jan 3 before 10:00 UTC
get event_date Jan 2 and the as-of day is Jan 2; in Pacific/Kiritimati events after 10:00 UTC
get the next day, and the latest one (Jan 3 10:00 UTC, local Jan 4) falls outside its run's
window and is left out of stg_events.

dbt and analytics in one process: a cross-location test, so it lives in the root tests/.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
UTC = dt.UTC


def utc(day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, second, micro, tzinfo=UTC)


#: Events whose local date differs from their UTC date in at least one of the zones below.
NEAR_MIDNIGHT = [
    ("a-jan1-1000", utc(1, 10)),  # Kiritimati: Jan 2 00:00
    ("b-jan2-2359", utc(2, 23, 59, 59, 999_999)),  # Kiritimati: Jan 3; Adak: Jan 2 13:59
    ("c-jan3-0000", utc(3)),  # Adak: Jan 2 14:00
]
#: The latest event, per zone, chosen so that its LOCAL date is not its UTC date (Jan 3): a
#: session in that zone would move the as-of day.
LATEST = {
    "Pacific/Kiritimati": ("z-latest", utc(3, 10)),  # UTC+14: local Jan 4 00:00
    "America/Adak": ("z-latest", utc(3, 9, 59, 59)),  # UTC-10 in January: local Jan 2 23:59
}


@pytest.mark.parametrize("zone", sorted(LATEST))
def test_event_date_and_the_as_of_day_are_utc_dates_in_a_far_from_utc_process(zone, tmp_path):
    events = [*NEAR_MIDNIGHT, LATEST[zone]]
    latest_utc_day = max(ts for _, ts in events).date()
    # The data can tell: some local dates differ, the latest local date among them too.
    local = ZoneInfo(zone)
    assert any(ts.astimezone(local).date() != ts.date() for _, ts in events)
    assert max(ts.astimezone(local).date() for _, ts in events) != latest_utc_day

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_PLATFORM_", "DBT_"))}
    env.update(
        TZ=zone,
        DATA_PLATFORM_ENV="local",
        DATA_PLATFORM_HOME=str(tmp_path / "home"),
        DBT_TARGET_PATH=str(tmp_path / "dbt-target"),
    )
    rows = [[event_id, ts.isoformat()] for event_id, ts in events]
    out = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(rows)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])

    # The process really is far from UTC, and DuckDB's default session would follow it.
    assert report["duckdb_default_time_zone"] == zone
    assert report["utc_offset_hours"] in (14.0, -10.0)
    stg = {event_id: (dt.datetime.fromisoformat(ts), day) for event_id, ts, day in report["stg"]}
    assert set(stg) == {event_id for event_id, _ in events}
    for event_id, (ts, day) in stg.items():
        assert ts == dict(events)[event_id], event_id
        assert day == ts.astimezone(UTC).date().isoformat(), (event_id, ts, day)
    assert report["as_of_dates"] == [latest_utc_day.isoformat()]


#: Run in the far-from-UTC process: raw tables, dbt's daily models and the other models (in this
#: process, as the transformation step runs them), then ml.user_features with its default as-of
#: day. Prints one JSON line: what DuckDB and the OS say the zone is, stg_events' (event_id,
#: event_ts in UTC, event_date), and the distinct as_of_date of ml.user_features.
RUN = """
import datetime as dt, json, sys, time
import duckdb, pyarrow as pa
from dagster import DagsterInstance, materialize
from shared.iceberg import open_catalog, read_table, write_table
from shared.resources import IcebergCatalogResource
from transformation.assets import dbt_daily_models, dbt_models
from transformation.definitions import defs as transformation_defs
from analytics.assets import user_features

rows = [(e, dt.datetime.fromisoformat(ts)) for e, ts in json.loads(sys.argv[1])]
catalog = open_catalog()
ts_type = pa.timestamp("us", tz="UTC")
signup = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
users = pa.table({
    "id": pa.array([1], pa.int64()), "email": ["ann@example.com"], "name": ["Ann"],
    "country": ["FR"], "plan": ["free"], "signup_at": pa.array([signup], ts_type),
    "updated_at": pa.array([signup], ts_type), "_airbyte_raw_id": ["u1"],
    "_airbyte_extracted_at": pa.array([signup], ts_type), "_airbyte_meta": ["{}"],
})
write_table(catalog, "raw.users", users, mode="overwrite")
extracted = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
events = pa.table({
    "event_id": [e for e, _ in rows], "user_id": pa.array([1] * len(rows), pa.int64()),
    "event_type": ["click"] * len(rows), "event_ts": pa.array([t for _, t in rows], ts_type),
    "amount": pa.array([None] * len(rows), pa.float64()),
    "_airbyte_raw_id": ["r-" + e for e, _ in rows],
    "_airbyte_extracted_at": pa.array([extracted] * len(rows), ts_type),
    "_airbyte_meta": ["{}"] * len(rows),
})
write_table(catalog, "raw.events", events, mode="append")

instance = DagsterInstance.ephemeral()
days = sorted(t.date() for _, t in rows)
tags = {"dagster/asset_partition_range_start": days[0].isoformat(),
        "dagster/asset_partition_range_end": days[-1].isoformat()}
for assets, run_tags in (([dbt_daily_models], tags), ([dbt_models], {})):
    result = materialize(assets, instance=instance, resources=transformation_defs.resources,
                         tags=run_tags)
    assert result.success
assert materialize([user_features], instance=instance,
                   resources={"iceberg": IcebergCatalogResource()}).success

stg = read_table(catalog, "staging.stg_events").to_pylist()
features = read_table(catalog, "ml.user_features").to_pylist()
print(json.dumps({
    "duckdb_default_time_zone": duckdb.connect().execute(
        "select current_setting('TimeZone')").fetchone()[0],
    "utc_offset_hours": -time.timezone / 3600,
    "stg": sorted([r["event_id"], r["event_ts"].astimezone(dt.UTC).isoformat(),
                   r["event_date"].isoformat()] for r in stg),
    "as_of_dates": sorted({r["as_of_date"].isoformat() for r in features}),
}))
"""
