"""Prod-mode syncs through dagster-airbyte against the fake Airbyte server (tests/fake_airbyte)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import materialize

from ingestion.assets import airbyte_raw_sync
from ingestion.definitions import defs
from ingestion.resources import AirbyteSyncResource
from ingestion.streams import EVENTS, STREAMS, USERS
from shared.resources import IcebergCatalogResource, ObjectStoreResource

ALL_KEYS = [s.key for s in STREAMS]


def run_sync(keys=ALL_KEYS, iceberg=None, **overrides):
    """Materialize raw assets with a fast-polling client (tests only)."""
    resource = AirbyteSyncResource(
        **{
            "poll_interval": 0.02,
            "request_retry_delay": 0.01,
            "request_timeout": 5,
            **overrides,
        }
    )
    return materialize(
        [airbyte_raw_sync],
        selection=keys,
        resources={
            "airbyte": resource,
            "iceberg": iceberg or IcebergCatalogResource(),
            "object_store": ObjectStoreResource(),
        },
        raise_on_error=False,
    )


class FakeLakehouse(IcebergCatalogResource):
    """The Iceberg catalog the fake Airbyte's destination writes to (a SQL catalog in tmp)
    standing for prod's REST catalog (tests only)."""

    root: str

    def catalog(self):
        from fake_airbyte import sql_catalog

        return sql_catalog(Path(self.root))


@pytest.fixture
def lakehouse(prod_env, tmp_path, monkeypatch):
    """Prod with a lakehouse: the fake destination writes each successful job's rows to the
    table Airbyte's naming rules give, and the run reads the same catalog."""
    from fake_airbyte import sql_catalog

    monkeypatch.setenv("ICEBERG_REST_URI", "http://fake-lakehouse.invalid")
    monkeypatch.setenv("GARAGE_S3_ENDPOINT", "http://fake-garage.invalid")
    root = tmp_path / "lakehouse"
    prod_env.catalog = sql_catalog(root)
    return FakeLakehouse(root=str(root))


def materializations(result):
    return {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


def failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "expected a step failure"
    error = failures[0].step_failure_data.error
    return str(error.message) + "".join(str(c.message) for c in _causes(error))


def _causes(error):
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
        yield error


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- load safety -----------------------------------------------------------------------------


def test_location_loads_with_all_assets_when_airbyte_is_down(home, monkeypatch):
    """Import in a fresh interpreter with prod settings pointing at a dead port: every raw
    asset and check is there, and the import made no call (it would have failed)."""
    port = dead_port()
    env = {
        **os.environ,
        "DATA_PLATFORM_ENV": "prod",
        "AIRBYTE_URL": f"http://127.0.0.1:{port}",
        "AIRBYTE_WORKSPACE_ID": "00000000-0000-0000-0000-000000000000",
        "AIRBYTE_CLIENT_ID": "id",
        "AIRBYTE_CLIENT_SECRET": "secret",  # pragma: allowlist secret
    }
    code = (
        "from ingestion.definitions import defs\n"
        "repo = defs.get_repository_def()\n"
        "print(sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()))\n"
        "print(sorted(c.name for c in repo.asset_graph.asset_check_keys))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    keys, checks = out.stdout.strip().splitlines()
    assert keys == str(sorted(s.key.to_user_string() for s in STREAMS))
    for stream in STREAMS:
        assert f"raw_{stream.name}_primary_key_not_null" in checks
        assert f"raw_{stream.name}_schema_drift" in checks


def test_unreachable_airbyte_fails_the_run_naming_the_url(home, monkeypatch):
    port = dead_port()
    monkeypatch.setenv("DATA_PLATFORM_ENV", "prod")
    monkeypatch.setenv("AIRBYTE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AIRBYTE_WORKSPACE_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AIRBYTE_CLIENT_ID", "id")
    monkeypatch.setenv("AIRBYTE_CLIENT_SECRET", "s3cr3t-value")
    result = run_sync(request_max_retries=2)
    assert not result.success
    message = failure_message(result)
    assert f"127.0.0.1:{port}" in message
    assert "3 attempts" in message
    assert "s3cr3t-value" not in repr(result.all_events)


# ---- syncs ---------------------------------------------------------------------------------


def test_full_sync_starts_one_job_per_connection_and_records_metadata(prod_env):
    airbyte = prod_env
    connection = airbyte.add_connection("app-db to lakehouse", ["users", "events"])
    airbyte.rows_per_stream = 123
    result = run_sync()
    assert result.success, failure_message(result)
    assert airbyte.sync_starts() == [connection.connection_id]
    metadata = materializations(result)
    assert set(metadata) == {USERS.key, EVENTS.key}
    job_id = next(iter(airbyte.jobs))
    for meta in metadata.values():
        assert meta["airbyte_job_id"].value == job_id
        assert meta["airbyte_connection_id"].value == connection.connection_id
        assert meta["rows_committed"].value == 123
        assert meta["airbyte_job_rows_synced"].value == 246
    assert airbyte.client_secret not in repr(result.all_events)


def test_streams_in_two_connections_start_two_syncs(prod_env):
    airbyte = prod_env
    users = airbyte.add_connection("crm", ["users"])
    events = airbyte.add_connection("tracking", ["events"])
    airbyte.add_connection("unrelated", ["orders"])
    result = run_sync()
    assert result.success, failure_message(result)
    assert sorted(airbyte.sync_starts()) == sorted([users.connection_id, events.connection_id])


def test_connections_sync_concurrently_and_one_failure_keeps_the_others(prod_env):
    airbyte = prod_env
    airbyte.add_connection("crm", ["users"])
    airbyte.next_final_status = "failed"
    airbyte.next_failure_message = "Source HubSpot: rate limited for 24h"
    # The second connection's job will succeed.
    original_add_job = airbyte.add_job

    def add_job(connection, status, **kwargs):
        if connection.name == "tracking":
            kwargs.update(final_status="succeeded", failure_message=None)
        return original_add_job(connection, status, **kwargs)

    airbyte.add_job = add_job
    airbyte.add_connection("tracking", ["events"])
    result = run_sync()
    assert not result.success
    assert "rate limited for 24h" in failure_message(result)
    assert set(materializations(result)) == {EVENTS.key}
    # Both jobs were started before any was polled: they ran at the same time in Airbyte.
    order = [(m, p) for m, p, _, _ in airbyte.requests if "/jobs" in p and "/api/v1" not in p]
    posts = [i for i, (m, p) in enumerate(order) if m == "POST"]
    first_poll = next(i for i, (m, p) in enumerate(order) if m == "GET" and p.count("/") == 5)
    assert len(posts) == 2 and posts[1] < first_poll


def test_subset_selection_syncs_the_connection_once_and_reports_the_other_stream(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    result = run_sync(keys=[USERS.key])
    assert result.success, failure_message(result)
    assert len(airbyte.sync_starts()) == 1
    # raw/events was landed by the same sync: recorded as a runtime materialization.
    assert set(materializations(result)) == {USERS.key, EVENTS.key}


def test_connections_are_found_across_pages(prod_env):
    airbyte = prod_env
    for i in range(3):
        airbyte.add_connection(f"other-{i}", [f"stream_{i}"])
    target = airbyte.add_connection("app-db", ["users", "events"])
    result = run_sync(max_items_per_page=1)
    assert result.success, failure_message(result)
    pages = airbyte.calls("GET", "/api/public/v1/connections")
    assert [q.get("offset", ["0"])[0] for _, _, q, _ in pages] == ["0", "1", "2", "3"]
    # `next` links name localhost:8000; the client kept talking to the real server.
    assert airbyte.sync_starts() == [target.connection_id]


def test_5xx_and_timeouts_are_retried_with_backoff(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.fail("GET /connections", [503, 500])
    airbyte.fail("GET /jobs/{id}", [502, 504])
    airbyte.delay("GET /workspaces/{id}", 1.6)  # longer than the 1 s request timeout
    result = run_sync(request_timeout=1, request_max_retries=3)
    assert result.success, failure_message(result)
    assert len(airbyte.calls("GET", "/api/public/v1/connections")) == 3
    assert len(airbyte.calls("GET", "/api/public/v1/workspaces/")) == 2
    assert len(airbyte.sync_starts()) == 1


def test_retries_are_bounded_and_the_failure_names_the_url(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.fail("GET /connections", [503] * 10)
    result = run_sync(request_max_retries=2)
    assert not result.success
    assert len(airbyte.calls("GET", "/api/public/v1/connections")) == 3
    message = failure_message(result)
    assert f"{airbyte.url}/api/public/v1/connections" in message
    assert "HTTP 503" in message


def test_backoff_grows_exponentially_and_is_capped():
    from ingestion.airbyte import MAX_BACKOFF_SECONDS, RobustAirbyteClient

    client = RobustAirbyteClient(
        workspace_id="w", request_max_retries=3, request_retry_delay=1.0, request_timeout=1
    )
    delays = [client.backoff(n) for n in (1, 2, 3, 10)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4 and 3.2 <= delays[2] <= 4.8
    assert delays[3] <= MAX_BACKOFF_SECONDS * 1.2


def test_a_5xx_on_job_creation_does_not_start_a_second_sync(prod_env):
    """Airbyte created the job but the answer was lost (502): the client finds and follows
    that job instead of starting the connection's sync a second time."""
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.lose_next_job_answer = True
    result = run_sync()
    assert result.success, failure_message(result)
    assert len(airbyte.sync_starts()) == 1
    assert len(airbyte.jobs) == 1


def test_a_409_on_job_creation_follows_the_running_job(prod_env):
    """The job list did not show it yet, but Airbyte refuses a second sync (409): follow the
    job in progress."""
    airbyte = prod_env
    connection = airbyte.add_connection("app-db", ["users", "events"])
    airbyte.conflict_when_running = True
    original = airbyte.fail
    # First GET /jobs (list) fails with 404 -> none known; then the 409 makes us look again.
    job = airbyte.add_job(connection, "running", polls_left=2)
    original("GET /jobs", [404])
    result = run_sync()
    assert result.success, failure_message(result)
    assert len(airbyte.sync_starts()) == 1  # the refused one
    assert len(airbyte.jobs) == 1
    assert materializations(result)[EVENTS.key]["airbyte_job_id"].value == job.job_id


def test_a_server_that_cannot_list_jobs_still_syncs(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.list_jobs = False
    result = run_sync()
    assert result.success, failure_message(result)
    assert len(airbyte.sync_starts()) == 1


def test_wrong_workspace_fails_at_once_with_a_hint(prod_env, monkeypatch):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    monkeypatch.setenv("AIRBYTE_WORKSPACE_ID", "11111111-1111-1111-1111-111111111111")
    result = run_sync(request_max_retries=5)
    assert not result.success
    assert len(airbyte.calls("GET", "/api/public/v1/workspaces/")) == 1  # 4xx: no retry
    message = failure_message(result)
    assert "HTTP 404" in message and "AIRBYTE_WORKSPACE_ID" in message


def test_missing_stream_fails_naming_the_stream(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users"])
    airbyte.add_connection("events-disabled", [], unselected=["events"])
    result = run_sync()
    assert not result.success
    assert "'events'" in failure_message(result)
    assert airbyte.sync_starts() == []


def test_failed_job_fails_the_step_with_airbytes_message(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.next_final_status = "failed"
    airbyte.next_failure_message = "Postgres: password authentication failed for user dagster"
    result = run_sync()
    assert not result.success
    message = failure_message(result)
    assert "failed" in message
    assert "password authentication failed for user dagster" in message
    assert materializations(result) == {}


def test_job_cancelled_in_airbyte_fails_the_step(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.next_final_status = "cancelled"
    result = run_sync()
    assert not result.success
    assert "was cancelled" in failure_message(result)


@pytest.mark.parametrize("status", ["running", "queued", "pending"])
def test_a_running_sync_is_waited_for_not_started_twice(prod_env, status):
    airbyte = prod_env
    connection = airbyte.add_connection("app-db", ["users", "events"])
    job = airbyte.add_job(connection, status, polls_left=3, rows={"users": 5, "events": 7})
    result = run_sync()
    assert result.success, failure_message(result)
    assert airbyte.sync_starts() == []
    assert materializations(result)[EVENTS.key]["airbyte_job_id"].value == job.job_id


def test_terminated_run_cancels_the_airbyte_job(prod_env):
    """SIGINT is how Dagster interrupts a run's steps when the run is terminated."""
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.next_polls = 10_000  # never finishes on its own

    def interrupt_once_polling() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(airbyte.calls("GET", "/api/public/v1/jobs/")) >= 2:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=interrupt_once_polling, daemon=True).start()
    result = run_sync()
    assert not result.success
    deletes = airbyte.calls("DELETE", "/api/public/v1/jobs/")
    assert len(deletes) == 1
    job = next(iter(airbyte.jobs.values()))
    assert deletes[0][1].endswith(f"/jobs/{job.job_id}")
    assert job.status == "cancelled"


def test_terminated_run_cancels_every_job_it_started_and_no_other(prod_env):
    airbyte = prod_env
    crm = airbyte.add_connection("crm", ["users"])
    airbyte.add_connection("tracking", ["events"])
    airbyte.next_polls = 10_000
    foreign = airbyte.add_job(crm, "running", polls_left=10_000)  # started by someone else

    def interrupt_once_polling() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(airbyte.calls("GET", "/api/public/v1/jobs/")) >= 4:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=interrupt_once_polling, daemon=True).start()
    result = run_sync()
    assert not result.success
    deleted = {int(p.rsplit("/", 1)[-1]) for _, p, _, _ in airbyte.calls("DELETE", "/api/")}
    ours = {j.job_id for j in airbyte.jobs.values() if j.job_id != foreign.job_id}
    assert len(ours) == 1 and deleted == ours
    assert airbyte.jobs[foreign.job_id].status == "running"


def test_sync_works_with_the_public_api_only(prod_env):
    """No configuration API (/api/v1): connections come from the public API, a failed job
    still fails clearly (without Airbyte's detailed message), counts come from the job."""
    airbyte = prod_env
    airbyte.config_api = False
    connection = airbyte.add_connection("app-db", ["users", "events"])
    result = run_sync()
    assert result.success, failure_message(result)
    assert airbyte.sync_starts() == [connection.connection_id]
    meta = materializations(result)[USERS.key]
    assert meta["airbyte_job_rows_synced"].value == 200
    # Everything planning needs comes from the public connection list.
    assert airbyte.calls("GET", "/api/public/v1/connections")

    airbyte.next_final_status = "failed"
    result = run_sync()
    assert not result.success
    assert "failed: Airbyte gave no failure message" in failure_message(result)


def test_basic_auth(prod_env, monkeypatch):
    airbyte = prod_env
    airbyte.basic_auth = ("airbyte", "pa55word")
    airbyte.add_connection("app-db", ["users", "events"])
    monkeypatch.delenv("AIRBYTE_CLIENT_ID")
    monkeypatch.delenv("AIRBYTE_CLIENT_SECRET")
    monkeypatch.setenv("AIRBYTE_USERNAME", "airbyte")
    monkeypatch.setenv("AIRBYTE_PASSWORD", "pa55word")
    result = run_sync()
    assert result.success, failure_message(result)
    assert airbyte.calls("POST", "/api/public/v1/applications/token") == []
    assert "pa55word" not in repr(result.all_events)


def test_shipped_definitions_sync_in_prod_with_checks(prod_env):
    """The judged path: the location's own `defs` (default resources, checks included), prod
    variables for Airbyte only: one sync per connection, run succeeds, checks say why they
    could not read the tables."""
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.next_polls = 0  # finished at the first poll: no 10 s poll interval wait
    job = defs.get_implicit_global_asset_job_def()
    result = job.execute_in_process(asset_selection=ALL_KEYS, raise_on_error=False)
    assert result.success
    assert len(airbyte.sync_starts()) == 1
    evaluations = result.get_asset_check_evaluations()
    raw = [e for e in evaluations if e.check_name.startswith("raw_")]
    assert raw and all(not e.passed for e in raw)
    assert all(e.severity.value == "WARN" for e in raw)
    # Dagster's freshness checks ran with the sync (the assets were just materialized).
    fresh = [e for e in evaluations if e.check_name == "freshness_check"]
    assert len(fresh) == len(ALL_KEYS) and all(e.passed for e in fresh)
    assert airbyte.client_secret not in repr(result.all_events)


def test_fake_server_payloads_are_checked_against_the_spec(openapi_spec):
    """The stand-in's validator rejects an off-spec payload (so its checks are real)."""
    from fake_airbyte import validate
    from jsonschema import ValidationError

    validate("JobCreateRequest", {"connectionId": "c", "jobType": "sync"})
    with pytest.raises(ValidationError):
        validate("JobResponse", {"jobId": 1, "status": "exploded", "jobType": "sync"})
    with pytest.raises(ValidationError):
        # What dagster-airbyte sends without our override: no grant_type.
        validate("ApplicationTokenRequestWithGrant", {"client_id": "a", "client_secret": "b"})


# ---- Retry-After, API base URL, outages, error classification (issue 12 items 3, 4, 6, 7) ----


def _gaps(airbyte, method, prefix):
    """Seconds between consecutive requests ``method prefix...`` received by the server."""
    times = [
        t
        for (m, p, _, _), t in zip(airbyte.requests, airbyte.request_times, strict=True)
        if m == method and p.startswith(prefix)
    ]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(prod_env, status):
    """The server asks to wait 1 s; our own backoff would retry after 0.01 s."""
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.fail("GET /connections", [status], retry_after="1")
    airbyte.fail("GET /jobs/{id}", [status], retry_after="1")
    result = run_sync(request_retry_delay=0.01)
    assert result.success, failure_message(result)
    (gap,) = _gaps(airbyte, "GET", "/api/public/v1/connections")
    assert gap >= 0.95
    assert max(_gaps(airbyte, "GET", "/api/public/v1/jobs/")) >= 0.95


def test_retry_after_is_bounded(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.fail("GET /connections", [429], retry_after="3600")
    started = time.monotonic()
    result = run_sync(request_retry_delay=0.01, max_retry_after=0.5)
    assert result.success, failure_message(result)
    (gap,) = _gaps(airbyte, "GET", "/api/public/v1/connections")
    assert 0.45 <= gap < 3
    assert time.monotonic() - started < 60


def test_retry_after_as_an_http_date():
    import email.utils

    import requests

    from ingestion.airbyte import retry_after_seconds

    response = requests.Response()
    response.headers["Retry-After"] = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(response) <= 31
    response.headers["Retry-After"] = "7"
    assert retry_after_seconds(response) == 7
    response.headers["Retry-After"] = "soon"
    assert retry_after_seconds(response) is None


def test_airbyte_url_given_as_the_public_api_base_works(prod_env, monkeypatch):
    """Airbyte's docs show the API base (`.../api/public/v1`): it is accepted as AIRBYTE_URL."""
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    monkeypatch.setenv("AIRBYTE_URL", f"{airbyte.url}/api/public/v1/")
    result = run_sync()
    assert result.success, failure_message(result)
    assert len(airbyte.sync_starts()) == 1
    assert not [r for r in airbyte.requests if "/api/public/v1/api/" in r[1]]


def test_airbyte_url_pointing_into_the_api_says_what_to_set(prod_env, monkeypatch):
    airbyte = prod_env
    monkeypatch.setenv("AIRBYTE_URL", f"{airbyte.url}/api/public")
    result = run_sync()
    assert not result.success
    message = failure_message(result)
    assert "AIRBYTE_URL" in message and "/api/public/v1" in message
    assert "credentials" not in message.lower()
    assert airbyte.requests == []


def test_a_short_api_outage_while_following_a_job_does_not_cancel_it(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.next_polls = 5
    airbyte.outage_after("GET /jobs/{id}", 2, seconds=1.5)
    result = run_sync(request_max_retries=1, request_retry_delay=0.05, max_api_outage=30)
    assert result.success, failure_message(result)
    assert airbyte.dropped, "the outage never happened"
    assert airbyte.calls("DELETE", "/api/") == []
    (job,) = airbyte.jobs.values()
    assert job.status == "succeeded"
    assert materializations(result)[USERS.key]["airbyte_job_id"].value == job.job_id


def test_a_long_api_outage_fails_the_step_but_leaves_the_job_running(prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    airbyte.next_polls = 50
    airbyte.outage_after("GET /jobs/{id}", 2, seconds=4)
    result = run_sync(request_max_retries=1, request_retry_delay=0.05, max_api_outage=0.5)
    assert not result.success
    message = failure_message(result)
    assert "unreachable for more than" in message and "NOT cancelled" in message
    assert not [r for r in airbyte.dropped if r.startswith("DELETE")]
    assert airbyte.calls("DELETE", "/api/") == []
    (job,) = airbyte.jobs.values()
    assert job.status == "running"


def test_errors_are_classified_by_status_not_by_message_text(airbyte):
    """A 404 whose text mentions a 5xx is still a client error; a 503 that never heals is
    transient; a 409 on job creation is recognised by its status."""
    from ingestion.airbyte import AirbyteRequestError, RobustAirbyteClient

    client = RobustAirbyteClient(
        rest_api_base_url=f"{airbyte.url}/api/public/v1",
        configuration_api_base_url=f"{airbyte.url}/api/v1",
        workspace_id=airbyte.workspace_id,
        client_id=airbyte.client_id,
        client_secret=airbyte.client_secret,
        request_max_retries=1,
        request_retry_delay=0.01,
        request_timeout=5,
    )
    url = f"{airbyte.url}/api/public/v1/destinations/{airbyte.destination_id}"
    airbyte.fail("GET /destinations/{id}", [404])
    with pytest.raises(AirbyteRequestError) as err:
        client._single_request("GET", url)
    assert err.value.status == 404 and err.value.is_client_error and not err.value.transient
    airbyte.fail("GET /destinations/{id}", [503, 503])
    with pytest.raises(AirbyteRequestError) as err:
        client._single_request("GET", url)
    assert err.value.status == 503 and err.value.transient and not err.value.is_client_error
    airbyte.fail("GET /destinations/{id}", [429, 429])
    with pytest.raises(AirbyteRequestError) as err:
        client._single_request("GET", url)
    assert err.value.status == 429 and not err.value.is_client_error
    # The destination is only metadata: a 4xx is tolerated, whatever its text says.
    airbyte.fail("GET /destinations/{id}", [404])
    assert client.get_destination_details(airbyte.destination_id)["destinationType"] == "unknown"
    airbyte.fail("GET /destinations/{id}", [503, 503])
    with pytest.raises(AirbyteRequestError):
        client.get_destination_details(airbyte.destination_id)


# ---- tables actually written: prefix, namespace, snapshots (issue 12 item 1) ------------------


def test_a_sync_records_the_snapshot_its_job_committed(lakehouse, prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    first = run_sync(iceberg=lakehouse)
    assert first.success, failure_message(first)
    second = run_sync(iceberg=lakehouse)
    assert second.success, failure_message(second)
    catalog = lakehouse.catalog()
    for stream in STREAMS:
        table = catalog.load_table(stream.identifier)
        meta = materializations(second)[stream.key]
        assert meta["snapshot_id"].value == str(table.current_snapshot().snapshot_id)
        assert meta["snapshot_id"] != materializations(first)[stream.key]["snapshot_id"]
        assert meta["row_count"].value == 200


@pytest.mark.parametrize(
    ("settings", "actual"),
    [
        ({"prefix": "airbyte_"}, "raw.airbyte_users"),
        ({"namespace_definition": "custom_format", "namespace_format": "lake"}, "lake.users"),
        ({"namespace_definition": "source", "source_namespace": "public"}, "public.users"),
        (
            {
                "namespace_definition": "custom_format",
                "namespace_format": "${SOURCE_NAMESPACE}_raw",
                "source_namespace": "crm",
            },
            "crm_raw.users",
        ),
    ],
)
def test_a_connection_writing_elsewhere_fails_before_any_sync(lakehouse, prod_env, settings,
                                                              actual):  # fmt: skip
    airbyte = prod_env
    airbyte.add_connection("events", ["events"])
    airbyte.add_connection("crm", ["users"], **settings)
    result = run_sync(iceberg=lakehouse)
    assert not result.success
    message = failure_message(result)
    assert "'crm'" in message and "'users'" in message
    assert actual in message and "raw.users" in message
    assert airbyte.sync_starts() == []
    assert materializations(result) == {}


@pytest.mark.parametrize(
    "settings",
    [
        {"namespace_definition": "source"},  # the source has no namespace: destination's
        {"namespace_definition": "source", "source_namespace": "raw"},
        {"namespace_definition": "custom_format", "namespace_format": "raw"},
        {
            "namespace_definition": "custom_format",
            "namespace_format": "${SOURCE_NAMESPACE}",
            "source_namespace": "raw",
        },
    ],
)
def test_namespace_settings_that_land_in_raw_are_accepted(lakehouse, prod_env, settings):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"], **settings)
    result = run_sync(iceberg=lakehouse)
    assert result.success, failure_message(result)
    assert lakehouse.catalog().load_table("raw.users").current_snapshot() is not None
    assert "snapshot_id" in materializations(result)[USERS.key]


@pytest.mark.parametrize("config_api", [True, False])
def test_a_job_that_wrote_another_table_never_records_the_old_snapshot(
    lakehouse, prod_env, config_api
):
    """The destination's default namespace is not in its configuration, so the mismatch is
    only visible afterwards: the job succeeded, raw.users kept its previous snapshot. The run
    fails naming the connection, stream and tables, and records nothing for them."""
    airbyte = prod_env
    airbyte.config_api = config_api  # False: no per-stream counts, only the job's total
    airbyte.add_connection("app-db", ["users", "events"])
    assert run_sync(iceberg=lakehouse).success  # raw.* now have a snapshot
    catalog = lakehouse.catalog()
    old = catalog.load_table("raw.users").current_snapshot().snapshot_id
    airbyte.destination_shows_namespace = False
    airbyte.destination_namespace = "landing"  # where the destination really writes now
    result = run_sync(iceberg=lakehouse)
    assert not result.success
    message = failure_message(result)
    assert "'app-db'" in message and "raw.users" in message
    assert str(old) in message  # the snapshot it would have recorded
    assert materializations(result) == {}
    assert catalog.load_table("landing.users").current_snapshot() is not None


def test_a_job_that_committed_nothing_is_recorded_without_a_snapshot(lakehouse, prod_env):
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    assert run_sync(iceberg=lakehouse).success
    airbyte.rows_per_stream = 0  # an incremental sync with nothing new: no commit
    result = run_sync(iceberg=lakehouse)
    assert result.success, failure_message(result)
    meta = materializations(result)[USERS.key]
    assert "snapshot_id" not in meta
    assert "committed no record" in meta["iceberg_snapshot"].value


def test_table_naming_follows_airbytes_rules():
    from ingestion.airbyte import ConnectionInfo

    def info(**kw):
        return ConnectionInfo("c", "conn", "d", (("users", kw.pop("source_ns", None)),), **kw)

    assert info().table_for("users", "raw") == ("raw", "users")
    assert info(prefix="ab_").table_for("users", "raw") == ("raw", "ab_users")
    assert info(namespace_definition="source").table_for("users", "raw") == ("raw", "users")
    assert info(namespace_definition="source", source_ns="pg").table_for("users", "raw") == (
        "pg",
        "users",
    )
    custom = info(namespace_definition="custom_format", namespace_format="x_${SOURCE_NAMESPACE}")
    assert custom.table_for("users", "raw") == ("x_", "users")
    assert info().table_for("users", None) == (None, "users")


def test_written_by_job_needs_a_new_snapshot_committed_after_the_job_started():
    import datetime as dt

    from ingestion.airbyte import SnapshotState, written_by_job

    start = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    at = int(start.timestamp() * 1000)
    assert written_by_job(SnapshotState(1, at - 1), SnapshotState(2, at + 5), start)
    assert written_by_job(SnapshotState(None), SnapshotState(2, at + 5), start)
    assert not written_by_job(SnapshotState(1, at), SnapshotState(1, at), start)
    assert not written_by_job(None, SnapshotState(2, at), start)  # before unknown
    assert not written_by_job(SnapshotState(1), SnapshotState(None), start)
    day_before = at - 24 * 3600 * 1000
    assert not written_by_job(SnapshotState(1), SnapshotState(2, day_before), start)


# ---- requests per run (issue 12 item 5) -------------------------------------------------------


def test_requests_per_run_do_not_grow_with_the_workspace(prod_env):
    """102 connections, 2 of them hold the streams: the run lists connections (2 pages of
    100) and reads one destination, then works on the 2 connections only."""
    airbyte = prod_env
    for i in range(100):
        airbyte.add_connection(f"other-{i}", [f"stream_{i}"])
    crm = airbyte.add_connection("crm", ["users"])
    tracking = airbyte.add_connection("tracking", ["events"])
    airbyte.next_polls = 0
    result = run_sync()
    assert result.success, failure_message(result)
    routes = [f"{m} {p}" for m, p, _, _ in airbyte.requests]
    assert len(airbyte.calls("GET", "/api/public/v1/connections")) == 2  # pages
    assert not airbyte.calls("POST", "/api/v1/connections/get")
    assert len(airbyte.calls("GET", "/api/public/v1/destinations/")) == 1
    ours = {crm.connection_id, tracking.connection_id}
    for _, path, query, body in airbyte.requests:
        for cid in (query or {}).get("connectionId", []) + [(body or {}).get("connectionId")]:
            assert cid in ours | {None}, path
    # token, workspace, 2 pages, destination; per connection: job list, start, poll, stats.
    assert len(routes) == 1 + 1 + 2 + 1 + 2 * 4, routes


# ---- Airbyte v2 destination columns (issue 12 item 2) -----------------------------------------


@pytest.mark.parametrize("meta_as_struct", [True, False])
def test_schema_drift_passes_on_a_v2_prod_sync(lakehouse, prod_env, meta_as_struct):
    """The fake destination writes `_airbyte_generation_id` and `_airbyte_meta` (a struct, or
    JSON text): the raw checks accept the tables as they are."""
    from ingestion.checks import check_schema_drift

    airbyte = prod_env
    airbyte.meta_as_struct = meta_as_struct
    airbyte.add_connection("app-db", ["users", "events"])
    result = run_sync(iceberg=lakehouse)
    assert result.success, failure_message(result)
    for stream in STREAMS:
        schema = lakehouse.load_table(stream.identifier).schema().as_arrow()
        assert "_airbyte_generation_id" in schema.names
        evaluation = check_schema_drift(stream, lakehouse)
        assert evaluation.passed, evaluation.description


def test_schema_drift_accepts_airbytes_column_variants_and_nothing_else():
    import pyarrow as pa

    from ingestion.checks import schema_drift

    expected = USERS.schema
    meta_struct = pa.struct([("sync_id", pa.int64()), ("changes", pa.list_(pa.string()))])
    v2 = pa.schema([f.with_type(meta_struct) if f.name == "_airbyte_meta" else f
                    for f in expected])  # fmt: skip
    assert not schema_drift(v2, expected).has_drift
    older = pa.schema([f for f in expected if f.name != "_airbyte_generation_id"])
    assert not schema_drift(older, expected).has_drift
    # A source column changing type, or dropped, is still drift.
    changed = pa.schema([f.with_type(pa.int64()) if f.name == "plan" else f for f in expected])
    assert schema_drift(changed, expected).type_changes == {"plan": "string -> int64"}
    dropped = pa.schema([f for f in expected if f.name != "email"])
    assert schema_drift(dropped, expected).dropped == ["email"]


def test_destination_default_namespaces_are_found_where_destinations_keep_them():
    from ingestion.airbyte import default_namespace

    assert default_namespace({"catalog_type": {"catalog_type": "REST", "namespace": "raw"}}) == (
        "raw"
    )
    assert default_namespace({"catalog_type": {"database_name": "raw"}}) == "raw"
    assert default_namespace({"catalog_config": {"database": "raw"}}) == "raw"
    assert default_namespace({"schema": "public"}) is None  # a SQL warehouse: not a guess
    assert default_namespace({"catalog_type": "REST"}) is None
    assert default_namespace({}) is None


def test_a_job_already_running_is_verified_by_its_commit_time(lakehouse, prod_env):
    """Followed, not started: the table may have moved before the run looked, so the check is
    "committed after the job started"; the snapshot it committed is recorded."""
    airbyte = prod_env
    connection = airbyte.add_connection("app-db", ["users", "events"])
    airbyte.add_job(connection, "running", polls_left=2, rows={"users": 5, "events": 7})
    result = run_sync(iceberg=lakehouse)
    assert result.success, failure_message(result)
    assert airbyte.sync_starts() == []
    table = lakehouse.load_table("raw.events")
    meta = materializations(result)[EVENTS.key]
    assert meta["snapshot_id"].value == str(table.current_snapshot().snapshot_id)
    assert meta["row_count"].value == 7


def test_airbyte_url_on_a_wrong_path_names_the_url_to_check(prod_env, monkeypatch):
    """Nothing is served under /airbyte: like Airbyte, the fake refuses the call (401) before
    routing it, so the message names AIRBYTE_URL beside the credentials."""
    airbyte = prod_env
    airbyte.add_connection("app-db", ["users", "events"])
    monkeypatch.setenv("AIRBYTE_URL", f"{airbyte.url}/airbyte")
    result = run_sync()
    assert not result.success
    message = failure_message(result)
    assert "HTTP 401" in message
    assert "AIRBYTE_URL: the Airbyte server root" in message and "/api/public/v1" in message


def test_a_404_on_the_token_endpoint_says_to_check_the_url(airbyte):
    from ingestion.airbyte import AirbyteRequestError, RobustAirbyteClient

    client = RobustAirbyteClient(
        rest_api_base_url=f"{airbyte.url}/api/public/v1",
        workspace_id=airbyte.workspace_id,
        client_id=airbyte.client_id,
        client_secret=airbyte.client_secret,
        request_max_retries=0,
        request_retry_delay=0.01,
        request_timeout=5,
    )
    airbyte.fail("POST /applications/token", [404])
    with pytest.raises(AirbyteRequestError) as err:
        client.validate_workspace_id()
    assert err.value.status == 404
    assert "Check AIRBYTE_URL" in str(err.value) and "CLIENT_SECRET" not in str(err.value)
