"""Each location loads in its own environment, as its image will: only its own closure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_platform.graph import workspace_locations

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    return uv


@pytest.mark.parametrize("location", ["ingestion", "transformation", "analytics"])
def test_location_imports_in_its_own_environment(location, tmp_path):
    env_dir = tmp_path / f"venv-{location}"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(env_dir)}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [_uv(), "sync", "--package", location, "--no-dev", "--frozen", "--quiet"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=600,
    )
    module = workspace_locations()[location]
    code = (
        f"import importlib, sys; defs = importlib.import_module('{module}').defs; "
        "keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph()"
        ".materializable_asset_keys); "
        "others = [m for m in ('ingestion', 'transformation', 'analytics', 'data_platform') "
        f"if m != '{location}' and importlib.util.find_spec(m)]; "
        "print(keys); assert keys, 'no assets'; assert not others, others"
    )
    out = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", code],
        cwd=tmp_path,
        env={**env, "DATA_PLATFORM_HOME": str(tmp_path / "lake")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
