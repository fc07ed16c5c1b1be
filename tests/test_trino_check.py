"""The Trino-dialect check: every model and test as rendered for the trino target, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trino_check import check_sql

REPO = Path(__file__).resolve().parents[1]


def test_every_model_and_test_renders_to_valid_trino_sql():
    # A subprocess: dbt runs in-process there and must not share this process's dbt state.
    proc = subprocess.run(
        [sys.executable, "-m", "tests.trino_check"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 4 models + every test rendered twice (full build and day window), plus every statement of
    # two simulated `dbt run`s (CREATE TABLE AS, then temp table + DELETE + INSERT).
    checked = int(proc.stdout.split("check: ")[1].split(" rendered")[0])
    assert checked >= 2 * (4 + 30) + 20


def test_stg_events_carries_its_extraction_bound_as_a_trino_literal():
    """The bound stg_events queries when it executes is written into its SQL as a Trino
    timestamp literal (what the Iceberg connector prunes files by), in UTC, floored to the
    second; the window is compared on event_ts itself. Without a window, no bound."""
    from tests.trino_check import WINDOW_VARS

    code = subprocess.run(
        [sys.executable, "-c", COMPILE_STG_EVENTS, json.dumps(WINDOW_VARS)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert code.returncode == 0, code.stderr[-3000:]
    window, full = json.loads(code.stdout.strip().splitlines()[-1])
    window = " ".join(window.split())
    assert "where _airbyte_extracted_at >= timestamp '2026-01-02 00:05:00 UTC'" in window
    assert (
        "where event_ts >= timestamp '2026-01-01 00:00:00 UTC'"
        " and event_ts < timestamp '2026-01-02 00:00:00 UTC'"
    ) in window
    assert check_sql(window) == []
    assert "_airbyte_extracted_at >=" not in full


#: Compiles stg_events for trino with the window (argv[1]) and without; prints both as JSON.
#: A subprocess, as above: dbt runs in-process there.
COMPILE_STG_EVENTS = """
import json, sys
from pathlib import Path
from tests.trino_check import compile_for_trino
from transformation.project import DBT_PROJECT_DIR
node = "model.data_platform.stg_events"
window = compile_for_trino(Path(DBT_PROJECT_DIR), json.loads(sys.argv[1]))["nodes"][node]
full = compile_for_trino(Path(DBT_PROJECT_DIR))["nodes"][node]
print(json.dumps([window["compiled_code"], full["compiled_code"]]))
"""


@pytest.mark.parametrize(
    "sql",
    [
        "select cast(event_ts as date) as d, count(*) from raw.events group by 1",
        "select lower(to_hex(md5(to_utf8(cast(x as varchar))))) from t",
        "select * from (select a, row_number() over (partition by a order by b desc nulls last) rn"
        " from t) where rn = 1",
    ],
)
def test_trino_sql_passes(sql):
    assert check_sql(sql) == []


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("select a from t qualify row_number() over (partition by a) = 1", "Trino SQL"),
        ("select x::date from t", "`::` cast"),
        ("select list_aggregate(xs, 'sum') from t", "list_aggregate"),
        ("select epoch_ms(ts) from t", "epoch_ms"),
        ("select from where", "not valid Trino SQL"),
    ],
)
def test_duckdb_only_sql_is_rejected(sql, why):
    problems = check_sql(sql)
    assert problems and any(why in p for p in problems), problems
