"""stg_events reads only the versions extracted at or after its window's earliest extraction.

The bound prunes what the version look-up reads (dbt/models/staging/stg_events.sql); it must
never change the answer. Each case here is one the bound could get wrong: a newer version
elsewhere extracted after the window's rows, a tie at the bound itself (same delivery, below a
second), an older version elsewhere (pruned, and rightly), and a window row without an
extraction time (no bound at all). Runs go through Dagster and dbt as in production; the SQL
that dbt renders for a window is checked to carry (or not) the bound as a literal.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pyarrow as pa
import raw_fixture
from dagster import DagsterInstance, materialize

from shared.iceberg import read_table, write_table
from transformation.assets import dbt_daily_models
from transformation.definitions import defs
from transformation.project import DBT_EXECUTABLE, DBT_PROJECT_DIR

ts = raw_fixture.ts
#: The window's earliest extraction in the first case: below a second (the bound is floored).
EARLIEST = ts(3, 1) + dt.timedelta(microseconds=250_000)


def write_events(catalog, rows: list[tuple]) -> None:
    """raw.users, then ``rows`` as raw.events with the landing loader's ``_ab_record_index``:
    (event_id, user_id, event_type, event_ts, amount, raw_id, extracted_at, record index)."""
    raw_fixture.write_raw(catalog, events=[])
    schema = raw_fixture.EVENTS_SCHEMA.append(pa.field("_ab_record_index", pa.int64()))
    names = [n for n in schema.names if n != "_airbyte_meta"]
    table = pa.Table.from_pylist(
        [{**dict(zip(names, r, strict=True)), "_airbyte_meta": "{}"} for r in rows], schema=schema
    )
    write_table(catalog, "raw.events", table, mode="append")


def run_day(instance, day: str) -> None:
    result = materialize(
        [dbt_daily_models],
        instance=instance,
        resources=defs.resources,
        tags={"dagster/asset_partition_range_start": day, "dagster/asset_partition_range_end": day},
        raise_on_error=False,
    )
    assert result.success


def stg_events(catalog) -> dict[str, tuple[str, str]]:
    """event_id -> (event_date, raw id of the version kept)."""
    rows = read_table(catalog, "staging.stg_events").to_pylist()
    assert len({r["event_id"] for r in rows}) == len(rows), "stg_events has duplicated event_ids"
    return {r["event_id"]: (r["event_date"].isoformat(), r["airbyte_raw_id"]) for r in rows}


def compiled_stg_events(tmp_path, day: str, next_day: str) -> str:
    """The SQL dbt renders for stg_events over the window [day, next_day) on this home's data
    (``dbt compile``: the bound is queried as in a run)."""
    target = tmp_path / "compile-target"
    cmd = [
        DBT_EXECUTABLE, "compile", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
        str(DBT_PROJECT_DIR), "--target", "duckdb", "--target-path", str(target),
        "--select", "stg_events",
        "--vars", json.dumps({"window_start": day, "window_end": next_day}),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=DBT_PROJECT_DIR)
    assert out.returncode == 0, out.stdout[-3000:]
    return (target / "compiled/data_platform/models/staging/stg_events.sql").read_text()


def test_versions_extracted_from_the_windows_earliest_extraction_on_decide(catalog, home, tmp_path):
    write_events(
        catalog,
        [
            # A plain event of Jan 2.
            ("k1", 1, "click", ts(2, 9), None, "k1", EARLIEST, 0),
            # m1's newer version moved to Jan 5, extracted after the window's rows: not Jan 2's.
            ("m1", 1, "click", ts(2, 10), None, "m1-jan2", EARLIEST, 1),
            ("m1", 1, "click", ts(5, 10), None, "m1-jan5", ts(6, 1), 0),
            # m2 moved to Jan 1 within the same delivery, extracted exactly at the bound (record
            # index decides): not Jan 2's, and Jan 1's.
            ("m2", 2, "click", ts(2, 11), None, "m2-jan2", EARLIEST, 2),
            ("m2", 2, "click", ts(1, 11), None, "m2-jan1", EARLIEST, 3),
            # m3's older version on Jan 1 was extracted before Jan 2's rows (pruned from Jan 2's
            # look-up, where it cannot win); its newer version moved it to Jan 2.
            ("m3", 2, "purchase", ts(1, 12), 3.0, "m3-jan1", ts(2, 1), 0),
            ("m3", 2, "purchase", ts(2, 12), 4.0, "m3-jan2", ts(3, 2), 0),
            # An event of Jan 1 only.
            ("o1", 3, "click", ts(1, 8), None, "o1", ts(2, 1), 1),
        ],
    )
    instance = DagsterInstance.ephemeral()

    run_day(instance, "2026-01-02")
    assert stg_events(catalog) == {"k1": ("2026-01-02", "k1"), "m3": ("2026-01-02", "m3-jan2")}
    run_day(instance, "2026-01-01")
    run_day(instance, "2026-01-05")
    assert stg_events(catalog) == {
        "k1": ("2026-01-02", "k1"),
        "m1": ("2026-01-05", "m1-jan5"),
        "m2": ("2026-01-01", "m2-jan1"),
        "m3": ("2026-01-02", "m3-jan2"),
        "o1": ("2026-01-01", "o1"),
    }

    # The bound is in the SQL as a literal (what engines prune by), floored to the second.
    jan2 = " ".join(compiled_stg_events(tmp_path, "2026-01-02", "2026-01-03").split())
    assert "where _airbyte_extracted_at >= timestamptz '2026-01-03 01:00:00+00'" in jan2
    jan1 = " ".join(compiled_stg_events(tmp_path, "2026-01-01", "2026-01-02").split())
    assert "where _airbyte_extracted_at >= timestamptz '2026-01-02 01:00:00+00'" in jan1


def test_a_window_row_without_extraction_time_reads_every_version(catalog, home, tmp_path):
    write_events(
        catalog,
        [
            # n1's version on Jan 2 has no extraction time, so its version on Jan 1 (extracted
            # before every other row of Jan 2) is the latest: a bound of Jan 2's other rows
            # would drop it and keep n1 on Jan 2.
            ("n1", 1, "click", ts(2, 9), None, "n1-jan2", None, 0),
            ("n1", 1, "click", ts(1, 9), None, "n1-jan1", ts(2, 1), 0),
            ("k2", 1, "click", ts(2, 10), None, "k2", ts(3, 1), 1),
            # n2 has only a version without an extraction time, which is its latest.
            ("n2", 1, "click", ts(2, 11), None, "n2", None, 2),
        ],
    )
    instance = DagsterInstance.ephemeral()
    run_day(instance, "2026-01-02")
    assert stg_events(catalog) == {"k2": ("2026-01-02", "k2"), "n2": ("2026-01-02", "n2")}
    run_day(instance, "2026-01-01")
    assert stg_events(catalog) == {
        "k2": ("2026-01-02", "k2"),
        "n1": ("2026-01-01", "n1-jan1"),
        "n2": ("2026-01-02", "n2"),
    }

    assert "_airbyte_extracted_at >=" not in compiled_stg_events(
        tmp_path, "2026-01-02", "2026-01-03"
    )
