"""``data-platform demo``'s exit codes: 0 when the platform ran and only warnings fired (listed),
non-zero when a run failed (1) or an ERROR check failed or a landing batch was rejected (2)."""

from __future__ import annotations

import json

import pytest

from data_platform import cli, demo
from data_platform.demo import (
    EXIT_FAILED,
    EXIT_NEEDS_ATTENTION,
    EXIT_OK,
    CheckOutcome,
    DemoFailed,
    DemoReport,
    format_report,
)

TABLES = [{"identifier": "raw.users", "row_count": 3, "snapshot_id": 1, "metadata_location": "x"}]


def report_with(*checks: CheckOutcome, landing=()) -> DemoReport:
    return DemoReport(
        runs=[{"location": "ingestion", "success": True}],
        landing=list(landing),
        checks=list(checks),
        tables=TABLES,
    )


PASSED = CheckOutcome("raw/users", "raw_users_primary_key_unique", True, "ERROR")
WARNED = CheckOutcome("raw/users", "raw_users_freshness", False, "WARN", "last sync 30 h ago")
ERRORED = CheckOutcome("raw/users", "raw_users_primary_key_not_null", False, "ERROR", "2 nulls")


@pytest.fixture
def demo_returns(monkeypatch):
    """Run ``data-platform demo`` through its entry point with ``run_demo`` replaced."""

    def use(outcome):
        def fake_run_demo(log=print):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        monkeypatch.setattr(demo, "run_demo", fake_run_demo)
        # The command pins the stand-in's end day in os.environ; restored after the test.
        monkeypatch.setenv("DATA_PLATFORM_STANDIN_END", "")
        monkeypatch.delenv("DATA_PLATFORM_STANDIN_END")

    return use


def test_only_warnings_exit_0_and_are_listed(demo_returns, capsys):
    demo_returns(report_with(PASSED, WARNED))
    assert cli.main(["demo"]) == EXIT_OK == 0
    out = capsys.readouterr().out
    assert "1 passed, 1 failed (0 errors, 1 warnings)" in out
    assert "warning: raw/users :: raw_users_freshness failed (WARN): last sync 30 h ago" in out


def test_an_error_check_exits_2_and_is_named(demo_returns, capsys):
    demo_returns(report_with(PASSED, WARNED, ERRORED))
    assert cli.main(["demo"]) == EXIT_NEEDS_ATTENTION == 2
    out = capsys.readouterr().out
    assert "error: raw/users :: raw_users_primary_key_not_null failed (ERROR): 2 nulls" in out


def test_a_rejected_landing_batch_exits_2(demo_returns, capsys):
    rejected = {
        "batch": "b1",
        "success": False,
        "outcome": "rejected",
        "message": "users.id: 'x' is not an integer",
    }
    pending = {"batch": "b2", "success": False, "outcome": "pending", "message": "disk full"}
    demo_returns(report_with(PASSED, landing=[rejected, pending]))
    assert cli.main(["demo"]) == EXIT_NEEDS_ATTENTION
    out = capsys.readouterr().out
    assert "error: landing batch b1 rejected: users.id" in out
    assert "error: landing batch b2 not loaded: disk full" in out


def test_a_failed_run_exits_1_with_its_message(demo_returns, capsys):
    demo_returns(DemoFailed("run 2 (transformation) failed: dbt_models: boom"))
    assert cli.main(["demo"]) == EXIT_FAILED == 1
    assert "run 2 (transformation) failed: dbt_models: boom" in capsys.readouterr().err


def test_json_output_keeps_its_structure_and_the_exit_code(demo_returns, capsys):
    demo_returns(report_with(PASSED, WARNED))
    assert cli.main(["demo", "--json"]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(payload) == {"runs", "landing", "checks", "tables"}
    assert [c["passed"] for c in payload["checks"]] == [True, False]


def test_all_passed_reads_cleanly():
    text = format_report(report_with(PASSED))
    assert "Asset checks: 1 passed, 0 failed (0 errors, 0 warnings)" in text
    assert "warning:" not in text and "error:" not in text
