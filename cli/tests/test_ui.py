"""``data-platform ui``: ``dagster dev -w workspace.yaml`` on the demo's instance, nothing to set.

The webserver on that instance is checked end to end in
``tests/test_end_to_end.py::test_the_ui_on_the_demo_instance_shows_its_runs_with_their_code_locations``;
here, that the command starts exactly that, for the home the demo used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_platform import cli
from data_platform.demo import demo_instance_dir
from data_platform.graph import WORKSPACE_FILE


@pytest.fixture
def exec_calls(monkeypatch):
    calls = []

    def fake_execve(path, argv, env):
        calls.append((path, argv, env))

    monkeypatch.setattr(os, "execve", fake_execve)
    for var in ("DAGSTER_HOME", "DATA_PLATFORM_HOME", "DATA_PLATFORM_STANDIN_END"):
        # set then delete: the command sets them in os.environ; restored after the test
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    return calls


def test_ui_runs_dagster_dev_on_the_demos_instance(exec_calls, tmp_path, capsys):
    home = tmp_path / "lake"
    assert cli.main(["ui", "--home", str(home), "--port", "3456"]) == 0
    [(path, argv, env)] = exec_calls
    assert Path(path).name == "dagster"
    assert argv[1:4] == ["dev", "-w", str(WORKSPACE_FILE)]
    assert argv[argv.index("--port") + 1] == "3456"
    assert env["DAGSTER_HOME"] == str(demo_instance_dir(home.resolve())) == str(home / "dagster")
    assert env["DATA_PLATFORM_HOME"] == str(home.resolve())
    # dbt (the transformation location needs it on PATH) from this environment
    assert env["PATH"].split(os.pathsep)[0] == str(Path(path).parent)
    # The stand-in's days end yesterday, as in the demo, for runs launched from the UI.
    assert env["DATA_PLATFORM_STANDIN_END"]
    assert (home / "dagster" / "dagster.yaml").exists()
    assert "http://127.0.0.1:3456" in capsys.readouterr().out


def test_an_existing_instance_config_is_kept(exec_calls, tmp_path):
    instance = tmp_path / "lake" / "dagster"
    instance.mkdir(parents=True)
    (instance / "dagster.yaml").write_text("concurrency:\n  default_op_concurrency_limit: 2\n")
    cli.main(["ui", "--home", str(tmp_path / "lake")])
    assert "default_op_concurrency_limit" in (instance / "dagster.yaml").read_text()
