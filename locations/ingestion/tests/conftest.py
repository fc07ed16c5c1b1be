"""Fixtures of the ingestion tests: a fake Airbyte server and an isolated platform home."""

import sys
from pathlib import Path

import pytest

# The fake Airbyte server is a test helper module beside this file (pytest runs with
# --import-mode=importlib, which does not put test folders on sys.path).
sys.path.insert(0, str(Path(__file__).parent))

from fake_airbyte import FakeAirbyte, spec_path  # noqa: E402

PLATFORM_VARS = (
    "DATA_PLATFORM_ENV",
    "DATA_PLATFORM_HOME",
    "DATA_PLATFORM_STANDIN_USERS",
    "DATA_PLATFORM_STANDIN_EVENTS_PER_DAY",
    "DATA_PLATFORM_STANDIN_DAYS",
    "DATA_PLATFORM_STANDIN_SEED",
    "DATA_PLATFORM_STANDIN_END",
    "AIRBYTE_URL",
    "AIRBYTE_WORKSPACE_ID",
    "AIRBYTE_CLIENT_ID",
    "AIRBYTE_CLIENT_SECRET",
    "AIRBYTE_USERNAME",
    "AIRBYTE_PASSWORD",
    "ICEBERG_REST_URI",
    "GARAGE_S3_ENDPOINT",
    "GARAGE_ACCESS_KEY_ID",
    "GARAGE_SECRET_ACCESS_KEY",
    "GARAGE_BUCKET",
    "DATA_PLATFORM_SNAPSHOT_KEEP_LAST",
    "DATA_PLATFORM_SNAPSHOT_MIN_AGE_MINUTES",
    "DATA_PLATFORM_ORPHAN_MIN_AGE_HOURS",
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A clean local platform: DATA_PLATFORM_HOME in tmp, no prod variable inherited."""
    for name in PLATFORM_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def airbyte(home):
    """A running fake Airbyte; the test fails if it served or received an off-spec payload."""
    server = FakeAirbyte().start()
    yield server
    server.stop()
    assert server.violations == [], server.violations


@pytest.fixture
def prod_env(airbyte, monkeypatch):
    """Prod mode pointed at the fake Airbyte (Iceberg/Garage variables deliberately unset)."""
    for name, value in airbyte.env().items():
        monkeypatch.setenv(name, value)
    return airbyte


@pytest.fixture(scope="session")
def openapi_spec():
    path = spec_path()
    if path is None:
        pytest.skip("Airbyte public API spec not found (../shared/reference/airbyte)")
    return path
