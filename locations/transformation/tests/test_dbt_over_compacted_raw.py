"""dbt reads raw tables compacted by table maintenance (a ``replace`` snapshot) as before.

Raw tables built one sync (append) at a time hold one small file per sync; table maintenance
rewrites them into few files in ONE ``replace`` snapshot (``shared.compaction``), rows unchanged.
The local dbt target reads a table's current snapshot through
``transformation.duckdb_iceberg.scan_sql``: after a compaction it must read the new files only,
never the replaced ones beside them (they stay on storage, listed by older snapshots).

Every staging model deduplicates (by event_id, by user id, by (id, updated_at)), so a reader
that doubled the raw rows would still build the same staging tables: equal staging tables alone
cannot catch it. The test therefore also counts what DuckDB reads of each raw table through
``scan_sql`` (it must equal the raw table's rows and its distinct raw ids, each raw row having
its own ``_airbyte_raw_id``), before and after the compaction.
"""

from __future__ import annotations

import duckdb
import polars as pl
import raw_fixture
from dagster import DagsterInstance, materialize

from shared.compaction import compact_small_files, is_replace
from shared.iceberg import read_table, write_table
from transformation.assets import dbt_daily_models, dbt_models
from transformation.definitions import defs
from transformation.duckdb_iceberg import scan_sql

#: The daily window built (one run over the partition range): every event day of the fixture.
FIRST_DAY, LAST_DAY = "2026-01-01", "2026-01-03"
#: The tables dbt builds here (staging and marts), compared before and after the compaction.
MODELS = (
    "staging.stg_events",
    "staging.stg_users",
    "staging.stg_user_versions",
    "marts.fct_daily_events",
    "marts.dim_users",
)


def write_raw_by_day(catalog) -> None:
    """raw.users and raw.events from one append per extraction day (as daily syncs write them),
    each day's rows in two appends: several small files per table."""
    users = raw_fixture.users_table()
    events = raw_fixture.events_table(raw_fixture.EVENTS_SYNC_1 + raw_fixture.EVENTS_SYNC_2)
    for identifier, data in (("raw.users", users), ("raw.events", events)):
        by_day: dict = {}
        for r in data.to_pylist():
            by_day.setdefault(r["_airbyte_extracted_at"].date(), []).append(r)
        for _, rows in sorted(by_day.items()):
            for half in (rows[: (len(rows) + 1) // 2], rows[(len(rows) + 1) // 2 :]):
                if half:
                    write_table(
                        catalog,
                        identifier,
                        raw_fixture.pa.Table.from_pylist(half, schema=data.schema),
                        mode="append",
                    )


def run_models(instance) -> None:
    daily = materialize(
        [dbt_daily_models],
        instance=instance,
        resources=defs.resources,
        tags={
            "dagster/asset_partition_range_start": FIRST_DAY,
            "dagster/asset_partition_range_end": LAST_DAY,
        },
        raise_on_error=False,
    )
    assert daily.success
    full = materialize(
        [dbt_models], instance=instance, resources=defs.resources, raise_on_error=False
    )
    assert full.success


def sorted_rows(catalog, identifier: str) -> list[tuple]:
    data = read_table(catalog, identifier)
    names = sorted(data.column_names)
    return sorted(zip(*(data[c].to_pylist() for c in names), strict=True), key=repr)


def duckdb_read(catalog, identifier: str, scratch) -> tuple[int, int]:
    """(rows, distinct raw ids) DuckDB reads of ``identifier`` through ``scan_sql``, as dbt."""
    sql = scan_sql(catalog.load_table(identifier), scratch)
    with duckdb.connect() as conn:
        return conn.execute(
            f"select count(*), count(distinct _airbyte_raw_id) from {sql}"
        ).fetchone()


def data_files(catalog, identifier: str) -> int:
    return len(list(catalog.load_table(identifier).scan().plan_files()))


def test_dbt_builds_the_same_staging_and_marts_over_compacted_raw_tables(catalog, home, tmp_path):
    write_raw_by_day(catalog)
    raw_rows = {"raw.users": len(raw_fixture.USERS)}
    raw_rows["raw.events"] = len(raw_fixture.EVENTS_SYNC_1) + len(raw_fixture.EVENTS_SYNC_2)
    files_before = {t: data_files(catalog, t) for t in raw_rows}
    assert files_before == {"raw.users": 5, "raw.events": 6}  # 3 and 4 days, some in halves
    for identifier, n in raw_rows.items():
        assert duckdb_read(catalog, identifier, tmp_path / "scratch") == (n, n)

    instance = DagsterInstance.ephemeral()
    run_models(instance)
    before = {m: sorted_rows(catalog, m) for m in MODELS}
    # The staging tables hold what the raw rows say (not empty, one row per key).
    events = pl.from_arrow(read_table(catalog, "raw.events"))
    assert len(before["staging.stg_events"]) == events["event_id"].n_unique() == 7
    assert len(before["staging.stg_users"]) == len({u[0] for u in raw_fixture.USERS}) == 3
    assert len(before["staging.stg_user_versions"]) == 4

    for identifier in raw_rows:
        done = compact_small_files(catalog, identifier, min_files=2)
        assert done.files_replaced == files_before[identifier]
        table = catalog.load_table(identifier)
        assert is_replace(table.current_snapshot())
        assert data_files(catalog, identifier) == done.files_written < files_before[identifier]
    # What dbt's reader sees of the compacted tables: every raw row once, the replaced files'
    # copies not beside them.
    for identifier, n in raw_rows.items():
        assert duckdb_read(catalog, identifier, tmp_path / "scratch") == (n, n)

    run_models(instance)
    after = {m: sorted_rows(catalog, m) for m in MODELS}
    for model in MODELS:
        assert after[model] == before[model], model
