"""Planted credentials never appear in run logs, events, metadata, error messages or dbt files.

Every credential of the platform is set to a recognisable planted value, then the ingestion
location runs in prod mode against the fake Airbyte server (``locations/ingestion/tests/
fake_airbyte.py``) through its successful, failing and unreachable paths, with the Iceberg
catalog and Garage unreachable or refusing; the landing sensor runs against an S3 server that
checks the planted key. Everything those runs leave is collected: every event of every run
(serialized, so metadata values and error chains are included), the Python log records, the
process's captured stdout/stderr, the Dagster instance's files on disk (event log database,
compute logs) and a ``dagster asset materialize`` subprocess's output and home. dbt is run with
the planted ``TRINO_PASSWORD`` (``dbt parse`` and a ``dbt compile`` against a dead Trino) and
its target and log folders are searched too. No planted value may appear anywhere.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context, materialize
from dagster._serdes import serialize_value

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "locations" / "ingestion" / "tests"))

from fake_airbyte import FakeAirbyte  # noqa: E402

from ingestion.assets import airbyte_raw_sync  # noqa: E402
from ingestion.checks import RAW_CHECKS  # noqa: E402
from ingestion.jobs import landing_sensor  # noqa: E402
from ingestion.resources import AirbyteSyncResource  # noqa: E402
from ingestion.streams import STREAMS  # noqa: E402
from shared.resources import IcebergCatalogResource, ObjectStoreResource  # noqa: E402
from shared.settings import load_settings  # noqa: E402

PLANTED = {
    "AIRBYTE_CLIENT_SECRET": "PLANTED-airbyte-client-secret-7f3a",  # pragma: allowlist secret
    "AIRBYTE_PASSWORD": "PLANTED-airbyte-password-7f3a",  # pragma: allowlist secret
    "GARAGE_SECRET_ACCESS_KEY": "PLANTED-garage-secret-key-7f3a",  # pragma: allowlist secret
    "ICEBERG_REST_TOKEN": "PLANTED-iceberg-rest-token-7f3a",  # pragma: allowlist secret
    "TRINO_PASSWORD": "PLANTED-trino-password-7f3a",  # pragma: allowlist secret
}
AIRBYTE_USER = "dagster"


def forbidden_strings(extra: list[str] = ()) -> list[str]:
    """The planted values, plus their forms on the wire (a basic-auth header)."""
    basic = base64.b64encode(f"{AIRBYTE_USER}:{PLANTED['AIRBYTE_PASSWORD']}".encode()).decode()
    return [*PLANTED.values(), basic, "PLANTED-", *extra]


def assert_clean(where: str, text: str, extra: list[str] = ()) -> None:
    for value in forbidden_strings(extra):
        assert value not in text, f"{value!r} leaked into {where}: ...{_around(text, value)}..."


def _around(text: str, value: str) -> str:
    i = text.find(value)
    return text[max(0, i - 200) : i + len(value) + 200]


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_text(root: Path) -> str:
    """Every file under ``root`` (databases and logs included), decoded leniently."""
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
    )


@pytest.fixture
def planted_env(tmp_path, monkeypatch):
    """Prod mode with every credential planted; catalog and Garage point at dead ports."""
    for name in list(os.environ):
        if name.startswith(("DATA_PLATFORM_", "AIRBYTE_", "GARAGE_", "ICEBERG_", "TRINO_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_PLATFORM_ENV", "prod")
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ICEBERG_REST_URI", f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv("GARAGE_S3_ENDPOINT", f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv("GARAGE_ACCESS_KEY_ID", "planted-key-id")
    monkeypatch.setenv("GARAGE_BUCKET", "lakehouse")
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.fixture
def airbyte(planted_env):
    server = FakeAirbyte(client_secret=PLANTED["AIRBYTE_CLIENT_SECRET"]).start()
    server.add_connection("app-db", ["users", "events"])
    server.next_polls = 0
    planted_env.setenv("AIRBYTE_URL", server.url)
    planted_env.setenv("AIRBYTE_WORKSPACE_ID", server.workspace_id)
    planted_env.setenv("AIRBYTE_CLIENT_ID", server.client_id)
    # The "Iceberg REST catalog" is this server too: it refuses the planted bearer token at
    # once (401), so the metadata step and every check fail fast with the catalog's error.
    planted_env.setenv("ICEBERG_REST_URI", f"{server.url}/iceberg")
    yield server
    server.stop()
    assert server.violations == []


def run(instance, **resource_overrides):
    """The raw assets and their checks, with a fast-failing Airbyte client."""
    resource = AirbyteSyncResource(
        poll_interval=0.02, request_retry_delay=0.01, request_max_retries=1, request_timeout=5,
        **resource_overrides,
    )  # fmt: skip
    return materialize(
        [airbyte_raw_sync, *RAW_CHECKS],
        selection=[s.key for s in STREAMS],
        instance=instance,
        resources={
            "airbyte": resource,
            "iceberg": IcebergCatalogResource(),
            "object_store": ObjectStoreResource(),
        },
        raise_on_error=False,
    )


def events_text(instance: DagsterInstance, run_id: str) -> str:
    """Every event of a run, serialized: messages, metadata values, error chains."""
    return "\n".join(serialize_value(entry) for entry in instance.all_logs(run_id))


def test_settings_never_show_a_planted_value(airbyte):
    settings = load_settings()
    assert settings.airbyte is not None
    assert_clean("repr(load_settings())", repr(settings) + str(settings))
    assert_clean("repr(airbyte settings)", repr(settings.airbyte))
    assert_clean("repr(object store settings)", repr(settings.object_store))
    assert_clean("repr(catalog settings)", repr(settings.catalog))


def test_no_planted_secret_in_any_run_output(airbyte, planted_env, tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))
    texts: dict[str, str] = {}
    outcomes = {}

    # 1. A successful sync (client credentials); the catalog is unreachable, so the metadata
    #    step and every check fail with the catalog's error message.
    result = run(instance)
    outcomes["sync"] = result.success
    texts["sync events"] = events_text(instance, result.run_id)
    assert airbyte.sync_starts()

    # 2. A job that fails in Airbyte.
    airbyte.next_final_status = "failed"
    airbyte.next_failure_message = "Postgres: password authentication failed for user dagster"
    result = run(instance)
    outcomes["failed job"] = result.success
    texts["failed job events"] = events_text(instance, result.run_id)

    # 3. Airbyte refuses the credentials (403 on the token request).
    airbyte.client_secret = "the-server-expects-another-secret"  # pragma: allowlist secret
    result = run(instance)
    outcomes["refused credentials"] = result.success
    texts["refused events"] = events_text(instance, result.run_id)
    airbyte.client_secret = PLANTED["AIRBYTE_CLIENT_SECRET"]

    # 4. Basic auth with the planted password.
    airbyte.basic_auth = (AIRBYTE_USER, PLANTED["AIRBYTE_PASSWORD"])
    airbyte.next_final_status = "succeeded"
    planted_env.delenv("AIRBYTE_CLIENT_ID")
    planted_env.delenv("AIRBYTE_CLIENT_SECRET")
    planted_env.setenv("AIRBYTE_USERNAME", AIRBYTE_USER)
    result = run(instance)
    outcomes["basic auth"] = result.success
    texts["basic auth events"] = events_text(instance, result.run_id)

    # 5. Airbyte unreachable.
    planted_env.setenv("AIRBYTE_URL", f"http://127.0.0.1:{dead_port()}")
    result = run(instance)
    outcomes["unreachable"] = result.success
    texts["unreachable events"] = events_text(instance, result.run_id)

    # 6. The landing sensor against an unreachable Garage with the planted secret key.
    context = build_sensor_context(resources={"object_store": ObjectStoreResource()},
                                   instance=instance)  # fmt: skip
    try:
        landing_sensor(context)
        texts["sensor"] = "no error"
    except Exception as exc:  # the error itself must be clean
        texts["sensor error"] = f"{exc!r} {exc} {exc.__cause__!r}"

    assert outcomes == {
        "sync": True,
        "failed job": False,
        "refused credentials": False,
        "basic auth": True,
        "unreachable": False,
    }
    assert "password authentication failed" in texts["failed job events"]
    out, err = capfd.readouterr()
    texts["captured stdout"] = out
    texts["captured stderr"] = err
    texts["python log records"] = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    instance.compute_log_manager.dispose()
    texts["instance files (event log db, compute logs)"] = files_text(tmp_path / "dagster")
    # The server's bearer token (handed out for the planted secret) is a credential too.
    for where, text in texts.items():
        assert_clean(where, text, extra=[airbyte.token])
    assert len(texts["sync events"]) > 1000  # the collection really holds the runs
    # The planted values were really in use: sent to the servers that needed them.
    sent = repr(airbyte.requests)
    assert PLANTED["AIRBYTE_CLIENT_SECRET"] in sent
    assert any(p.startswith("/iceberg/v1/config") for _, p, _, _ in airbyte.requests)


def test_no_planted_secret_from_a_cli_run(airbyte, tmp_path):
    """`dagster asset materialize` of the shipped definitions in a subprocess: its output and
    its DAGSTER_HOME (event log database, compute logs) hold no planted value."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ingestion.definitions",
         "--select", "raw/users,raw/events"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert "RUN_SUCCESS" in out.stdout + out.stderr, out.stderr[-3000:]
    assert airbyte.sync_starts()
    assert_clean("dagster CLI stdout", out.stdout, extra=[airbyte.token])
    assert_clean("dagster CLI stderr", out.stderr, extra=[airbyte.token])
    assert_clean("DAGSTER_HOME files", files_text(dagster_home), extra=[airbyte.token])


@pytest.mark.slow
def test_dbt_does_not_store_or_log_the_trino_password(planted_env, tmp_path):
    """The dbt profile reads TRINO_PASSWORD with env_var(): dbt must keep it out of the
    manifest, the partial-parse state, run results and its logs, also when Trino fails."""
    dbt = Path(sys.executable).with_name("dbt")
    if not dbt.exists():
        pytest.skip("dbt is not installed in this environment")
    env = {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TRINO_HOST": "127.0.0.1",
        "TRINO_PORT": str(dead_port()),
        "TRINO_HTTP_SCHEME": "https",  # the profile sends a password only over https (ldap)
    }
    common = ["--project-dir", str(ROOT / "dbt"), "--profiles-dir", str(ROOT / "dbt"),
              "--target", "trino", "--target-path", str(tmp_path / "target"),
              "--log-path", str(tmp_path / "logs")]  # fmt: skip
    outputs = []
    for command in (["parse"], ["--debug", "compile"]):
        out = subprocess.run(
            [str(dbt), *command, *common], env=env, capture_output=True, text=True, timeout=300
        )
        outputs.append(out.stdout + out.stderr)
    assert "Performance info" in outputs[0] or (tmp_path / "target" / "manifest.json").exists()
    assert (tmp_path / "target" / "manifest.json").exists()
    assert (tmp_path / "target" / "partial_parse.msgpack").exists()
    # The compile really tried Trino (and failed): the password was in use.
    assert "127.0.0.1" in outputs[1]
    for i, text in enumerate(outputs):
        assert_clean(f"dbt output {i}", text)
    assert_clean("dbt target/ and logs/", files_text(tmp_path))


@pytest.mark.slow
def test_transformation_run_in_prod_leaks_no_trino_password(planted_env, tmp_path, capfd):
    """The transformation location's dbt assets in prod mode against a dead Trino (the password
    in use, the run failing): no planted value in its events or output."""
    pytest.importorskip("transformation.project").ensure_manifest()  # fresh clone: dbt parse
    import transformation.definitions as transformation
    from transformation.assets import dbt_models

    # dbt's logs of this run go to tmp, where they are searched too; its artifacts go to the
    # run's own target folder under the home (transformation.dbt_workdir), kept on failure.
    planted_env.setenv("DBT_LOG_PATH", str(tmp_path / "dbt-logs"))
    planted_env.setenv("TRINO_HOST", "127.0.0.1")
    planted_env.setenv("TRINO_PORT", str(dead_port()))
    planted_env.setenv("TRINO_HTTP_SCHEME", "https")
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))
    result = materialize(
        [dbt_models], instance=instance, resources=transformation.defs.resources,
        raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    text = events_text(instance, result.run_id)
    assert "127.0.0.1" in text  # it really tried Trino
    out, err = capfd.readouterr()
    assert_clean("transformation run events", text)
    assert_clean("transformation run output", out + err)
    instance.compute_log_manager.dispose()
    assert_clean("transformation instance files", files_text(tmp_path / "dagster"))
    # What dbt wrote for this run (dagster-dbt's per-run target folder, dbt.log).
    run_targets = tmp_path / "home" / "dbt" / "target"
    assert any(run_targets.rglob("*.json")), "expected dbt's run artifacts"
    assert_clean("dbt target and logs of the run", files_text(run_targets)
                 + files_text(tmp_path / "dbt-logs"))  # fmt: skip
