"""Dagster's ``dg`` over the same three locations as ``workspace.yaml``: ``dg list defs`` and
``dg check defs`` in each location's folder, ``dg dev`` over the three from the root (``dg.toml``),
all in the one uv environment of the workspace."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_platform.graph import workspace_locations
from data_platform.processes import dagster_process
from tests.webserver import REPO, Webserver, free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DG = str(BIN / "dg")
LOCATIONS = workspace_locations()
#: As `uv run` sets it: this environment's executables first (dbt, for the transformation location).
ENV = {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}


def dg(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DG, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


@pytest.mark.parametrize("location", sorted(LOCATIONS))
def test_dg_lists_and_checks_each_location_as_workspace_yaml_loads_it(location):
    folder = REPO / "locations" / location
    listed = dg("list", "defs", "--json", cwd=folder)
    assert listed.returncode == 0, listed.stderr[-3000:]
    payload = json.loads(listed.stdout)
    defs = importlib.import_module(LOCATIONS[location]).defs
    expected = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {a["asset_key"] for a in payload["assets"]} == expected
    checked = dg("check", "defs", cwd=folder)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr


def test_dg_toml_names_the_locations_of_workspace_yaml():
    import tomllib

    projects = tomllib.loads((REPO / "dg.toml").read_text())["workspace"]["projects"]
    assert [p["path"] for p in projects] == [f"locations/{name}" for name in LOCATIONS]
    for name, module in LOCATIONS.items():
        pyproject = tomllib.loads((REPO / "locations" / name / "pyproject.toml").read_text())
        project = pyproject["tool"]["dg"]["project"]
        assert (project["code_location_name"], project["code_location_target_module"]) == (
            name,
            module,
        )


def test_dg_dev_serves_the_three_locations(tmp_path):
    port = free_port()
    env = {
        **ENV,
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "DATA_PLATFORM_HOME": str(tmp_path / "lake"),
        # dg's --use-active-venv reads the active environment: this one.
        "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
    }
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = tmp_path / "dg-dev.log"
    args = ["dev", "--use-active-venv", "--host", "127.0.0.1", "--port", str(port)]
    with dagster_process("dg", args, env=env, cwd=REPO, log=log) as proc:
        server = Webserver(f"http://127.0.0.1:{port}", proc, log)
        entries = server.wait_loaded(set(LOCATIONS), timeout=400)
        for name in LOCATIONS:
            assert entries[name]["locationOrLoadError"]["__typename"] == "RepositoryLocation"
