"""``data-platform demo``: materialize the whole cross-location graph locally.

Runs each planned run (see :func:`data_platform.graph.plan_runs`) as a run of its code location
(the locations of ``workspace.yaml``, see :mod:`data_platform.launch`) on the Dagster instance
kept under ``DATA_PLATFORM_HOME/dagster``: the same runs, in the same order, that the daemon
would launch from the UI, on the instance ``data-platform ui`` opens. Daily-partitioned assets
run as one run over the whole range of demo days (their backfill policy is single-run).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import DagsterInstance

from data_platform.graph import (
    WORKSPACE_FILE,
    PlannedRun,
    build_location_graph,
    load_location_defs,
    plan_runs,
    workspace_locations,
)
from data_platform.launch import WorkspaceLauncher

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
    from ingestion.settings import load_standin_settings
    from shared.iceberg import list_tables, open_catalog
    from shared.settings import load_settings

    settings = load_settings()
    if not settings.is_local:
        raise DemoFailed(
            "the demo runs the local lakehouse only; unset DATA_PLATFORM_ENV or set it to 'local'"
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    # Pin the home for every process the runs start (dbt's subprocess reads it too).
    os.environ["DATA_PLATFORM_HOME"] = str(settings.home)

    first_day, last_day = partition_range(load_standin_settings())
    report = DemoReport()
    instance_dir = demo_instance_dir(settings.home)
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    location_defs = load_location_defs()
    plan = plan_runs(build_location_graph(location_defs))
    with _demo_instance(instance_dir) as instance:
        launcher = WorkspaceLauncher(instance, workspace_locations(), WORKSPACE_FILE.parent)
        _load_landing_batches(location_defs, launcher, instance_dir, log_dir, log, report)
        for number, planned in enumerate(plan, start=1):
            log(_describe(number, len(plan), planned, first_day, last_day))
            run_log = log_dir / f"demo-run-{number}-{planned.location}.log"
            # The run's output (its event log, dbt's output) goes to the run's log file here
            # and, captured by Dagster, to the run's stdout/stderr in the UI.
            with _output_to(run_log):
                result = _execute(
                    location_defs[planned.location], planned, launcher, first_day, last_day
                )
            report.runs.append(
                {
                    "location": planned.location,
                    "assets": [k.to_user_string() for k in planned.asset_keys],
                    "partitions": [first_day, last_day] if planned.partitioned else None,
                    "run_id": result.run_id,
                    "success": result.success,
                }
            )
            report.checks.extend(_check_outcomes(result))
            if not result.success:
                raise DemoFailed(
                    f"run {number} ({planned.location}) failed: {_failure_message(result)} "
                    f"(full log: {run_log})"
                )
    report.tables = list_tables(open_catalog(settings))
    return report


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
    """Do what the landing sensor does under the daemon: one tick, one run per new batch.

    The sensor ships stopped; the demo ticks it once so that files dropped into the landing zone
    are loaded (or rejected into quarantine, with the reason) before the graph runs. Its cursor
    is kept beside the instance, so a batch is loaded once across demos. A rejected batch is
    reported, not fatal: it is quarantined with its error and the rest of the graph still runs.
    """
    from dagster import RunRequest, build_sensor_context

    defs = location_defs.get(LANDING_LOCATION)
    if defs is None:
        return
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    cursor_file = instance_dir / f"{LANDING_SENSOR}.cursor"
    cursor = cursor_file.read_text() if cursor_file.exists() else None
    context = build_sensor_context(
        instance=launcher.instance, cursor=cursor, resources=defs.resources
    )
    result = sensor(context)
    requests = [
        r for r in (result if isinstance(result, list) else []) if isinstance(r, RunRequest)
    ]
    if context.cursor is not None:
        cursor_file.write_text(context.cursor)
    job = defs.resolve_job_def(LANDING_JOB)
    for request in requests:
        batch = request.tags.get("ingestion/landing_batch", request.run_key)
        log(f"landing batch {batch}: loading")
        with _output_to(log_dir / f"demo-landing-{batch}.log"):
            result = launcher.launch(
                LANDING_LOCATION, job.name, request.asset_selection, request.tags
            )
        report.checks.extend(_check_outcomes(result))
        message = "" if result.success else _failure_message(result)
        report.landing.append({"batch": batch, "success": result.success, "message": message})
        if not result.success:
            log(f"landing batch {batch}: rejected (quarantined, nothing written): {message}")


def _describe(number: int, total: int, planned: PlannedRun, first: str, last: str) -> str:
    keys = ", ".join(k.to_user_string() for k in planned.asset_keys)
    window = f" [{first}..{last}]" if planned.partitioned else ""
    return f"run {number}/{total} {planned.location}{window}: {keys}"


def _execute(defs, planned: PlannedRun, launcher: WorkspaceLauncher, first_day: str, last_day: str):
    job = defs.resolve_implicit_job_def_def_for_assets(list(planned.asset_keys))
    if job is None:
        raise DemoFailed(f"{planned.location} has no job for {planned.asset_keys}")
    tags = {}
    if planned.partitioned:
        tags = {ASSET_PARTITION_RANGE_START_TAG: first_day, ASSET_PARTITION_RANGE_END_TAG: last_day}
    # A run of the location's job, as the UI makes it: it belongs to its code location there.
    return launcher.launch(planned.location, job.name, planned.asset_keys, tags)


def demo_instance_dir(home: Path) -> Path:
    """The Dagster instance of the local platform, ``DATA_PLATFORM_HOME/dagster``: the
    ``DAGSTER_HOME`` of the demo and of ``data-platform ui``, so the UI shows the demo's runs.
    Created with a ``dagster.yaml`` when missing (Dagster's defaults: SQLite storage and compute
    logs in the folder); an existing ``dagster.yaml`` is left as it is."""
    instance_dir = home / "dagster"
    instance_dir.mkdir(parents=True, exist_ok=True)
    config = instance_dir / "dagster.yaml"
    if not config.exists():
        config.write_text(
            "# The local platform's Dagster instance (data-platform demo and data-platform ui).\n"
            "telemetry:\n  enabled: false\n"
        )
    return instance_dir


@contextmanager
def _demo_instance(instance_dir: Path) -> Iterator[DagsterInstance]:
    """The instance at ``instance_dir`` (its ``dagster.yaml`` applies), made the
    ``DAGSTER_HOME`` of this process and of the code servers it starts."""
    os.environ["DAGSTER_HOME"] = str(instance_dir)
    with DagsterInstance.get() as instance:
        yield instance


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
            messages.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    return "; ".join(messages) or "see the run's logs"


def format_report(report: DemoReport) -> str:
    lines = []
    if report.landing:
        lines += ["", "Landing batches:"]
        for b in report.landing:
            status = "loaded" if b["success"] else f"REJECTED: {b['message']}"
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
        lines.append(f"error: landing batch {b['batch']} rejected: {b['message']}")
    return "\n".join(lines)
