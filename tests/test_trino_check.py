"""The Trino-dialect check: every model and test as rendered for the trino target, offline."""

from __future__ import annotations

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
