"""dbt's working files per home and per run (issue 16 item 11)."""

from __future__ import annotations

import pytest

from transformation.dbt_workdir import PARTIAL_PARSE, run_target


def test_each_run_gets_its_own_target_under_its_home(tmp_path):
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    with (
        run_target(home_a, "run1", "dbt_models") as t1,
        run_target(home_a, "run1", "dbt_models") as t2,
    ):
        assert t1 != t2 and t1.parent == t2.parent == home_a / "dbt" / "target"
    with run_target(home_b, "run2", "dbt_models") as t3:
        assert t3.is_relative_to(home_b)


def test_partial_parse_state_is_kept_per_home_between_runs(tmp_path):
    home = tmp_path / "home"
    with run_target(home, "run1", "op") as target:
        assert not (target / PARTIAL_PARSE).exists()  # a new home, no prepared state given
        (target / PARTIAL_PARSE).write_bytes(b"state of run 1")
    assert (home / "dbt" / PARTIAL_PARSE).read_bytes() == b"state of run 1"
    assert not target.exists()
    with run_target(home, "run2", "op") as target:
        assert (target / PARTIAL_PARSE).read_bytes() == b"state of run 1"
        (target / PARTIAL_PARSE).write_bytes(b"state of run 2")
    assert (home / "dbt" / PARTIAL_PARSE).read_bytes() == b"state of run 2"
    assert not (tmp_path / "other" / "dbt").exists()


def test_a_failed_run_keeps_its_folder_and_the_previous_state(tmp_path):
    home = tmp_path / "home"
    with run_target(home, "run1", "op") as target:
        (target / PARTIAL_PARSE).write_bytes(b"good")
    with pytest.raises(RuntimeError), run_target(home, "run2", "op") as failed:
        (failed / PARTIAL_PARSE).write_bytes(b"half-written")
        (failed / "dbt.log").write_text("Runtime Error: No space left on device")
        raise RuntimeError("dbt failed")
    assert (home / "dbt" / PARTIAL_PARSE).read_bytes() == b"good"
    assert (failed / "dbt.log").exists()


def test_a_new_home_starts_from_the_projects_prepared_state(tmp_path):
    prepared = tmp_path / "project" / "target" / PARTIAL_PARSE
    prepared.parent.mkdir(parents=True)
    prepared.write_bytes(b"prepared")
    home = tmp_path / "home"
    with run_target(home, "run1", "op", prepared) as target:
        assert (target / PARTIAL_PARSE).read_bytes() == b"prepared"
        (target / PARTIAL_PARSE).write_bytes(b"state of run 1")
    # From then on the home's own state wins.
    with run_target(home, "run2", "op", prepared) as target:
        assert (target / PARTIAL_PARSE).read_bytes() == b"state of run 1"
    with run_target(tmp_path / "new", "run3", "op", tmp_path / "missing") as target:
        assert not (target / PARTIAL_PARSE).exists()
