"""shared.airbyte: settings to a dagster-airbyte AirbyteWorkspace, without leaking secrets."""

import pytest

from shared.airbyte import airbyte_workspace, describe, settings_for_sync, workspace_kwargs
from shared.settings import SettingsError, load_settings

BASE = {
    "DATA_PLATFORM_ENV": "prod",
    "DATA_PLATFORM_HOME": "/tmp/dp-test-home",
    "ICEBERG_REST_URI": "http://iceberg:8181",
    "GARAGE_S3_ENDPOINT": "http://garage:3900",
    "AIRBYTE_URL": "http://airbyte-airbyte-server-svc:8001/",
    "AIRBYTE_WORKSPACE_ID": "ws-1",
}


def test_client_credentials_map_to_both_api_base_urls():
    settings = load_settings({**BASE, "AIRBYTE_CLIENT_ID": "cid", "AIRBYTE_CLIENT_SECRET": "csec"})
    kwargs = workspace_kwargs(settings.airbyte)
    assert kwargs == {
        "rest_api_base_url": "http://airbyte-airbyte-server-svc:8001/api/public/v1",
        "configuration_api_base_url": "http://airbyte-airbyte-server-svc:8001/api/v1",
        "workspace_id": "ws-1",
        "client_id": "cid",
        "client_secret": "csec",  # pragma: allowlist secret
    }
    workspace = airbyte_workspace(settings.airbyte, request_max_retries=7)
    assert type(workspace).__name__ == "AirbyteWorkspace"
    assert workspace.request_max_retries == 7


def test_basic_auth_and_describe_hides_secrets():
    settings = load_settings({**BASE, "AIRBYTE_USERNAME": "u", "AIRBYTE_PASSWORD": "hunter2"})
    kwargs = workspace_kwargs(settings.airbyte)
    assert kwargs["username"] == "u" and kwargs["password"] == "hunter2"  # pragma: allowlist secret
    assert "client_id" not in kwargs
    text = describe(settings.airbyte) + repr(settings)
    assert "hunter2" not in text and "basic auth" in text


def test_settings_for_sync_tolerates_missing_catalog_settings_only():
    env = {k: v for k, v in BASE.items() if k not in ("ICEBERG_REST_URI", "GARAGE_S3_ENDPOINT")}
    env |= {"AIRBYTE_CLIENT_ID": "cid", "AIRBYTE_CLIENT_SECRET": "csec"}
    settings, missing = settings_for_sync(env)
    assert missing == ["ICEBERG_REST_URI", "GARAGE_S3_ENDPOINT"]
    assert settings.airbyte.workspace_id == "ws-1"
    # Complete settings: nothing missing.
    assert (
        settings_for_sync({**BASE, "AIRBYTE_CLIENT_ID": "c", "AIRBYTE_CLIENT_SECRET": "s"})[1] == []
    )
    # A problem with Airbyte's own settings is still an error.
    with pytest.raises(SettingsError, match="credentials"):
        settings_for_sync({k: v for k, v in env.items() if not k.startswith("AIRBYTE_CLIENT")})
