"""Fixtures: a fresh platform home per test, and the dbt manifest prepared once."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# The hand-made raw dataset lives beside the tests (import mode is importlib: no rootdir magic).
sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config) -> None:
    """``dbt parse`` if the manifest is missing (fresh clone), as CI and images do.

    At configure time, before test modules (which import transformation.definitions, and so
    need the manifest) are collected.
    """
    from transformation.project import ensure_manifest

    ensure_manifest()


from transformation.project import MANIFEST_PATH  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh DATA_PLATFORM_HOME in local mode (dbt, run in the step's process, reads it)."""
    home = tmp_path / "home"
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(home))
    monkeypatch.setenv("DATA_PLATFORM_ENV", "local")
    monkeypatch.delenv("DBT_TARGET", raising=False)
    # dbt artifacts of the test runs go to tmp, not dbt/target; the prepared partial-parse file
    # comes along so unchanged parses stay fast.
    target = tmp_path / "dbt-target"
    target.mkdir()
    partial = MANIFEST_PATH.with_name("partial_parse.msgpack")
    if partial.exists():
        shutil.copy(partial, target / partial.name)
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    return home


@pytest.fixture
def catalog(home):
    from shared.iceberg import open_catalog

    return open_catalog()
