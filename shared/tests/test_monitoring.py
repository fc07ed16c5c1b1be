"""shared.monitoring: off unless configured; metrics and failure alerts against real HTTP
endpoints (a local stand-in for the Pushgateway and for a chat webhook) and a real Dagster
instance with real runs."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

import shared.monitoring as mon
from shared.settings import Secret


class _StandInHTTP:
    """Local stand-in for the Pushgateway / a webhook: records requests, answers `status`."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((self.command, self.path, self.rfile.read(length)))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _handle

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http():
    servers = []

    def make(status: int = 200) -> _StandInHTTP:
        server = _StandInHTTP(status)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@dg.asset(key=["raw", "users"])
def users():
    """Test asset."""
    return 1


@dg.asset(key=["raw", "events"], deps=[users])
def events():
    """Test asset."""
    return 2


@dg.asset(key=["raw", "broken"])
def broken():
    """Test asset that fails."""
    raise ValueError("source table raw.broken is missing column id")


good_job = dg.define_asset_job("good_job", selection=[users, events])
bad_job = dg.define_asset_job("bad_job", selection=[broken])


def _defs(environ: dict[str, str]) -> dg.Definitions:
    return dg.Definitions.merge(
        dg.Definitions(assets=[users, events, broken], jobs=[good_job, bad_job]),
        mon.monitoring_definitions("ingestion", environ),
    )


# ------------------------------------------------------------------------------- switches


def test_no_sensor_unless_configured():
    assert list(mon.monitoring_definitions("ingestion", {}).sensors) == []
    blank = {mon.PUSHGATEWAY_ENV: " ", mon.WEBHOOK_ENV: ""}
    assert list(mon.monitoring_definitions("ingestion", blank).sensors) == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({mon.PUSHGATEWAY_ENV: "http://pg:9091"}, ["ingestion_prometheus_metrics"]),
        ({mon.WEBHOOK_ENV: "https://hooks.example/x"}, ["ingestion_run_failure_alert"]),
        (
            {mon.SLACK_TOKEN_ENV: "xoxb-1", mon.SLACK_CHANNEL_ENV: "#d"},
            ["ingestion_slack_run_failure_alert"],
        ),
    ],
)
def test_each_setting_enables_its_sensor(environ, expected):
    names = sorted(s.name for s in mon.monitoring_definitions("ingestion", environ).sensors)
    assert names == expected


def test_sensor_names_differ_per_location_so_locations_merge_in_one_process():
    env = {mon.PUSHGATEWAY_ENV: "http://pg:9091", mon.WEBHOOK_ENV: "https://hooks.example/x"}
    merged = dg.Definitions.merge(
        mon.monitoring_definitions("ingestion", env), mon.monitoring_definitions("analytics", env)
    )
    assert len({s.name for s in merged.sensors}) == 4


def test_credentials_are_secrets():
    config = mon.MonitoringConfig.from_env(
        {mon.WEBHOOK_ENV: "https://hooks.example/T0/B0/xyz", mon.SLACK_TOKEN_ENV: "xoxb-secret"}
    )
    assert "xyz" not in repr(config) and "xoxb" not in repr(config)
    assert config.webhook_url.reveal().endswith("/xyz")


# ---------------------------------------------------------------------------- pure metrics


def _run(run_id, job="good_job", status="SUCCESS", start=100.0, end=130.0, mats=()):
    return mon.FinishedRun(run_id, job, status, start, end, end + 1, tuple(mats))


def test_record_runs_counts_each_run_once_and_keeps_the_latest_values():
    state = mon.record_runs(
        mon.MetricsState(),
        [
            _run("a", mats=[("raw/users", 120.0)]),
            _run("b", status="FAILURE", start=200.0, end=260.0),
            _run("c", start=300.0, end=310.0, mats=[("raw/users", 305.0), ("raw/events", 306.0)]),
        ],
    )
    again = mon.record_runs(mon.MetricsState.from_cursor(state.to_cursor()), [_run("c")])
    assert again.runs == {"good_job\tSUCCESS": 2, "good_job\tFAILURE": 1}
    assert again.last_duration == {"good_job\tSUCCESS": 10.0, "good_job\tFAILURE": 60.0}
    assert again.last_finished["good_job\tSUCCESS"] == 310.0
    assert again.materializations == {"raw/users": 2, "raw/events": 1}
    assert again.last_materialization == {"raw/users": 305.0, "raw/events": 306.0}
    assert again.updated_after == 311.0


def test_cursor_moves_past_every_run_read_and_remembers_the_overlap():
    """Runs of other locations move the cursor too; runs within the overlap (storage may keep
    seconds only) are remembered by id, so re-reading the overlap counts nothing twice."""
    after, boundary = mon.advance_cursor(0.0, {}, [("x", 10.0), ("y", 20.0), ("z", 20.5)])
    assert after == 20.5 and boundary == {"y": 20.0, "z": 20.5}
    state = mon.record_runs(mon.MetricsState(), [], read=[("foreign", 42.0)])
    assert state.updated_after == 42.0 and state.runs == {}
    again = mon.record_runs(state, [_run("own", end=41.5)], read=[("foreign", 42.0)])
    assert again.runs == {"good_job\tSUCCESS": 1} and again.updated_after == 42.5


def test_unreadable_cursor_is_a_clear_error():
    with pytest.raises(mon.MonitoringError, match="cursor"):
        mon.MetricsState.from_cursor("{not json")


def test_registry_exposes_the_metrics():
    from prometheus_client import generate_latest

    state = mon.record_runs(mon.MetricsState(), [_run("a", mats=[("raw/users", 120.0)])])
    text = generate_latest(mon.build_registry(state)).decode()
    assert 'dagster_runs_total{job="good_job",status="SUCCESS"} 1.0' in text
    assert 'dagster_run_duration_seconds{job="good_job",status="SUCCESS"} 30.0' in text
    assert 'dagster_asset_materializations_total{asset_key="raw/users"} 1.0' in text
    assert (
        'dagster_asset_last_materialization_timestamp_seconds{asset_key="raw/users"} 120.0' in text
    )


# ----------------------------------------------------------------- sensors on real runs


def _tick(defs: dg.Definitions, instance, cursor=None):
    sensor = defs.resolve_sensor_def("ingestion_prometheus_metrics")
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=defs.get_repository_def()
    )
    result = sensor(context)
    return context.cursor, result


def test_metrics_sensor_pushes_runs_and_materializations(http, tmp_path):
    gateway = http()
    defs = _defs({mon.PUSHGATEWAY_ENV: gateway.url})
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs.resolve_job_def("good_job").execute_in_process(instance=instance)
        defs.resolve_job_def("bad_job").execute_in_process(instance=instance, raise_on_error=False)
        cursor, _ = _tick(defs, instance)
        assert len(gateway.requests) == 1
        method, path, body = gateway.requests[-1]
        assert (method, path) == ("PUT", "/metrics/job/dagster/location/ingestion")
        text = body.decode()
        assert 'dagster_runs_total{job="good_job",status="SUCCESS"} 1.0' in text
        assert 'dagster_runs_total{job="bad_job",status="FAILURE"} 1.0' in text
        assert 'dagster_asset_materializations_total{asset_key="raw/users"} 1.0' in text
        assert 'dagster_asset_materializations_total{asset_key="raw/events"} 1.0' in text

        # Nothing new: the same totals again (a run is never counted twice).
        cursor, _ = _tick(defs, instance, cursor)
        assert (
            'dagster_runs_total{job="good_job",status="SUCCESS"} 1.0'
            in gateway.requests[-1][2].decode()
        )

        defs.resolve_job_def("good_job").execute_in_process(instance=instance)
        _tick(defs, instance, cursor)
        text = gateway.requests[-1][2].decode()
        assert 'dagster_runs_total{job="good_job",status="SUCCESS"} 2.0' in text
        assert 'dagster_asset_materializations_total{asset_key="raw/users"} 2.0' in text


def test_metrics_cursor_stays_when_the_pushgateway_fails(http, tmp_path):
    gateway = http(status=500)
    defs = _defs({mon.PUSHGATEWAY_ENV: gateway.url})
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs.resolve_job_def("good_job").execute_in_process(instance=instance)
        with pytest.raises(mon.MonitoringError, match="Pushgateway"):
            _tick(defs, instance, cursor=None)
        assert gateway.requests, "the push was attempted"
        # Recovery: the next successful tick still counts the run.
        gateway.status = 200
        cursor, _ = _tick(defs, instance, cursor=None)
        assert mon.MetricsState.from_cursor(cursor).runs == {"good_job\tSUCCESS": 1}


def _failure_context(defs, instance, sensor_name):
    result = defs.resolve_job_def("bad_job").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    (record,) = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    event = record.event_log_entry.dagster_event
    return run, dg.build_run_status_sensor_context(
        sensor_name=sensor_name, dagster_event=event, dagster_instance=instance, dagster_run=run
    ).for_run_failure()


def test_failure_alert_posts_to_the_webhook(http, tmp_path):
    hook = http()
    env = {mon.WEBHOOK_ENV: hook.url + "/hooks/T0/B0/secret", mon.WEBSERVER_URL_ENV: "https://ui/"}
    defs = _defs(env)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run, context = _failure_context(defs, instance, "ingestion_run_failure_alert")
        defs.resolve_sensor_def("ingestion_run_failure_alert")(context)
    ((method, path, body),) = hook.requests
    assert (method, path) == ("POST", "/hooks/T0/B0/secret")
    text = json.loads(body)["text"]
    assert "`bad_job`" in text and "`ingestion`" in text and run.run_id in text
    assert f"https://ui/runs/{run.run_id}" in text


def test_failure_alert_posts_to_slack_through_dagster_slack(monkeypatch, tmp_path):
    """Slack alerts are dagster-slack's own run-failure sensor (issue 14 item 4), with our text
    and dagster-slack's link to the run."""
    from slack_sdk.web.client import WebClient

    posted = []
    monkeypatch.setattr(WebClient, "chat_postMessage", lambda self, **kwargs: posted.append(kwargs))
    defs = _defs(
        {
            mon.SLACK_TOKEN_ENV: "xoxb-test",
            mon.SLACK_CHANNEL_ENV: "#data-alerts",
            mon.WEBSERVER_URL_ENV: "https://ui",
        }
    )
    sensor = defs.resolve_sensor_def("ingestion_slack_run_failure_alert")
    assert type(sensor).__module__.startswith("dagster")  # the library's sensor, not ours
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run, context = _failure_context(defs, instance, "ingestion_slack_run_failure_alert")
        sensor(context)
    ((message,),) = [(p,) for p in posted]
    assert message["channel"] == "#data-alerts"
    assert "`bad_job`" in message["text"] and "raw.broken is missing column id" in message["text"]
    assert f"https://ui/runs/{run.run_id}" in json.dumps(message["blocks"])


def test_webhook_errors_never_reveal_the_url(http):
    hook = http(status=403)
    secret_url = hook.url + "/hooks/T0/B0/very-secret"
    with pytest.raises(mon.MonitoringError) as excinfo:
        mon.post_webhook(Secret(secret_url), {"text": "x"})
    assert "403" in str(excinfo.value) and "very-secret" not in str(excinfo.value)
    with pytest.raises(mon.MonitoringError) as excinfo:
        mon.post_webhook(Secret("http://127.0.0.1:9/hooks/very-secret"), {"text": "x"})
    assert "very-secret" not in str(excinfo.value)


def test_slack_without_channel_is_a_clear_error():
    with pytest.raises(mon.MonitoringError, match=mon.SLACK_CHANNEL_ENV):
        mon.monitoring_definitions("ingestion", {mon.SLACK_TOKEN_ENV: "xoxb-1"})


# ------------------------------------------------------------------------------- freshness


def test_freshness_checks_for_the_owned_assets_and_a_sensor_stopped_unless_alerting():
    keys = {users.key: dt.timedelta(hours=26), events.key: dt.timedelta(hours=2)}
    quiet = mon.monitoring_definitions("ingestion", {}, freshness=keys)
    check_keys = {k for c in quiet.asset_checks for k in c.check_keys}
    assert check_keys == {
        dg.AssetCheckKey(users.key, mon.FRESHNESS_CHECK_NAME),
        dg.AssetCheckKey(events.key, mon.FRESHNESS_CHECK_NAME),
    }
    (sensor,) = quiet.sensors
    assert sensor.name == "ingestion_freshness_checks"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    alerting = mon.monitoring_definitions(
        "ingestion", {mon.WEBHOOK_ENV: "https://hooks.example/x"}, freshness=keys
    )
    fresh = alerting.resolve_sensor_def("ingestion_freshness_checks")
    assert fresh.default_status == dg.DefaultSensorStatus.RUNNING


def test_a_stopped_sync_fails_its_freshness_check_on_the_sensor_schedule_and_alerts(http, tmp_path):
    """Issue 12 item 13: nothing runs the asset any more; the freshness sensor, on its own,
    requests the check; the check fails, which fails its run, and the run-failure alert (the
    webhook here) reports it, naming the asset."""
    hook = http()
    env = {mon.WEBHOOK_ENV: hook.url + "/hook"}
    defs = dg.Definitions.merge(
        dg.Definitions(assets=[users, events]),
        mon.monitoring_definitions(
            "ingestion", env, freshness={events.key: dt.timedelta(seconds=1)}
        ),
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        sync = dg.materialize([users, events, *defs.asset_checks], instance=instance)
        assert sync.success  # the check ran with the sync, and passed
        time.sleep(1.5)  # the sync stops
        tick = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
        request = defs.resolve_sensor_def("ingestion_freshness_checks")(tick)
        assert isinstance(request, dg.RunRequest)
        assert request.asset_check_keys == [dg.AssetCheckKey(events.key, mon.FRESHNESS_CHECK_NAME)]
        run = dg.materialize(
            [users, events, *defs.asset_checks],
            selection=dg.AssetSelection.checks(*request.asset_check_keys),
            instance=instance,
            raise_on_error=False,
        )
        assert not run.success
        (evaluation,) = run.get_asset_check_evaluations()
        assert not evaluation.passed
        record = instance.get_run_record_by_id(run.run_id)
        (failure,) = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        context = dg.build_run_status_sensor_context(
            sensor_name="ingestion_run_failure_alert",
            dagster_event=failure.event_log_entry.dagster_event,
            dagster_instance=instance,
            dagster_run=record.dagster_run,
        ).for_run_failure()
        defs.resolve_sensor_def("ingestion_run_failure_alert")(context)
    ((_, _, body),) = hook.requests
    text = json.loads(body)["text"]
    assert "raw/events" in text and "freshness_check" in text


def _foreign_runs(instance, n: int, location: str = "analytics") -> list[str]:
    """`n` finished runs of ANOTHER code location (same job name as ours: only the origin
    tells them apart), stored like the run launcher stores them."""
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )

    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=RegisteredCodeLocationOrigin(location),
            repository_name="__repository__",
        ),
        job_name="good_job",
    )
    ids = []
    for _ in range(n):
        run = instance.add_run(
            dg.DagsterRun(
                job_name="good_job",
                status=dg.DagsterRunStatus.SUCCESS,
                remote_job_origin=origin,
            )
        )
        ids.append(run.run_id)
    return ids


def test_metrics_cursor_moves_past_250_runs_of_other_locations(http, tmp_path):
    """Issue 12 item 12: runs of other locations are read (to move the cursor) but not counted;
    the location's own run that finished after 250 foreign ones is counted, and the cursor ends
    past every one of them (it used to freeze once 200 foreign runs followed it)."""
    gateway = http()
    defs = _defs({mon.PUSHGATEWAY_ENV: gateway.url})
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        defs.resolve_job_def("good_job").execute_in_process(instance=instance)
        cursor, _ = _tick(defs, instance)
        assert mon.MetricsState.from_cursor(cursor).runs == {"good_job\tSUCCESS": 1}

        foreign = _foreign_runs(instance, 250)
        defs.resolve_job_def("bad_job").execute_in_process(instance=instance, raise_on_error=False)
        last_update = max(
            r.update_timestamp.timestamp()
            for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=foreign))
        )
        for _ in range(3):  # a few ticks at most, however many foreign runs there are
            cursor, _ = _tick(defs, instance, cursor)
            state = mon.MetricsState.from_cursor(cursor)
            if "bad_job\tFAILURE" in state.runs:
                break
        assert state.runs == {"good_job\tSUCCESS": 1, "bad_job\tFAILURE": 1}
        assert state.updated_after >= last_update
        assert not set(foreign) & set(state.recent_runs), "foreign runs are never counted"
        text = gateway.requests[-1][2].decode()
        assert 'dagster_runs_total{job="good_job",status="SUCCESS"} 1.0' in text

        # And it keeps moving: a later own run is counted on the next tick.
        _foreign_runs(instance, 250)
        defs.resolve_job_def("good_job").execute_in_process(instance=instance)
        for _ in range(3):
            cursor, _ = _tick(defs, instance, cursor)
            state = mon.MetricsState.from_cursor(cursor)
            if state.runs.get("good_job\tSUCCESS") == 2:
                break
        assert state.runs == {"good_job\tSUCCESS": 2, "bad_job\tFAILURE": 1}
