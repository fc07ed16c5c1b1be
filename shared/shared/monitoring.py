"""Monitoring and alerting for a code location: Prometheus metrics, run-failure alerts, freshness.

Every location merges :func:`monitoring_definitions` into its ``defs``. Metrics and alerts are
OFF unless configured by environment (Helm values ``env`` / the location's Secret), so local work
and tests get no such sensor at all:

``DATA_PLATFORM_PUSHGATEWAY_URL``
    e.g. ``http://prometheus-pushgateway.monitoring:9091``. Adds the sensor
    ``<location>_prometheus_metrics``: on each tick it reads the runs of this location that
    finished since its cursor and their asset materializations (runs of other locations are
    read and skipped, and move the cursor too), and pushes (Pushgateway, grouping
    ``job="dagster", location=<location>``) ``dagster_runs_total{job,status}``,
    ``dagster_run_duration_seconds{job,status}`` and
    ``dagster_run_last_finished_timestamp_seconds{job,status}`` (last finished run),
    ``dagster_asset_materializations_total{asset_key}`` and
    ``dagster_asset_last_materialization_timestamp_seconds{asset_key}``. Totals live in the
    sensor's cursor, so they only grow across restarts; the cursor moves only after a push
    succeeded, so a Pushgateway outage loses nothing.
``DATA_PLATFORM_ALERT_WEBHOOK_URL`` (a credential: Secret)
    Adds the run-failure sensor ``<location>_run_failure_alert``, which POSTs
    ``{"text": "..."}`` (Slack incoming-webhook format, accepted by most chat tools) to the URL.
``DATA_PLATFORM_SLACK_TOKEN`` (Secret) and ``DATA_PLATFORM_SLACK_CHANNEL``
    Adds dagster-slack's run-failure sensor (``make_slack_on_run_failure_sensor``), named
    ``<location>_slack_run_failure_alert``. A token without a channel is an error naming the
    variable.
``DATA_PLATFORM_WEBSERVER_URL`` (optional)
    Base URL of the Dagster UI, for a link to the failed run in the alert.

Freshness (``freshness=`` of :func:`monitoring_definitions`): each location names the assets it
OWNS and how old each may get. Dagster's own freshness checks
(``build_last_update_freshness_checks``: the asset's last materialization is at most that old)
are declared for them, with ERROR severity and ``blocking``, and
``build_sensor_for_freshness_checks`` evaluates them on its own schedule, not only after a sync:
when syncs stop, the check fails in a run of its own, that run fails (a blocking check failing
fails its step), and the run-failure alerts above report it. The sensor
``<location>_freshness_checks`` runs by default where alerts are configured (production) and is
stopped otherwise (locally, a fresh lakehouse would only produce failed runs).

The environment is read when the definitions are built to decide whether a sensor exists (no
network); the webhook URL is read again at each tick; the Slack token is handed to
dagster-slack's client when the sensor is built (its API takes it then), and is never logged. ``prometheus-client`` and ``dagster-slack`` come with the ``shared[k8s]`` extra
that the location images install; they are imported only when a sensor runs.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

from shared.settings import Secret, env_str, environment

PUSHGATEWAY_ENV = "DATA_PLATFORM_PUSHGATEWAY_URL"
WEBHOOK_ENV = "DATA_PLATFORM_ALERT_WEBHOOK_URL"
SLACK_TOKEN_ENV = "DATA_PLATFORM_SLACK_TOKEN"
SLACK_CHANNEL_ENV = "DATA_PLATFORM_SLACK_CHANNEL"
WEBSERVER_URL_ENV = "DATA_PLATFORM_WEBSERVER_URL"

FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
#: Runs (of every location) read per page; a tick reads at most MAX_PAGES_PER_TICK pages and
#: the rest on the next ticks (the cursor only moves forward).
RUNS_PER_TICK = 200
MAX_PAGES_PER_TICK = 10
#: Seconds re-read before the cursor: run storage may keep update times to the second (SQLite),
#: so a run that ends in the same second as the last one read must still be found.
#: Runs read in that overlap are remembered by id (:attr:`MetricsState.boundary`).
OVERLAP_SECONDS = 1.0
#: Run ids remembered to never count a run twice (a run's update time can move after it ended).
REMEMBERED_RUNS = 500
HTTP_TIMEOUT_SECONDS = 10


class MonitoringError(RuntimeError):
    """Monitoring is misconfigured or its target (Pushgateway, webhook, Slack) failed."""


@dataclass(frozen=True)
class MonitoringConfig:
    """What the environment enables. Credentials are :class:`~shared.settings.Secret`."""

    pushgateway_url: str | None = None
    webhook_url: Secret | None = None
    slack_token: Secret | None = None
    slack_channel: str | None = None
    webserver_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MonitoringConfig:
        """Read through :mod:`shared.settings`, the one reader of the environment."""
        env = environment(environ)
        webhook, token = env_str(env, WEBHOOK_ENV), env_str(env, SLACK_TOKEN_ENV)
        return cls(
            pushgateway_url=env_str(env, PUSHGATEWAY_ENV),
            webhook_url=Secret(webhook) if webhook else None,
            slack_token=Secret(token) if token else None,
            slack_channel=env_str(env, SLACK_CHANNEL_ENV),
            webserver_url=env_str(env, WEBSERVER_URL_ENV),
        )

    @property
    def metrics_enabled(self) -> bool:
        return self.pushgateway_url is not None

    @property
    def alerts_enabled(self) -> bool:
        return self.webhook_url is not None or self.slack_token is not None


# ------------------------------------------------------------------------- metrics (pure)


@dataclass
class MetricsState:
    """Cumulative metrics of one location, kept in the metrics sensor's cursor (JSON)."""

    #: Update time of the newest run READ, of any location: runs of other locations are read
    #: too (run storage cannot filter by location) and must move the cursor past them, or
    #: RUNS_PER_TICK foreign runs after it would hide this location's runs forever.
    updated_after: float = 0.0
    #: run id -> update time of the runs read within OVERLAP_SECONDS before ``updated_after``
    #: (the overlap is read again; these are skipped).
    boundary: dict[str, float] = field(default_factory=dict)
    recent_runs: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)  # "job\tstatus" -> count
    last_duration: dict[str, float] = field(default_factory=dict)  # "job\tstatus" -> seconds
    last_finished: dict[str, float] = field(default_factory=dict)  # "job\tstatus" -> epoch s
    materializations: dict[str, int] = field(default_factory=dict)  # asset key -> count
    last_materialization: dict[str, float] = field(default_factory=dict)  # asset key -> epoch s

    @classmethod
    def from_cursor(cls, cursor: str | None) -> MetricsState:
        if not cursor:
            return cls()
        try:
            return cls(**json.loads(cursor))
        except (ValueError, TypeError) as exc:
            raise MonitoringError(f"unreadable metrics sensor cursor: {exc}") from exc

    def to_cursor(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass(frozen=True)
class FinishedRun:
    """What the metrics need of a finished run (plain data: easy to test)."""

    run_id: str
    job_name: str
    status: str
    start_time: float | None
    end_time: float | None
    updated_at: float
    materializations: tuple[tuple[str, float], ...] = ()  # (asset key, timestamp)


def advance_cursor(
    updated_after: float, boundary: Mapping[str, float], read: Iterable[tuple[str, float]]
) -> tuple[float, dict[str, float]]:
    """The cursor after reading runs ``(run id, update time)`` of ANY location: the newest update
    time read, and the runs read within :data:`OVERLAP_SECONDS` before it."""
    seen = dict(boundary)
    seen.update(read)
    newest = max([updated_after, *seen.values()])
    return newest, {r: t for r, t in seen.items() if t >= newest - OVERLAP_SECONDS}


def record_runs(
    state: MetricsState,
    runs: Iterable[FinishedRun],
    read: Iterable[tuple[str, float]] = (),
) -> MetricsState:
    """Add this location's finished runs (in update order) to the cumulative state; a run
    already counted is skipped. ``read`` is every run read ``(run id, update time)``, other
    locations' included: the cursor moves past all of them. Returns a new state."""
    runs = list(runs)
    new = MetricsState.from_cursor(state.to_cursor())
    new.updated_after, new.boundary = advance_cursor(
        new.updated_after,
        new.boundary,
        [*read, *((r.run_id, r.updated_at) for r in runs)],
    )
    recent = list(new.recent_runs)
    for run in runs:
        if run.run_id in recent:
            continue
        recent.append(run.run_id)
        key = f"{run.job_name}\t{run.status}"
        new.runs[key] = new.runs.get(key, 0) + 1
        if run.end_time is not None:
            new.last_finished[key] = run.end_time
            if run.start_time is not None:
                new.last_duration[key] = max(0.0, run.end_time - run.start_time)
        for asset_key, timestamp in run.materializations:
            new.materializations[asset_key] = new.materializations.get(asset_key, 0) + 1
            previous = new.last_materialization.get(asset_key, 0.0)
            new.last_materialization[asset_key] = max(previous, timestamp)
    new.recent_runs = recent[-REMEMBERED_RUNS:]
    return new


def build_registry(state: MetricsState):
    """A prometheus_client registry holding the state's metrics."""
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry()
    runs = Counter(
        "dagster_runs", "Finished runs of this location", ["job", "status"], registry=registry
    )
    duration = Gauge(
        "dagster_run_duration_seconds",
        "Duration of the last finished run",
        ["job", "status"],
        registry=registry,
    )
    finished = Gauge(
        "dagster_run_last_finished_timestamp_seconds",
        "End time of the last finished run",
        ["job", "status"],
        registry=registry,
    )
    for key, count in state.runs.items():
        job, status = key.split("\t")
        runs.labels(job=job, status=status).inc(count)
    for key, seconds in state.last_duration.items():
        job, status = key.split("\t")
        duration.labels(job=job, status=status).set(seconds)
    for key, timestamp in state.last_finished.items():
        job, status = key.split("\t")
        finished.labels(job=job, status=status).set(timestamp)
    materializations = Counter(
        "dagster_asset_materializations",
        "Asset materializations by runs of this location",
        ["asset_key"],
        registry=registry,
    )
    last = Gauge(
        "dagster_asset_last_materialization_timestamp_seconds",
        "Time of the last materialization of the asset",
        ["asset_key"],
        registry=registry,
    )
    for asset_key, count in state.materializations.items():
        materializations.labels(asset_key=asset_key).inc(count)
    for asset_key, timestamp in state.last_materialization.items():
        last.labels(asset_key=asset_key).set(timestamp)
    return registry


def push_metrics(gateway_url: str, location: str, state: MetricsState) -> None:
    """Replace this location's group on the Pushgateway with the state's metrics."""
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(
            gateway_url,
            job="dagster",
            grouping_key={"location": location},
            registry=build_registry(state),
            timeout=HTTP_TIMEOUT_SECONDS,
        )
    except (OSError, urllib.error.URLError) as exc:
        raise MonitoringError(f"push to the Pushgateway at {gateway_url} failed: {exc}") from exc


# --------------------------------------------------------------------------- alerts (pure)


def failure_message(
    location: str, job_name: str, run_id: str, error: str | None, webserver_url: str | None
) -> str:
    """The alert text of a failed run."""
    text = (
        f":red_circle: Dagster run failed: job `{job_name}` of location `{location}` (run {run_id})"
    )
    if error:
        text += f"\n{error.strip()[:1500]}"
    if webserver_url:
        text += f"\n{webserver_url.rstrip('/')}/runs/{run_id}"
    return text


def post_webhook(url: Secret, payload: Mapping[str, object]) -> None:
    """POST JSON to the alert webhook. Errors never include the URL (it is a credential)."""
    request = urllib.request.Request(
        url.reveal(),
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise MonitoringError(f"alert webhook answered HTTP {exc.code}") from None
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitoringError(f"alert webhook unreachable: {type(reason).__name__}") from None


# ------------------------------------------------------------------------------- sensors


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _location_name(context, default: str) -> str:
    origin = getattr(context, "code_location_origin", None)
    return origin.location_name if origin is not None else default


def _belongs(run: dg.DagsterRun, location: str, job_names: set[str] | None) -> bool:
    """Whether a run was launched from this location (every location has an `__ASSET_JOB`, so
    the job name alone is not enough when the origin is known)."""
    origin = run.remote_job_origin
    if origin is not None:
        return origin.location_name == location
    return job_names is None or run.job_name in job_names


def _finished_runs(
    context, location: str, state: MetricsState
) -> tuple[list[FinishedRun], list[tuple[str, float]]]:
    """This location's runs finished since the cursor, and every run read (any location).

    Run storage filters by update time, not by location: runs of the other locations are read
    and skipped, and returned in the second list so that the cursor moves past them.
    """
    instance = context.instance
    repository = getattr(context, "repository_def", None)
    job_names = set(repository.job_names) if repository is not None else None
    after, boundary = state.updated_after, dict(state.boundary)
    runs: list[FinishedRun] = []
    read: list[tuple[str, float]] = []
    limit = RUNS_PER_TICK
    for _ in range(MAX_PAGES_PER_TICK):
        since = after - OVERLAP_SECONDS if after else None
        records = instance.get_run_records(
            filters=RunsFilter(
                statuses=list(FINISHED),
                updated_after=datetime.fromtimestamp(since, tz=UTC) if since else None,
            ),
            limit=limit,
            order_by="update_timestamp",
            ascending=True,
        )
        fresh = [r for r in records if r.dagster_run.run_id not in boundary]
        page = [(r.dagster_run.run_id, r.update_timestamp.timestamp()) for r in records]
        read.extend(page)
        for record in fresh:
            run = record.dagster_run
            if _belongs(run, location, job_names):
                runs.append(_finished_run(instance, record))
        if len(records) < limit:
            break  # read up to now
        if not fresh:
            # A whole page of runs already read: more runs than a page share the overlap.
            limit *= 2
        after, boundary = advance_cursor(after, boundary, page)
    return runs, read


def _finished_run(instance, record) -> FinishedRun:
    run = record.dagster_run
    events = instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    materializations = tuple(
        (e.asset_key.to_user_string(), e.timestamp) for e in events if e.asset_key is not None
    )
    return FinishedRun(
        run_id=run.run_id,
        job_name=run.job_name,
        status=run.status.value,
        start_time=record.start_time,
        end_time=record.end_time,
        updated_at=record.update_timestamp.timestamp(),
        materializations=materializations,
    )


def _metrics_sensor(prefix: str, location: str, load: Callable[[], MonitoringConfig]):
    @dg.sensor(
        name=f"{prefix}_prometheus_metrics",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Pushes run and asset-materialization metrics of this location to the Prometheus "
            f"Pushgateway in {PUSHGATEWAY_ENV}."
        ),
    )
    def prometheus_metrics(context: dg.SensorEvaluationContext):
        """Count newly finished runs and their materializations; push; then move the cursor."""
        config = load()
        if not config.metrics_enabled:
            return dg.SkipReason(f"{PUSHGATEWAY_ENV} is not set")
        name = _location_name(context, location)
        state = MetricsState.from_cursor(context.cursor)
        runs, read = _finished_runs(context, name, state)
        new_state = record_runs(state, runs, read)
        push_metrics(config.pushgateway_url, name, new_state)
        context.update_cursor(new_state.to_cursor())
        return dg.SkipReason(f"pushed metrics ({len(runs)} newly finished runs)")

    return prometheus_metrics


#: Failed steps whose errors an alert quotes.
STEPS_IN_ALERT = 3


def _failure_text(context: dg.RunFailureSensorContext, location: str, webserver_url: str | None):
    """The alert of a failed run: the run's failure and its first failed steps' errors (a
    failed blocking check names its asset and check there, e.g. a freshness check)."""
    run = context.dagster_run
    errors = [context.failure_event.message] if context.failure_event else []
    for step in context.get_step_failure_events()[:STEPS_IN_ALERT]:
        error = step.step_failure_data.error if step.step_failure_data else None
        while error is not None and error.cause is not None:
            error = error.cause  # the user code's error, not Dagster's wrapper around it
        if error is not None:
            errors.append(f"{step.step_key}: {error.message.strip()}")
    return failure_message(
        location=_location_name(context, location),
        job_name=run.job_name,
        run_id=run.run_id,
        error="\n".join(e for e in errors if e) or None,
        webserver_url=webserver_url,
    )


def _webhook_alert_sensor(prefix: str, location: str, load: Callable[[], MonitoringConfig]):
    # Hand-written: no Dagster library posts to a generic webhook (dagster-slack needs a Slack
    # app token, dagster-msteams speaks Teams only); the sensor itself is Dagster's own
    # run_failure_sensor, only the POST is ours (post_webhook).
    @dg.run_failure_sensor(
        name=f"{prefix}_run_failure_alert",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Posts to the configured webhook when a run of this location fails.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext):
        """Send one alert per failed run of this location to the webhook."""
        config = load()
        if config.webhook_url:
            text = _failure_text(context, location, config.webserver_url)
            post_webhook(config.webhook_url, {"text": text})

    return run_failure_alert


def _slack_alert_sensor(prefix: str, location: str, config: MonitoringConfig):
    """dagster-slack's run-failure sensor, with this platform's message."""
    from dagster_slack import make_slack_on_run_failure_sensor

    if not config.slack_channel:
        raise MonitoringError(f"{SLACK_TOKEN_ENV} is set but {SLACK_CHANNEL_ENV} is not")
    return make_slack_on_run_failure_sensor(
        channel=config.slack_channel,
        slack_token=config.slack_token.reveal(),
        # The link to the run is dagster-slack's button (webserver_base_url), not in the text.
        text_fn=lambda context: _failure_text(context, location, None),
        name=f"{prefix}_slack_run_failure_alert",
        webserver_base_url=config.webserver_url,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


#: Name Dagster gives every last-update freshness check.
FRESHNESS_CHECK_NAME = "freshness_check"
#: How often the freshness sensor looks for checks that may have become overdue.
FRESHNESS_SENSOR_INTERVAL_SECONDS = 300


def freshness_definitions(
    prefix: str, freshness: Mapping[dg.AssetKey, timedelta], alerts_enabled: bool
) -> dg.Definitions:
    """Dagster's last-update freshness checks for ``freshness`` (asset key -> maximum age) and
    the sensor that evaluates them on its own schedule; see the module docstring."""
    by_age: dict[timedelta, list[dg.AssetKey]] = {}
    for key, max_age in freshness.items():
        by_age.setdefault(max_age, []).append(key)
    # Dagster 1.13 marks these builders superseded by freshness policies; they are chosen on
    # purpose (in open-source Dagster only they route a stale asset to the run-failure alerts),
    # so their notice is not shown on every load of every location.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.SupersessionWarning)
        return _freshness_definitions(by_age, prefix, alerts_enabled)


def _freshness_definitions(
    by_age: dict[timedelta, list[dg.AssetKey]], prefix: str, alerts_enabled: bool
) -> dg.Definitions:
    # One check definition per asset: a definition over several assets is one op, which Dagster
    # splits when its assets are in different steps (a daily and an unpartitioned model), naming
    # the copies in an order that differs between processes; the demo's runs then carried a job
    # snapshot the webserver did not serve ("may be a different version" on re-execution).
    checks = [
        check
        for max_age, keys in sorted(by_age.items())
        for key in sorted(keys, key=lambda k: k.to_user_string())
        for check in dg.build_last_update_freshness_checks(
            assets=[key],
            lower_bound_delta=max_age,
            severity=dg.AssetCheckSeverity.ERROR,
            # A failing blocking check fails its run, which the run-failure alerts report.
            blocking=True,
        )
    ]
    if not checks:
        return dg.Definitions()
    sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=checks,
        name=f"{prefix}_freshness_checks",
        minimum_interval_seconds=FRESHNESS_SENSOR_INTERVAL_SECONDS,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if alerts_enabled else dg.DefaultSensorStatus.STOPPED
        ),
    )
    return dg.Definitions(asset_checks=checks, sensors=[sensor])


def monitoring_definitions(
    location: str | None = None,
    environ: Mapping[str, str] | None = None,
    freshness: Mapping[dg.AssetKey, timedelta] | None = None,
) -> dg.Definitions:
    """Sensors for metrics and failure alerts of `location`, only those the environment enables,
    and freshness checks (with their sensor) for `freshness`: asset key -> maximum age, for the
    assets this location owns (see the module docstring).

    Merge into a location's definitions::

        defs = dg.Definitions.merge(defs, monitoring_definitions("ingestion"))

    `location` names the sensors (unique when several locations are merged in one process) and
    is the fallback location name when the sensor context has no code location origin.
    `environ` (default ``os.environ``) is for tests.
    """
    location = location or "data_platform"
    config = MonitoringConfig.from_env(environ)

    def load() -> MonitoringConfig:
        return MonitoringConfig.from_env(environ)

    prefix = _slug(location)
    sensors = []
    if config.metrics_enabled:
        sensors.append(_metrics_sensor(prefix, location, load))
    if config.webhook_url is not None:
        sensors.append(_webhook_alert_sensor(prefix, location, load))
    if config.slack_token is not None:
        sensors.append(_slack_alert_sensor(prefix, location, config))
    return dg.Definitions.merge(
        dg.Definitions(sensors=sensors),
        freshness_definitions(prefix, freshness or {}, config.alerts_enabled),
    )
