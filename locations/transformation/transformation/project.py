"""The dbt project of the platform (``dbt/`` at the repository root) as a dagster-dbt DbtProject.

Kept in its own module so that preparing the manifest needs nothing else:

* at image build time and in CI: ``python -m transformation.project prepare`` (runs ``dbt parse``
  and writes ``dbt/target/manifest.json``; equivalent to ``dagster-dbt project
  prepare-and-package --file locations/transformation/transformation/project.py``);
* under ``dagster dev``: :meth:`DbtProject.prepare_if_dev` re-parses on load.

In production the manifest is never parsed on import: a missing manifest is an error at load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from shared.settings import env_path, environment


def _find_dbt_dir() -> Path:
    """``dbt/`` of the checkout (or of the image): DBT_PROJECT_DIR, else next to this package.

    Read (through :mod:`shared.settings`, the one reader of the environment) when the
    definitions load, not later: the manifest in this folder *is* the list of dbt assets.
    """
    override = env_path(environment(), "DBT_PROJECT_DIR")
    if override:
        return override
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "dbt" / "dbt_project.yml").exists():
            return parent / "dbt"
    raise FileNotFoundError(
        f"cannot find the dbt project (dbt/dbt_project.yml) above {here}; set DBT_PROJECT_DIR"
    )


DBT_PROJECT_DIR = _find_dbt_dir()


def _dbt_executable() -> str:
    """The dbt CLI of THIS Python environment (any venv; dbt need not be on PATH)."""
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else "dbt"


DBT_EXECUTABLE = _dbt_executable()

dbt_project = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    profiles_dir=DBT_PROJECT_DIR,
    # No target here: each run passes --target from shared.settings (transformation.assets), and
    # the asset graph does not depend on the target.
)
# `dagster dev` sets DAGSTER_IS_DEV_CLI: re-parse on load so edits to models show up.
dbt_project.prepare_if_dev()


def manifest_path() -> Path:
    return dbt_project.manifest_path


def prepare(target: str = "duckdb") -> Path:
    """Run ``dbt parse`` for ``target`` and return the manifest's path (no database needed)."""
    env = {**environment(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    cmd = [
        DBT_EXECUTABLE,
        "parse",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target",
        target,
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"dbt parse (target {target}) failed in {DBT_PROJECT_DIR}:\n{proc.stdout}\n{proc.stderr}"
        )
    return dbt_project.manifest_path


def ensure_manifest() -> Path:
    """Prepare the manifest if it is missing (tests and fresh clones)."""
    if not dbt_project.manifest_path.exists():
        prepare()
    return dbt_project.manifest_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "prepare":
        print("usage: python -m transformation.project prepare", file=sys.stderr)
        return 2
    print(prepare())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
