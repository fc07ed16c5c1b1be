"""``data-platform demo``: materialize the whole cross-location graph locally.

Runs in process against a Dagster instance kept under ``DATA_PLATFORM_HOME/dagster``, with each
location's own ``defs``, what a deployment would run: the raw syncs (the ingestion schedule),
then what the automation conditions request (``shared.automation``), evaluated on the
workspace-wide graph tick after tick like the daemon does, until nothing more is requested. So
the daily assets run for the days the syncs changed (plus the late-data lookback): every day on a
fresh home, the new day on a demo with one more day (see :class:`DemoAutomation`). Each requested
day range of a daily asset is one run (its backfill policy is single-run).

Each run is a run of its code location (the locations of ``workspace.yaml``, created from the
location's job as the UI creates it, see :mod:`data_platform.launch`), on the instance
``data-platform ui`` opens: the UI shows the demo's runs, materializations, checks and
partitions.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_platform.graph import (
    WORKSPACE_FILE,
    RequestedRun,
    build_location_graph,
    load_location_defs,
    plan_requested_runs,
    plan_runs,
    sync_runs,
    workspace_definitions,
    workspace_locations,
)
from data_platform.instance import PID_TAG, ensure_instance, open_instance
from data_platform.launch import WorkspaceLauncher

if TYPE_CHECKING:
    from dagster import AssetCheckKey, AssetKey

# Dagster's run tags for a partition range (what a single-run backfill sets); public tag names,
# though dagster exports the constants only from a private module.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


#: Exit codes of ``data-platform demo`` (documented in the README).
EXIT_OK = 0  # the platform ran; failed WARN checks, if any, are listed as warnings
EXIT_FAILED = 1  # a run failed (or a blocking check failed it), or the settings are wrong
EXIT_NEEDS_ATTENTION = 2  # every run succeeded, but an ERROR check failed or a batch was rejected


class DemoFailed(RuntimeError):
    """A run of the demo failed; the message names the run and the failing steps."""


@dataclass
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str
    description: str = ""


@dataclass
class DemoReport:
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: Landing batches loaded before the graph ran: {batch, success, message}.
    landing: list[dict[str, Any]] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)

    @property
    def warnings(self) -> list[CheckOutcome]:
        """Failed checks of severity WARN: listed, but the platform ran."""
        return [c for c in self.checks if not c.passed and c.severity != "ERROR"]

    @property
    def errors(self) -> list[CheckOutcome]:
        """Failed checks of severity ERROR (a blocking one also fails its run)."""
        return [c for c in self.checks if not c.passed and c.severity == "ERROR"]

    @property
    def rejected_batches(self) -> list[dict[str, Any]]:
        return [b for b in self.landing if not b["success"]]

    def exit_code(self) -> int:
        """:data:`EXIT_OK` when every run succeeded and only warnings fired, else
        :data:`EXIT_NEEDS_ATTENTION` (an ERROR check failed or a landing batch was rejected).
        A failed run of the graph stops the demo with :class:`DemoFailed` (:data:`EXIT_FAILED`).
        """
        return EXIT_NEEDS_ATTENTION if self.errors or self.rejected_batches else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "landing": self.landing,
            "checks": [c.__dict__ for c in self.checks],
            "tables": self.tables,
        }


def partition_range(standin) -> tuple[str, str]:
    """First and last partition key of the stand-in's days of data (``StandInSettings``)."""
    from shared.partitions import day_of

    days = standin.day_indexes
    if not days:
        raise ValueError("the demo needs at least one day of data")
    return day_of(days[0]).isoformat(), day_of(days[-1]).isoformat()


def run_demo(log: Callable[[str], None] = print) -> DemoReport:
    """Materialize every asset of every location, in dependency order, and report.

    Reads its settings (home, stand-in sizes) from the environment through ``shared.settings``.
    """
    from shared.iceberg import list_tables, open_catalog
    from shared.settings import ensure_home, load_settings

    settings = load_settings()
    if not settings.is_local:
        raise DemoFailed(
            "the demo runs the local lakehouse only; unset DATA_PLATFORM_ENV or set it to 'local'"
        )
    ensure_home(settings)  # one clear error for a home that is a file or not writable
    # Pin the home for every process the runs start (and for dbt's plugin, which reads it).
    os.environ["DATA_PLATFORM_HOME"] = str(settings.home)

    prepare_workspace()
    location_defs = load_location_defs()
    graph = build_location_graph(location_defs)
    plan = plan_runs(graph)
    syncs = sync_runs(graph, plan)
    report = DemoReport()
    instance_dir = demo_instance_dir(settings.home)
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Created once under a lock (several demos may start together on a fresh home), with the
    # raw syncs' concurrency pool; runs a killed demo left holding a pool slot are released.
    # Step output is captured by the instance (the runs' stdout/stderr in the UI).
    with open_instance(instance_dir) as instance:
        launcher = WorkspaceLauncher(instance, workspace_locations(), WORKSPACE_FILE.parent)
        automation = DemoAutomation(
            workspace_definitions(location_defs), instance, instance_dir / AUTOMATION_CURSOR
        )
        _load_landing_batches(location_defs, launcher, instance_dir, log_dir, log, report)
        number = 0
        # Lazily: each tick is evaluated after the runs of the one before have landed.
        for runs in itertools.chain([syncs], automation.ticks(plan)):
            for requested in runs:
                number += 1
                log(_describe(number, requested))
                run_log = log_dir / f"demo-run-{number}-{requested.location}.log"
                # The run's output (its event log, dbt's output) goes to the run's log file
                # here and, captured by Dagster, to the run's stdout/stderr in the UI.
                with _output_to(run_log):
                    result = execute_requested_run(
                        location_defs[requested.location], requested, launcher
                    )
                report.runs.append(
                    {
                        "location": requested.location,
                        "assets": [k.to_user_string() for k in requested.asset_keys],
                        "partitions": list(requested.partition_range)
                        if requested.partition_range
                        else None,
                        "run_id": result.run_id,
                        "success": result.success,
                    }
                )
                report.checks.extend(_check_outcomes(result))
                if not result.success:
                    raise DemoFailed(
                        f"run {number} ({requested.location}) failed: "
                        f"{_failure_message(result)} (full log: {run_log})"
                    )
    report.tables = list_tables(open_catalog(settings))
    return report


def prepare_workspace() -> None:
    """Make the workspace ready to load before a command loads the locations' definitions
    (``demo``, ``bench incremental``): re-parse the dbt project when one of its files is newer
    than the manifest, as ``dagster dev`` does. These are development commands too, and a model
    pulled since the last parse would otherwise fail the transformation run on a manifest that
    does not know it."""
    import importlib

    importlib.import_module("transformation.project").ensure_manifest(refresh_if_stale=True)


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors, so dbt's subprocess output and
    every library's logging too) to ``path`` for the duration; the demo prints only its summary.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


#: The sensor and job of the ingestion location that load files dropped into the landing zone.
LANDING_LOCATION, LANDING_SENSOR, LANDING_JOB = "ingestion", "landing_sensor", "ingestion_job"


def _load_landing_batches(location_defs, launcher, instance_dir, log_dir, log, report) -> None:
    """Do what the landing sensor does under the daemon: one tick, one run per batch to load.

    The sensor ships stopped; the demo ticks it once so that complete batches dropped into the
    landing zone are loaded (or rejected into quarantine, with the reason) before the graph
    runs. Whether a batch is loaded is read from what the loader committed (its ledger and the
    tables' snapshot summaries), never from a cursor saved beforehand, so a demo killed at any
    moment loads each batch exactly once on its next start. Each batch runs on its own: one that
    fails is reported and the others still load; the rest of the graph still runs.
    """
    from dagster import RunRequest, SkipReason, build_sensor_context

    defs = location_defs.get(LANDING_LOCATION)
    if defs is None:
        return
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    context = build_sensor_context(instance=launcher.instance, resources=defs.resources)
    result = sensor(context)
    if isinstance(result, SkipReason) and "waiting" in (result.skip_message or ""):
        log(f"landing: {result.skip_message}")
    requests = [
        r for r in (result if isinstance(result, list) else []) if isinstance(r, RunRequest)
    ]
    job = defs.resolve_job_def(LANDING_JOB)
    for request in requests:
        batch = request.tags.get("ingestion/landing_batch", request.run_key)
        log(f"landing batch {batch}: loading")
        try:
            with _output_to(log_dir / landing_log_name(batch)):
                # A run of the ingestion location, as the sensor's run request would make it.
                result = launcher.launch(
                    LANDING_LOCATION,
                    job.name,
                    request.asset_selection,
                    {**request.tags, PID_TAG: str(os.getpid())},
                )
        except Exception as exc:  # the run could not even start: the batch was not touched
            message = f"{type(exc).__name__}: {exc}"
            report.landing.append(
                {"batch": batch, "success": False, "outcome": "pending", "message": message}
            )
            log(f"landing batch {batch}: NOT LOADED, stays pending (retried next run): {message}")
            continue
        report.checks.extend(_check_outcomes(result))
        outcome = "loaded" if result.success else _landing_outcome(result)
        message = "" if result.success else _failure_message(result)
        report.landing.append(
            {"batch": batch, "success": result.success, "outcome": outcome, "message": message}
        )
        if outcome == "rejected":
            log(f"landing batch {batch}: rejected (quarantined, nothing written): {message}")
        elif not result.success:
            log(f"landing batch {batch}: NOT LOADED, stays pending (retried next run): {message}")


#: Longest batch name used as is in a log file name (file names are limited to 255 bytes).
LOG_NAME_CHARS = 80


def landing_log_name(batch: str) -> str:
    """The log file of a batch's run: its name when short and plain, else a cut, cleaned name
    and a hash of the whole (names up to 255 bytes are legal batch folders)."""
    import hashlib
    import re

    plain = re.sub(r"[^A-Za-z0-9._-]", "_", batch)
    if plain == batch and len(batch) <= LOG_NAME_CHARS:
        return f"demo-landing-{batch}.log"
    digest = hashlib.sha256(batch.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"demo-landing-{plain[:LOG_NAME_CHARS]}-{digest}.log"


def _landing_outcome(result) -> str:
    """``rejected`` (quarantined) or ``pending`` (left in place, retried), as the loader's
    failure says; ``pending`` when the failure carries no outcome (the batch was not moved)."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = getattr(event.event_specific_data, "user_failure_data", None)
        value = data.metadata.get("landing_outcome") if data is not None else None
        if value is not None:
            return str(value.value)
    return "pending"


def _describe(number: int, run: RequestedRun) -> str:
    keys = ", ".join(
        [k.to_user_string() for k in run.asset_keys]
        + [f"check {c.asset_key.to_user_string()}:{c.name}" for c in run.check_keys]
    )
    window = f" [{run.partition_range[0]}..{run.partition_range[1]}]" if run.partition_range else ""
    return f"run {number} {run.location}{window}: {keys}"


def execute_requested_run(
    defs, run: RequestedRun, launcher: WorkspaceLauncher, with_checks: bool = True
):
    """Launch ``run`` (planned by :mod:`data_platform.graph`) as a run of its location's job, as
    the UI would create it, tagged with its partition range and this process's pid; returns
    Dagster's result. Raises :class:`DemoFailed` when ``defs`` has no job for its assets.

    The run executes the checks the automation's run would: a run of days (a single-run
    backfill in a deployment) every check of its assets, as Dagster's backfills select them; an
    unpartitioned run the checks without a condition of their own (:func:`ride_along_checks`);
    a run of checks only ``run.check_keys``. ``with_checks=False`` (the benchmark's measure of
    what the checks cost) leaves out every check that can be left out: all but
    :func:`inseparable_checks`."""
    targets = list(run.asset_keys) or [c.asset_key for c in run.check_keys]
    job = defs.resolve_implicit_job_def_def_for_assets(targets)
    if job is None:
        raise DemoFailed(f"{run.location} has no job for {targets}")
    if not with_checks:
        checks: set[AssetCheckKey] | None = set(run.check_keys) | inseparable_checks(
            defs, run.asset_keys
        )
    elif run.partition_range:
        checks = None
    else:
        checks = set(run.check_keys) | ride_along_checks(defs, run.asset_keys)
    # The demo's pid: a later process frees the pool slot of a run whose process died.
    tags = {PID_TAG: str(os.getpid())}
    if run.partition_range:
        first, last = run.partition_range
        tags[ASSET_PARTITION_RANGE_START_TAG] = first
        tags[ASSET_PARTITION_RANGE_END_TAG] = last
    # A run of the location's job, as the UI makes it: it belongs to its code location there.
    return launcher.launch(run.location, job.name, run.asset_keys, tags, asset_check_keys=checks)


def ride_along_checks(defs, asset_keys: Iterable[AssetKey]) -> set[AssetCheckKey]:
    """The checks that run with ``asset_keys``, as Dagster's automation picks them for a run it
    requests: every check of those assets without an automation condition of its own (one with a
    condition, e.g. a nightly whole-table test, runs when its condition asks for it)."""
    graph = defs.resolve_asset_graph()
    return {
        check
        for check in graph.get_check_keys_for_assets(set(asset_keys))
        if graph.get(check).automation_condition is None
    }


def inseparable_checks(defs, asset_keys: Iterable[AssetKey]) -> set[AssetCheckKey]:
    """The checks of ``asset_keys`` that a run of those assets cannot leave out: those computed
    in the op of an asset that cannot be subset (an ``@asset`` with ``check_specs``, which
    yields its check results with its output). The checks of dbt's multi-assets (its tests), the
    raw tables' multi-asset checks and the freshness checks can all be left out."""
    graph = defs.resolve_asset_graph()
    checks: set[AssetCheckKey] = set()
    for key in asset_keys:
        assets_def = graph.get(key).assets_def
        if not assets_def.can_subset:
            checks.update(assets_def.check_keys)
    return checks


def demo_instance_dir(home: Path) -> Path:
    """The Dagster instance of the local platform, ``DATA_PLATFORM_HOME/dagster``: the
    ``DAGSTER_HOME`` of ``data-platform ui`` too, so the UI shows the demo's runs. Created if
    missing (see :func:`data_platform.instance.ensure_instance`)."""
    return ensure_instance(home / "dagster")


#: The automation cursor of the demo, kept beside its instance (what the daemon keeps in its own
#: storage): the next demo sees only what happened since.
AUTOMATION_CURSOR = "automation.cursor"
#: Hops of the graph after the raw syncs (raw -> dbt -> analytics takes two or three).
MAX_TICKS = 10


class DemoAutomation:
    """Plans the demo's runs the way the deployment's automation does: evaluates the automation
    conditions of every location on the workspace-wide graph against the demo's instance.

    The cursor advances (is written) only after the runs of a tick have succeeded, so a demo
    killed or failed in between is asked for the same work again by the next one (re-running a
    day is idempotent). On a fresh home, the first evaluation happens before anything is synced
    (as the daemon's first tick sets its cursor), so the first sync's days are all requested.
    """

    def __init__(self, defs, instance, cursor_file: Path):
        from dagster import deserialize_value, evaluate_automation_conditions

        self.defs, self.instance, self.cursor_file = defs, instance, cursor_file
        self._evaluate = evaluate_automation_conditions
        self.cursor = None
        if cursor_file.exists():
            from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor

            self.cursor = deserialize_value(cursor_file.read_text(), AssetDaemonCursor)
        else:
            self._tick()
            self._commit()

    def _tick(self) -> dict:
        result = self._evaluate(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        requested = {}
        for r in result.results:
            subset = r.true_subset
            if subset.size:
                requested[r.key] = (
                    set(subset.expensively_compute_partition_keys())
                    if subset.is_partitioned
                    else None
                )
        return requested

    def _commit(self) -> None:
        from dagster import serialize_value

        tmp = self.cursor_file.with_suffix(".tmp")
        tmp.write_text(serialize_value(self.cursor))
        tmp.replace(self.cursor_file)  # atomic: a killed demo leaves the old cursor or the new

    def ticks(self, plan) -> Iterator[list[RequestedRun]]:
        """The runs of each tick, until nothing more is requested; the caller runs them before
        asking for the next tick (which commits the cursor of the previous one)."""
        for _ in range(MAX_TICKS):
            runs = plan_requested_runs(plan, self._tick())
            if not runs:
                self._commit()
                return
            yield runs
            self._commit()
        raise DemoFailed(f"the automation still requested runs after {MAX_TICKS} ticks")


def _check_outcomes(result) -> list[CheckOutcome]:
    outcomes = []
    for evaluation in result.get_asset_check_evaluations():
        outcomes.append(
            CheckOutcome(
                asset=evaluation.asset_key.to_user_string(),
                name=evaluation.check_name,
                passed=evaluation.passed,
                severity=evaluation.severity.value,
                description=str(evaluation.description or ""),
            )
        )
    return outcomes


def _failure_message(result) -> str:
    messages = []
    for event in result.all_events:
        if event.is_step_failure and event.step_key:
            error = event.event_specific_data.error
            messages.append(f"{event.step_key}: {error_text(error) if error else 'failed'}")
    return "; ".join(messages) or "see the run's logs"


def error_text(error) -> str:
    """A step error with its causes: Dagster wraps the error raised in the step (dbt's own
    message, from dagster-dbt) in "Error occurred while executing op ...", which alone says
    nothing; the causes are what happened."""
    parts = []
    while error is not None:
        message = error.message.strip()
        if message and message not in parts:
            parts.append(message)
        error = error.cause
    return " <- caused by: ".join(parts)


def format_report(report: DemoReport) -> str:
    lines = []
    if report.landing:
        lines += ["", "Landing batches:"]
        for b in report.landing:
            if b["success"]:
                status = "loaded"
            elif b.get("outcome") == "rejected":
                status = f"REJECTED (quarantined): {b['message']}"
            else:
                status = f"NOT LOADED (pending, retried on the next run): {b['message']}"
            lines.append(f"  {b['batch']}: {status}")
    lines += ["", "Iceberg tables written:"]
    width = max((len(t["identifier"]) for t in report.tables), default=10)
    for t in report.tables:
        lines.append(
            f"  {t['identifier']:<{width}}  rows={t['row_count']:<8} snapshot={t['snapshot_id']}"
        )
    lines.append("")
    passed = sum(c.passed for c in report.checks)
    failed = len(report.checks) - passed
    lines.append(
        f"Asset checks: {passed} passed, {failed} failed "
        f"({len(report.errors)} errors, {len(report.warnings)} warnings)"
    )
    for c in sorted(report.checks, key=lambda c: (c.asset, c.name)):
        status = "PASS" if c.passed else f"FAIL ({c.severity})"
        lines.append(f"  {status:<14} {c.asset} :: {c.name}")
    for kind, failed_checks in (("warning", report.warnings), ("error", report.errors)):
        for c in failed_checks:
            detail = f": {c.description}" if c.description else ""
            lines.append(f"{kind}: {c.asset} :: {c.name} failed ({c.severity}){detail}")
    for b in report.rejected_batches:
        outcome = "rejected" if b.get("outcome") == "rejected" else "not loaded"
        lines.append(f"error: landing batch {b['batch']} {outcome}: {b['message']}")
    return "\n".join(lines)
