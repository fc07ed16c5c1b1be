"""Runs of the workspace's code locations, created as the UI creates them, executed in this process.

A run made with ``job.execute_in_process`` has no code location: the UI leaves it off the
Overview timeline, warns that ``__ASSET_JOB`` "may be a different version" on re-execution, and
shows no step output. Here each location named in ``workspace.yaml`` is opened as a Dagster code
location (in this process: the modules are already imported for planning) and a run is created
from the location's remote job, exactly as the GraphQL ``launchRun`` mutation creates one
(``dagster_graphql`` ``create_valid_pipeline_run``): its job snapshot, its execution plan, its
remote origin (location and repository names). The UI then files the run under its location and
matches it with the job its code server serves. The run is executed with ``execute_run`` in this
process, with step output captured by the instance's compute log manager (the run's stdout and
stderr in the UI).

Why not launch it in code servers (``dagster api grpc`` and the instance's run launcher, as the
UI does)? It was tried: the three code servers take their own load time, and every run starts a
run worker that imports its location again (16 to 50 s per run measured on a busy 2-core
machine, the transformation location the slowest). Executed here, a demo takes the time it took
with ``execute_in_process`` (762 s against 750 s, the two run side by side on that machine).
Dagster has no public API for creating a run from a remote job outside GraphQL; the calls below
are the ones its CLI (``dagster job launch``) makes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

REPOSITORY_NAME = "__repository__"

#: The steps of a demo run execute one after another in this process (as ``execute_in_process``
#: does); re-executed from the UI, the run does the same.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


class LaunchedRun:
    """A finished run, with the events its execution produced. Offers what the demo's report
    reads of an ``ExecuteInProcessResult``: ``run_id``, ``success``, ``all_events``,
    ``get_asset_check_evaluations()``.
    """

    def __init__(self, run_id: str, status: DagsterRunStatus, all_events: list[Any]):
        self.run_id, self.status, self.all_events = run_id, status, all_events

    @property
    def success(self) -> bool:
        return self.status == DagsterRunStatus.SUCCESS

    def get_asset_check_evaluations(self) -> list[Any]:
        return [
            e.event_specific_data
            for e in self.all_events
            if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        ]


class WorkspaceLauncher:
    """Create and execute runs of the locations ``{name: module}`` on ``instance``."""

    def __init__(self, instance: DagsterInstance, locations: Mapping[str, str], root: Path):
        self.instance = instance
        self._modules = dict(locations)
        self._root = root
        self._opened: dict[str, Any] = {}

    def code_location(self, name: str):
        """The code location ``name`` of ``workspace.yaml``, loaded in this process."""
        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

        if name not in self._opened:
            origin = InProcessCodeLocationOrigin(
                LoadableTargetOrigin(
                    executable_path=sys.executable,
                    module_name=self._modules[name],
                    working_directory=str(self._root),
                ),
                location_name=name,
            )
            self._opened[name] = origin.create_location(self.instance)
        return self._opened[name]

    def launch(
        self,
        location: str,
        job_name: str,
        asset_keys: Iterable[AssetKey] | None,
        tags: Mapping[str, str] | None = None,
        asset_check_keys: Iterable[AssetCheckKey] | None = None,
    ) -> LaunchedRun:
        """Create a run of ``job_name`` over ``asset_keys`` (``None``: the whole job) in
        ``location``, execute it and return it finished. The run executes the assets' checks,
        or only ``asset_check_keys`` when given (as a run request's ``asset_check_keys``)."""
        from dagster._core.definitions.selector import JobSubsetSelector
        from dagster._core.execution.api import execute_run
        from dagster._utils.hosted_user_process import recon_job_from_origin

        code_location = self.code_location(location)
        repository = code_location.get_repository(REPOSITORY_NAME)
        keys = frozenset(asset_keys) if asset_keys is not None else None
        checks = frozenset(asset_check_keys) if asset_check_keys is not None else None
        remote_job = code_location.get_job(
            JobSubsetSelector(
                location_name=location,
                repository_name=REPOSITORY_NAME,
                job_name=job_name,
                op_selection=None,
                asset_selection=keys,
                asset_check_selection=checks,
            )
        )
        plan = code_location.get_execution_plan(
            remote_job, IN_PROCESS, step_keys_to_execute=None, known_state=None,
            instance=self.instance,
        )  # fmt: skip
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=IN_PROCESS,
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **(tags or {})},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=keys,
            asset_check_selection=checks,
            asset_graph=repository.asset_graph,
        )
        result = execute_run(recon_job_from_origin(run.job_code_origin), run, self.instance)
        # The events the execution produced, as it returns them: reading the run's whole event
        # log back from storage cost a query and a deserialization per event.
        return LaunchedRun(run.run_id, result.dagster_run.status, list(result.all_events))
