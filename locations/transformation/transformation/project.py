"""The dbt project of the platform (``dbt/`` at the repository root) and its manifest.

Kept in its own module, importing neither dbt nor dagster-dbt, so that loading the definitions
stays cheap (``transformation.manifest``) and preparing the manifest needs nothing else:

* at image build time and in CI: ``python -m transformation.project prepare`` (runs ``dbt parse``
  and writes ``dbt/target/manifest.json``);
* on load (:func:`ensure_manifest`): a missing manifest is prepared, saying so in one line (a
  fresh clone after ``uv sync``); under ``dagster dev`` also one older than a file of the project
  (an edited model shows up on reload). Images bake the manifest, so this never runs there.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

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

#: Where ``dbt parse`` writes the manifest (the project's ``target-path``). No target is chosen
#: here: each run passes --target from shared.settings, and the asset graph does not depend on it.
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"

#: The files whose changes change the manifest.
_PROJECT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def manifest_path() -> Path:
    return MANIFEST_PATH


def prepare(target: str = "duckdb") -> Path:
    """Run ``dbt parse`` for ``target`` and return the manifest's path (no database needed)."""
    env = {**environment(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.pop("DBT_TARGET_PATH", None)  # the manifest goes to the project's target/, always
    cmd = [
        DBT_EXECUTABLE,
        "parse",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target",
        target,
        "--target-path",
        str(MANIFEST_PATH.parent),
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"dbt parse (target {target}) failed in {DBT_PROJECT_DIR}:\n{proc.stdout}\n{proc.stderr}"
        )
    return MANIFEST_PATH


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in _PROJECT_SOURCES:
        path = DBT_PROJECT_DIR / name
        files = path.rglob("*") if path.is_dir() else [path]
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


def ensure_manifest(*, refresh_if_stale: bool | None = None) -> Path:
    """Prepare the manifest if it is missing (fresh clones, tests), in one line on stderr.

    ``refresh_if_stale`` (default: under ``dagster dev``, which sets ``DAGSTER_IS_DEV_CLI``, as
    dagster-dbt's ``prepare_if_dev`` does) also re-parses when a project file is newer than the
    manifest, instead of re-parsing on every load (35 s here).
    """
    if refresh_if_stale is None:
        refresh_if_stale = bool(environment().get("DAGSTER_IS_DEV_CLI"))

    def reason() -> str | None:
        if not MANIFEST_PATH.exists():
            return "missing"
        if refresh_if_stale and _newest_source_mtime() > MANIFEST_PATH.stat().st_mtime:
            return "older than the project's files"
        return None

    if reason() is None:
        return MANIFEST_PATH
    # Several processes may load the location at once (code server, run workers, tests): one
    # parses, the others wait for it and then find the manifest ready.
    MANIFEST_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(MANIFEST_PATH.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        why = reason()
        if why:
            print(
                f"dbt manifest {why}: preparing it (dbt parse, about 10 s) -> {MANIFEST_PATH}",
                file=sys.stderr,
                flush=True,
            )
            prepare()
    return MANIFEST_PATH


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "prepare":
        print("usage: python -m transformation.project prepare", file=sys.stderr)
        return 2
    print(prepare())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
