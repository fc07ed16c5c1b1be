"""The deployment's Dagster instance storage, with the locked dependencies, against a real
PostgreSQL server (a throwaway one started by ``pgserver``, the dev dependency the benchmark
uses; PostgreSQL itself, not a stand-in).

The Helm chart writes the instance's ``storage.postgres.postgres_db`` (username, password from
the environment, hostname, port, database, params); every pod that opens the instance (webserver,
daemon, run workers in our location images) connects through dagster-postgres and SQLAlchemy.
With SQLAlchemy 2.1 a bare ``postgresql://`` URL means psycopg 3, which no image installs: this
test is what keeps that pin (shared's ``k8s`` extra) honest.
"""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, DagsterRunStatus, asset, materialize

from data_platform.bench_postgres import throwaway_postgres


@asset
def a_number() -> int:
    """One materialization, enough to write a run and its events."""
    return 1


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    try:
        with throwaway_postgres(tmp_path_factory.mktemp("pg") / "data") as url:
            yield url
    except RuntimeError as error:  # pragma: no cover - e.g. no useradd where run as root
        pytest.skip(f"no PostgreSQL server could be started here: {error}")


def _postgres_db_config(url: str) -> dict:
    """The ``postgres_db`` block as the chart renders it, pointed at the throwaway server (its
    Unix socket, passed as libpq's ``host`` parameter)."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(url)
    socket_dir = parse_qs(parsed.query)["host"][0]
    return {
        "username": "postgres",
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": "localhost",
        "db_name": parsed.path.lstrip("/"),
        "port": 5432,
        "params": {"host": socket_dir},
    }


def test_the_deployments_storage_config_stores_runs_and_events_in_postgres(
    postgres_url, tmp_path, monkeypatch
):
    # trust authentication: any password is accepted; the chart reads it from a Secret.
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-by-trust-auth")  # pragma: allowlist secret
    overrides = {"storage": {"postgres": {"postgres_db": _postgres_db_config(postgres_url)}}}
    with DagsterInstance.local_temp(tempdir=str(tmp_path), overrides=overrides) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        engine = instance.event_log_storage._engine  # noqa: SLF001 - the driver is the point
        assert engine.dialect.driver == "psycopg2"
        result = materialize([a_number], instance=instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        materialization = instance.get_latest_materialization_event(a_number.key)
        assert materialization is not None and materialization.run_id == result.run_id
