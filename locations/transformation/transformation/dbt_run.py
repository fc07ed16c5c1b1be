"""Running dbt inside an asset body, in the step's own process (dbt's programmatic runner).

This module imports dagster-dbt and dbt-core at its top: only the asset bodies of
:mod:`transformation.assets` import it, when a run starts (loading the definitions never does:
see :mod:`transformation.manifest` for why).

dbt runs through ``dbt.cli.main.dbtRunner`` in this process, not as a ``dbt build`` subprocess:
a subprocess paid Python's start, the imports of dbt, the adapter, pyiceberg and pyarrow, the
manifest load and the adapter's set-up on every step (about 12 s for under 1 s of model work,
docs/benchmarks.md). dagster-dbt has no in-process runner (``DbtCliResource.cli`` always starts
a subprocess; astronomer-cosmos has one, its ``DBT_RUNNER`` mode), so the runner below is
hand-written; what it can, it takes from dagster-dbt: each dbt result event, converted to the
dict of dbt's JSON log (``msg_to_dict``, the function dbt's JSON logger uses), becomes a
``DbtCoreCliEventMessage`` whose ``to_default_asset_events`` gives the same materializations and
check evaluations, with the same metadata, as the subprocess path did
(:class:`PlatformDbtTranslator` with the same keys as :func:`transformation.manifest.node_key`).

Our assets are not built by ``@dbt_assets``, so two small pieces dagster-dbt would otherwise do
from the context are here too: the dbt selection of a subset run (:func:`selection_args`), and
turning the context-free events into the step's outputs and check results (:func:`to_step_events`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    Output,
)
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from dbt_common.events.functions import msg_to_dict

from transformation.manifest import UNIQUE_ID_KEY, dbt_selection_names, load_manifest, node_key


class PlatformDbtTranslator(DagsterDbtTranslator):
    """Keys as :func:`transformation.manifest.node_key` (the Iceberg table; ``raw/*`` sources)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot", "source"):
            return node_key(dbt_resource_props)
        return super().get_asset_key(dbt_resource_props)


TRANSLATOR = PlatformDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def selection_args(
    context: AssetExecutionContext,
    manifest: Mapping[str, Any],
    select: str,
    exclude: str | None,
    skip_test_tags: Iterable[str] = (),
) -> list[str]:
    """dbt selection flags for the step's selected assets and checks.

    A dbt test carrying one of ``skip_test_tags`` is not run, selected or not: it is left out
    as dbt's own ``--exclude tag:...`` (Dagster then shows its check as not executed here).

    * everything of the definition selected: its own ``--select``/``--exclude``, with
      ``--indirect-selection buildable`` (a test runs only if every model it reads is built in
      this run or upstream of it: dbt's default, eager, would also run dim_users' relationships
      test when only stg_users is selected, against a dim_users that may not exist yet);
    * a subset of the assets with all their checks: those models, ``buildable`` tests;
    * a subset of the checks: the models and exactly the selected tests (indirect selection off).
    """
    assets_def = context.assets_def  # in a subset run: the subset; node_*: the whole definition
    skipped = set(skip_test_tags)
    exclude = " ".join([*([exclude] if exclude else []), *(f"tag:{t}" for t in sorted(skipped))])
    exclude_args = ["--exclude", exclude] if exclude else []
    selected_keys = set(context.selected_asset_keys)
    check_specs = {spec.key: spec for spec in assets_def.node_check_specs_by_output_name.values()}

    def runs_here(check: AssetCheckKey) -> bool:
        tags = manifest["nodes"][check_specs[check].metadata[UNIQUE_ID_KEY]]["tags"]
        return not skipped & set(tags)

    selected_checks = {c for c in context.selected_asset_check_keys if runs_here(c)}
    all_keys = set(assets_def.node_keys_by_output_name.values())
    all_checks = {c for c in check_specs if runs_here(c)}
    all_checks_of_selected = {c for c in all_checks if c.asset_key in selected_keys}
    if selected_keys == all_keys and selected_checks == all_checks:
        return ["--select", select, *exclude_args, "--indirect-selection", "buildable"]
    model_ids = [assets_def.specs_by_key[k].metadata[UNIQUE_ID_KEY] for k in selected_keys]
    if selected_checks == all_checks_of_selected:
        names = dbt_selection_names(manifest, model_ids)
        return ["--select", " ".join(names), *exclude_args, "--indirect-selection", "buildable"]
    test_ids = [check_specs[c].metadata[UNIQUE_ID_KEY] for c in selected_checks]
    names = dbt_selection_names(manifest, [*model_ids, *test_ids])
    return ["--select", " ".join(names), "--indirect-selection", "empty"]


def to_step_events(context: AssetExecutionContext, events: Iterable[Any]) -> Iterator[Any]:
    """dagster-dbt's context-free events as this step's events: a model's materialization of a
    selected asset becomes its ``Output``, a selected test's evaluation its ``AssetCheckResult``.
    Anything dbt ran beyond the selection is logged, not reported as ours."""
    selected_keys = set(context.selected_asset_keys)
    selected_checks: set[AssetCheckKey] = set(context.selected_asset_check_keys)
    for event in events:
        if isinstance(event, AssetMaterialization):
            if event.asset_key in selected_keys:
                yield Output(
                    None,
                    output_name=event.asset_key.to_python_identifier(),
                    metadata=dict(event.metadata),
                )
            else:
                context.log.info(f"dbt also built {event.asset_key.to_user_string()} (unselected)")
        elif isinstance(event, AssetCheckEvaluation):
            key = AssetCheckKey(event.asset_key, event.check_name)
            if key in selected_checks:
                yield AssetCheckResult(
                    asset_key=event.asset_key,
                    check_name=event.check_name,
                    passed=event.passed,
                    severity=event.severity,
                    metadata=dict(event.metadata),
                    description=event.description,
                )
            else:
                status = "passed" if event.passed else "failed"
                context.log.info(f"dbt test {event.check_name} {status} (not selected as a check)")
        else:
            yield event


#: dbt's result events: the ones dagster-dbt turns into materializations and check results
#: (``DbtCoreCliEventMessage.is_result_event``). Only these are converted to dicts (protobuf's
#: ``MessageToDict`` for every debug line of a run would cost more than the run's models).
RESULT_EVENTS = frozenset({"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"})

#: One dbt invocation at a time per process: dbt keeps its flags, invocation context, event
#: loggers and adapters in module globals, so two invocations on two threads would mix them.
#: Runs of the demo, the benchmark and a run worker (in_process executor) invoke dbt one after
#: another anyway; runs in other processes (multiprocess executor, concurrent runs) have their own.
_INVOKE_LOCK = threading.RLock()

#: The parsed dbt Manifest of this process, per (project, prepared manifest file, target): parsed
#: once (dbt's partial parse) and handed to every later ``dbtRunner`` (dbt's documented way to
#: reuse objects between invocations). A re-prepared ``manifest.json`` (new mtime or size) is a
#: new key: the project is parsed again and the asset specs and dbt agree.
_MANIFESTS: dict[tuple[str, str, int, int, str], Any] = {}


class DbtInvocationError(DagsterDbtCliRuntimeError):
    """A dbt invocation in this process failed; the message carries dbt's own error lines."""


class _EventCollector:
    """dbt's event callback (called from dbt's worker threads): its result events as
    dagster-dbt's event messages, and the messages of its error-level events."""

    def __init__(self) -> None:
        self.messages: list[DbtCoreCliEventMessage] = []
        self.errors: list[str] = []
        self._history: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        info = msg.info
        if info.level == "error":
            with self._lock:
                self.errors.append(info.msg)
        if info.name == "JinjaLogInfo":
            # dagster-dbt's column metadata: a node may log its columns as a JSON object, kept
            # for the node's result event (as DbtCliInvocation.stream_raw_events does).
            with contextlib.suppress(ValueError, AttributeError):
                logged = json.loads(info.msg)
                if isinstance(logged, dict) and msg.data.node_info.unique_id:
                    with self._lock:
                        self._history[msg.data.node_info.unique_id] = logged
            return
        if info.name not in RESULT_EVENTS:
            return
        raw = msg_to_dict(msg)
        unique_id = raw.get("data", {}).get("node_info", {}).get("unique_id")
        with self._lock:
            history = copy.deepcopy(self._history.get(unique_id, {})) if unique_id else {}
            self.messages.append(
                DbtCoreCliEventMessage(raw_event=raw, event_history_metadata=history)
            )


@dataclass
class DbtInvocation:
    """One finished dbt invocation of this process: what dagster-dbt's ``DbtCliInvocation``
    offers the step (its events, success, dbt's error lines, the target folder)."""

    args: list[str]
    target_path: Path
    events: list[Any]
    success: bool
    errors: list[str]
    exception: BaseException | None = None

    def error(self) -> DbtInvocationError | None:
        """The step's error when dbt failed: dbt's error lines (as dagster-dbt reports them)."""
        if self.success:
            return None
        return _invocation_error(self.args, self.target_path, self.errors, self.exception)


def _invocation_error(
    args: list[str], target_path: Path, errors: list[str], exception: BaseException | None
) -> DbtInvocationError:
    lines = [
        f"dbt {' '.join(args)} failed (dbt's debug log: {target_path / 'dbt.log'}).",
    ]
    if errors:
        lines += ["", "Errors parsed from dbt logs:", *errors]
    if exception is not None and not any(str(exception) in e for e in errors):
        lines += ["", f"{type(exception).__name__}: {exception}"]
    return DbtInvocationError(description="\n".join(lines))


def location_args(project_dir: Path, target_path: Path) -> list[str]:
    """Where dbt finds the project and profiles, and writes its artifacts and ``dbt.log``."""
    return [
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target-path", str(target_path),
        "--log-path", str(target_path),
        "--no-use-colors",
    ]  # fmt: skip


def _target_of(args: list[str]) -> str:
    return args[args.index("--target") + 1] if "--target" in args else ""


def _reset_dbt_state() -> None:
    """Release what dbt keeps in this process's globals after an invocation.

    * its event loggers and our callback (its ``dbt.log`` handle in the run's target folder,
      and stdout: nothing logs to them after the invocation);
    * dbt-duckdb's environment: a class attribute (``DuckDBConnectionManager._ENV``) that dbt's
      own clean-up keeps for the next invocation with the same credentials. Kept, its in-memory
      database would hold the views of the tables the last run read, at their old snapshots, and
      our plugin would not register them again: a later run would read stale tables. Closing
      it makes each invocation start from the Iceberg catalog, as a dbt process did. (No public
      API for this; dbt-duckdb only does it at exit.)
    * our plugin's scratch files (``duckdb_iceberg.clear_scratch``), which a dbt process left
      to its exit.
    """
    from dbt_common.events.event_manager_client import cleanup_event_logger

    cleanup_event_logger()
    duckdb_connections = sys.modules.get("dbt.adapters.duckdb.connections")
    if duckdb_connections is not None:
        manager = duckdb_connections.DuckDBConnectionManager
        with manager._LOCK:
            env, manager._ENV = manager._ENV, None
        if env is not None:
            env.close()
    plugin = sys.modules.get("transformation.duckdb_iceberg")
    if plugin is not None:
        plugin.clear_scratch()  # snapshot copies the closed database's views read


def _raise_interrupt(result: Any) -> None:
    """dbtRunner returns every exception, interrupts included: a run being terminated (Dagster's
    ``DagsterExecutionInterruptedError``, ``KeyboardInterrupt``) must stay an interrupt."""
    if result.exception is not None and not isinstance(result.exception, Exception):
        raise result.exception


def parsed_manifest(project_dir: Path, target: str, target_path: Path, manifest_path: Path) -> Any:
    """dbt's Manifest object of the project for ``target``, parsed once per process and prepared
    manifest file (``_MANIFESTS``). The parse reuses the partial-parse state found in
    ``target_path`` (the home's, ``transformation.dbt_workdir``) and leaves its own there.

    Parsed without ``--vars``: the project's vars only configure the profile (the plugin's home,
    rendered again by every invocation), never a model, and ``prepare`` parses without them, so
    its saved state is reused.
    """
    from dbt.cli.main import dbtRunner

    stat = manifest_path.stat()
    key = (str(project_dir), str(manifest_path), stat.st_mtime_ns, stat.st_size, target)
    with _INVOKE_LOCK:
        manifest = _MANIFESTS.get(key)
        if manifest is not None:
            return manifest
        # --no-write-json: the Manifest object is what is kept; its partial-parse state is
        # still saved (dbt writes it whatever the flag).
        args = ["parse", "--no-write-json", *(["--target", target] if target else [])]
        collector = _EventCollector()
        try:
            result = dbtRunner(callbacks=[collector]).invoke(
                [*args, *location_args(project_dir, target_path)]
            )
        finally:
            _reset_dbt_state()
        _raise_interrupt(result)
        if not result.success:
            raise _invocation_error(args, target_path, collector.errors, result.exception)
        # Only the latest prepared manifest is kept (one project, one target per process).
        _MANIFESTS.clear()
        _MANIFESTS[key] = result.result
        return result.result


def write_run_results(result: Any, target_path: Path) -> None:
    """Write dbt's ``run_results.json`` of an invocation's result to ``target_path`` (what dbt
    writes itself without ``--no-write-json``); nothing when the invocation has no node results
    (it failed before running any: dbt's ``dbt.log`` says why)."""
    if hasattr(result, "write") and hasattr(result, "results"):
        result.write(str(target_path / "run_results.json"))


def invoke(
    args: list[str], *, project_dir: Path, target_path: Path, manifest_path: Path
) -> DbtInvocation:
    """Run ``dbt <args>`` in this process with the process's parsed Manifest; its artifacts and
    ``dbt.log`` go to ``target_path``. dbt's log lines go to this process's stdout (the step's
    compute log), as dbt prints them; the result events become dagster-dbt's context-free events.
    """
    from dbt.cli.main import dbtRunner

    collector = _EventCollector()
    with _INVOKE_LOCK:
        manifest = parsed_manifest(project_dir, _target_of(args), target_path, manifest_path)
        try:
            # --no-write-json: dbt would write the whole project's manifest.json (and its
            # semantic manifest) after every invocation, about 0.15 s of JSON nobody reads (the
            # run's folder is deleted when the run succeeds; the assets read the prepared
            # manifest). Only run_results.json is worth keeping, for a failed run: written below.
            result = dbtRunner(manifest=manifest, callbacks=[collector]).invoke(
                [*args, "--no-write-json", *location_args(project_dir, target_path)]
            )
        finally:
            _reset_dbt_state()
        sys.stdout.flush()
    _raise_interrupt(result)
    write_run_results(result.result, target_path)
    manifest_json = load_manifest(str(manifest_path))
    events = [
        event
        for message in collector.messages
        for event in message.to_default_asset_events(
            manifest=manifest_json, dagster_dbt_translator=TRANSLATOR, target_path=target_path
        )
    ]
    return DbtInvocation(
        args=list(args),
        target_path=target_path,
        events=events,
        success=result.success,
        errors=collector.errors,
        exception=result.exception,
    )
