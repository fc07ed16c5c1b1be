import os
import re
from pathlib import Path

import pytest

from shared.settings import (
    Secret,
    SettingsError,
    env_int,
    env_path,
    env_secret,
    env_str,
    load_settings,
)


def test_local_is_the_default_and_lives_under_home(tmp_path):
    s = load_settings({"DATA_PLATFORM_HOME": str(tmp_path)})
    assert s.env == "local"
    assert s.home == tmp_path.resolve()
    assert s.catalog_properties()["type"] == "sql"
    assert s.catalog.uri.startswith(f"sqlite:///{tmp_path.resolve()}/catalog.db")
    assert s.catalog.warehouse == str(tmp_path.resolve() / "warehouse")
    assert s.airbyte is None


def test_unknown_mode_names_the_allowed_values():
    with pytest.raises(SettingsError) as err:
        load_settings({"DATA_PLATFORM_ENV": "staging"})
    assert "'staging'" in str(err.value)
    assert "local, prod" in str(err.value)


def test_prod_requires_the_catalog_and_object_store():
    with pytest.raises(SettingsError, match="ICEBERG_REST_URI"):
        load_settings({"DATA_PLATFORM_ENV": "prod"})
    with pytest.raises(SettingsError, match="GARAGE_S3_ENDPOINT"):
        load_settings({"DATA_PLATFORM_ENV": "prod", "ICEBERG_REST_URI": "http://cat:8181"})


PROD = {
    "DATA_PLATFORM_ENV": "prod",
    "ICEBERG_REST_URI": "http://cat:8181",
    "GARAGE_S3_ENDPOINT": "http://garage:3900",
    "GARAGE_ACCESS_KEY_ID": "GKplantedaccesskey",
    "GARAGE_SECRET_ACCESS_KEY": "planted-secret-value-123",  # pragma: allowlist secret
}


def test_prod_catalog_properties_configure_garage():
    props = load_settings(PROD).catalog_properties()
    assert props["type"] == "rest"
    assert props["s3.region"] == "garage"  # without it pyarrow asks AWS and stalls
    assert props["s3.endpoint"] == "http://garage:3900"
    assert props["s3.secret-access-key"] == "planted-secret-value-123"


def test_secrets_never_show_in_repr():
    s = load_settings(PROD)
    text = repr(s) + str(s.object_store.secret_access_key)
    assert "planted-secret-value-123" not in text
    assert "GKplantedaccesskey" not in text
    assert Secret("x").reveal() == "x"


def test_airbyte_needs_one_pair_of_credentials():
    env = {**PROD, "AIRBYTE_URL": "http://airbyte:8001", "AIRBYTE_WORKSPACE_ID": "w"}
    with pytest.raises(SettingsError, match="AIRBYTE_CLIENT_ID"):
        load_settings(env)
    ok = load_settings({**env, "AIRBYTE_USERNAME": "u", "AIRBYTE_PASSWORD": "p"})
    assert ok.airbyte.rest_api_base_url == "http://airbyte:8001/api/public/v1"
    assert ok.airbyte.configuration_api_base_url == "http://airbyte:8001/api/v1"


@pytest.mark.parametrize(
    "given",
    [
        "http://airbyte:8001",
        "http://airbyte:8001/",
        "http://airbyte:8001/api/public/v1",
        "http://airbyte:8001/api/public/v1/",
        "http://airbyte:8001/api/v1",
    ],
)
def test_airbyte_url_may_be_the_server_root_or_an_api_base(given):
    env = {**PROD, "AIRBYTE_URL": given, "AIRBYTE_WORKSPACE_ID": "w"}
    s = load_settings({**env, "AIRBYTE_USERNAME": "u", "AIRBYTE_PASSWORD": "p"})
    assert s.airbyte.url == "http://airbyte:8001"
    assert s.airbyte.rest_api_base_url == "http://airbyte:8001/api/public/v1"
    assert s.airbyte.configuration_api_base_url == "http://airbyte:8001/api/v1"


@pytest.mark.parametrize(
    "given", ["airbyte:8001", "http://airbyte:8001/api", "http://airbyte:8001/api/public"]
)
def test_an_unusable_airbyte_url_says_what_to_set(given):
    env = {**PROD, "AIRBYTE_URL": given, "AIRBYTE_WORKSPACE_ID": "w"}
    with pytest.raises(SettingsError) as err:
        load_settings({**env, "AIRBYTE_USERNAME": "u", "AIRBYTE_PASSWORD": "p"})
    message = str(err.value)
    assert f"AIRBYTE_URL={given!r}" in message
    assert "server root" in message and "/api/public/v1" in message


def test_home_override_is_applied_in_one_place(tmp_path):
    s = load_settings({"DATA_PLATFORM_HOME": "/elsewhere"}, home=str(tmp_path))
    assert s.home == tmp_path.resolve()
    assert load_settings({"DATA_PLATFORM_HOME": str(tmp_path)}, home=None).home == s.home


@pytest.mark.parametrize("raw", ["0", "-1", "x", "1.5", "99999999999999999999"])
def test_env_int_names_the_variable_and_the_allowed_range(raw):
    with pytest.raises(SettingsError) as err:
        env_int({"SOME_VAR": raw}, "SOME_VAR", 3, minimum=1, maximum=3650)
    assert str(err.value) == (f"SOME_VAR={raw!r} is not allowed: a whole number from 1 to 3650.")


def test_env_helpers_parse_values():
    env = {"N": " 7 ", "S": " x ", "K": "secret-value", "P": "~/somewhere"}
    assert env_int(env, "N", 3, maximum=10) == 7
    assert env_int(env, "MISSING", 3, maximum=10) == 3
    assert env_str(env, "S") == "x"
    assert env_str(env, "MISSING", "d") == "d"
    assert env_secret(env, "K").reveal() == "secret-value"
    assert env_path(env, "P") == (Path.home() / "somewhere").resolve()
    assert env_path(env, "MISSING") is None


#: A read of one variable: os.getenv(...), environ.get(...), environ[...] not being assigned.
READS_ENV = re.compile(r"getenv\(|environ\.get\(|environ\[[^\]]*\](?!\s*=[^=])")


def test_only_settings_reads_the_environment():
    """Installed packages read the environment only through shared.settings (issue 14 item 3)."""
    repo = Path(__file__).resolve().parents[2]
    packages = [repo / "shared" / "shared", repo / "cli" / "data_platform"]
    packages += [p for p in (repo / "locations").glob("*/*") if (p / "__init__.py").exists()]
    readers = []
    for package in packages:
        for module in package.rglob("*.py"):
            if module == repo / "shared" / "shared" / "settings.py":
                continue
            for number, line in enumerate(module.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if READS_ENV.search(code):
                    readers.append(f"{module.relative_to(repo)}:{number}: {line.strip()}")
    assert readers == []


def test_default_home_is_repo_root(monkeypatch):
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo / "shared")
    assert load_settings({}).home == repo / ".data-platform"


def test_a_home_that_is_a_file_or_under_a_file_is_one_clear_error(tmp_path):
    from shared.settings import ensure_home

    a_file = tmp_path / "file"
    a_file.write_text("x")
    for home, problem in ((a_file, "it is a file"), (a_file / "sub", "it is under a file")):
        with pytest.raises(SettingsError) as err:
            ensure_home(load_settings({"DATA_PLATFORM_HOME": str(home)}))
        message = str(err.value)
        assert message.startswith(f"DATA_PLATFORM_HOME={str(home)!r} is not usable: {problem}")
        assert "Allowed: a folder" in message and "\n" not in message
    assert ensure_home(load_settings({"DATA_PLATFORM_HOME": str(tmp_path / "new" / "h")})).is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_home_that_is_not_writable_is_one_clear_error(tmp_path):
    from shared.settings import ensure_home

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SettingsError, match="cannot be created|cannot write"):
        ensure_home(load_settings({"DATA_PLATFORM_HOME": str(locked / "home")}))
