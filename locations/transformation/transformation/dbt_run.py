"""Running dbt inside an asset body: dagster-dbt's CLI resource, imported at run time only.

This module imports dagster-dbt (and so dbt-core) at its top: only the asset bodies of
:mod:`transformation.assets` import it, when a run starts (loading the definitions never does:
see :mod:`transformation.manifest` for why).

dagster-dbt runs ``dbt build``, parses its structured log and turns each model into a
materialization and each test into a check evaluation (:class:`DagsterDbtTranslator` with the
same keys as :func:`transformation.manifest.node_key`). What it cannot do here, and this module
does by hand: our assets are not built by ``@dbt_assets``, so ``DbtCliResource.cli`` is called
without the execution context (with the context it looks for the manifest and translator in
``@dbt_assets``' metadata, and fails). Hence two small pieces dagster-dbt would otherwise do from
the context: the dbt selection of a subset run (:func:`selection_args`), and turning its
context-free events into the step's outputs and check results (:func:`to_step_events`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
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
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource

from transformation.manifest import UNIQUE_ID_KEY, dbt_selection_names, node_key


class PlatformDbtTranslator(DagsterDbtTranslator):
    """Keys as :func:`transformation.manifest.node_key` (the Iceberg table; ``raw/*`` sources)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot", "source"):
            return node_key(dbt_resource_props)
        return super().get_asset_key(dbt_resource_props)


TRANSLATOR = PlatformDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def selection_args(
    context: AssetExecutionContext, manifest: Mapping[str, Any], select: str, exclude: str | None
) -> list[str]:
    """dbt selection flags for the step's selected assets and checks.

    * everything of the definition selected: its own ``--select``/``--exclude``, with
      ``--indirect-selection buildable`` (a test runs only if every model it reads is built in
      this run or upstream of it: dbt's default, eager, would also run dim_users' relationships
      test when only stg_users is selected, against a dim_users that may not exist yet);
    * a subset of the assets with all their checks: those models, ``buildable`` tests;
    * a subset of the checks: the models and exactly the selected tests (indirect selection off).
    """
    assets_def = context.assets_def  # in a subset run: the subset; node_*: the whole definition
    exclude_args = ["--exclude", exclude] if exclude else []
    selected_keys = set(context.selected_asset_keys)
    selected_checks = set(context.selected_asset_check_keys)
    all_keys = set(assets_def.node_keys_by_output_name.values())
    all_checks = {spec.key for spec in assets_def.node_check_specs_by_output_name.values()}
    all_checks_of_selected = {c for c in all_checks if c.asset_key in selected_keys}
    if selected_keys == all_keys and selected_checks == all_checks:
        return ["--select", select, *exclude_args, "--indirect-selection", "buildable"]
    model_ids = [assets_def.specs_by_key[k].metadata[UNIQUE_ID_KEY] for k in selected_keys]
    if selected_checks == all_checks_of_selected:
        names = dbt_selection_names(manifest, model_ids)
        return ["--select", " ".join(names), *exclude_args, "--indirect-selection", "buildable"]
    check_specs = {spec.key: spec for spec in assets_def.node_check_specs_by_output_name.values()}
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


def dbt_cli_resource(project_dir: str, dbt_executable: str) -> DbtCliResource:
    """dagster-dbt's CLI resource over the project (profiles in the project folder)."""
    return DbtCliResource(
        project_dir=project_dir, profiles_dir=project_dir, dbt_executable=dbt_executable
    )


def stream(
    context: AssetExecutionContext,
    cli: DbtCliResource,
    args: list[str],
    manifest_path: str,
    target_path: Path | None = None,
) -> Iterator[Any]:
    """Run ``dbt <args>`` and yield the step's events (raises if dbt fails, after its events).

    ``target_path``: dbt's target folder for this invocation (``transformation.dbt_workdir``).
    """
    invocation = cli.cli(
        args, manifest=manifest_path, dagster_dbt_translator=TRANSLATOR, target_path=target_path
    )
    yield from to_step_events(context, invocation.stream())
