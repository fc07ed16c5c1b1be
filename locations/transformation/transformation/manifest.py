"""The dbt project's asset graph, read from ``target/manifest.json`` without importing dbt.

Why not ``@dbt_assets`` at load: ``import dagster_dbt`` imports dbt-core (jinja2, mashumaro,
sqlglot, ...), and ``@dbt_assets`` evaluates its ``select``/``exclude`` through dbt's graph
selector (networkx): +4 to +9 s on every load of this location, in the webserver, the daemon and
every run worker (docs/benchmarks.md). dagster-dbt offers no way to declare its assets from the
manifest without dbt (``build_dbt_specs`` and the translator live in the same package, whose
``__init__`` imports dbt). So the specs are built here from the manifest's plain JSON, with only
``json`` and ``dagster``; dagster-dbt and dbt are imported inside the asset bodies
(:mod:`transformation.dbt_run`), where a run pays them once next to dbt's own start-up.

What is built here, and what dagster-dbt would have done (a test compares the two:
``tests/test_manifest_specs.py``):

* keys ``[schema, alias]`` (the Iceberg table, :mod:`shared.keys`); dbt sources map to the
  ingestion location's ``raw/*`` keys through ``meta.dagster.asset_key``;
* deps from ``depends_on.nodes``; group and owners from ``meta.dagster``; code versions from
  dbt's checksums;
* one asset check per dbt test, on the model the test is attached to (``attached_node``, or
  ``meta.dagster.ref`` for singular tests), blocking when the test's severity is ``error``, with
  the other models it reads as additional deps;
* selection by dbt *tags* only (``tag:x``, unions, one exclude): the only selectors this project
  uses. Anything else is refused with an error rather than guessed, since dbt itself applies the
  same selection strings at run time and the two must agree.

And what dagster-dbt does not do, for the catalog: column types (``data_type`` in the models'
yml), ``dagster/table_name`` as the Iceberg identifier (dagster-dbt writes DuckDB's
``memory.staging.x``), a description for every check, the ``layer`` tag and code references to
the model's SQL and yml.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetKey,
    AssetSpec,
    AutomationCondition,
    BetaWarning,
    CodeReferencesMetadataValue,
    LocalFileCodeReference,
    PartitionsDefinition,
    TableColumn,
    TableSchema,
)
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet

from shared.catalog import layer_tags
from shared.keys import table_identifier, table_key

#: The spec metadata key holding the dbt node's unique id (the same key dagster-dbt uses).
UNIQUE_ID_KEY = "dagster_dbt/unique_id"
#: Resource types that are assets.
_ASSET_TYPES = ("model", "seed", "snapshot")


@cache
def load_manifest(path: str) -> Mapping[str, Any]:
    """The parsed manifest (read once per process and path)."""
    return json.loads(Path(path).read_text())


def _dagster_meta(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """``meta.dagster`` of a node: dbt puts it under ``config.meta`` or ``meta``."""
    config_meta = (props.get("config") or {}).get("meta") or {}
    return config_meta.get("dagster") or (props.get("meta") or {}).get("dagster") or {}


def node_key(props: Mapping[str, Any]) -> AssetKey:
    """The asset key of a model (its Iceberg table) or a source (``meta.dagster.asset_key``)."""
    asset_key = _dagster_meta(props).get("asset_key")
    if asset_key:
        return AssetKey(asset_key)
    if props["resource_type"] == "source":
        return AssetKey([props["source_name"], props["name"]])
    return table_key(props["schema"], props.get("alias") or props["name"])


def _props(manifest: Mapping[str, Any], unique_id: str) -> Mapping[str, Any]:
    return manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]


@dataclass(frozen=True)
class TagSelection:
    """A dbt selection over tags only: ``select`` is a union (``"tag:a tag:b"``), ``exclude`` one
    tag list. The same strings are passed to dbt at run time."""

    select: str
    exclude: str | None = None

    @staticmethod
    def _tags(selection: str | None) -> frozenset[str]:
        tags = set()
        for part in (selection or "").split():
            method, _, value = part.partition(":")
            if method != "tag" or not value:
                raise ValueError(
                    f"selector {part!r}: only dbt tag selectors (tag:<name>) are supported when "
                    "building specs from the manifest (transformation.manifest)"
                )
            tags.add(value)
        return frozenset(tags)

    def matches(self, tags: Iterable[str]) -> bool:
        tags = set(tags)
        return bool(tags & self._tags(self.select)) and not tags & self._tags(self.exclude)

    def excludes(self, tags: Iterable[str]) -> bool:
        return bool(set(tags) & self._tags(self.exclude))


def tested_model(manifest: Mapping[str, Any], test: Mapping[str, Any]) -> str | None:
    """The unique id of the model a dbt test checks: its ``attached_node`` (generic tests), or
    the model named by ``meta.dagster.ref`` (singular tests), as dagster-dbt attaches them."""
    if test.get("attached_node"):
        return test["attached_node"]
    ref = _dagster_meta(test).get("ref") or {}
    name = ref.get("name")
    if not name:
        return None
    for uid in test["depends_on"]["nodes"]:
        if uid in manifest["nodes"] and manifest["nodes"][uid]["name"] == name:
            return uid
    for uid, props in manifest["nodes"].items():
        if props["resource_type"] in _ASSET_TYPES and props["name"] == name:
            return uid
    return None


def _quoted(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


def describe_test(test: Mapping[str, Any]) -> str:
    """What a dbt test asserts, in words: its own description if it has one (singular tests, in
    ``dbt/tests/tests.yml``), else said from the generic test's name and arguments."""
    if (test.get("description") or "").strip():
        return " ".join(test["description"].split())
    metadata = test.get("test_metadata") or {}
    name = metadata.get("name")
    kwargs = metadata.get("kwargs") or {}
    arguments = kwargs.get("arguments") or kwargs
    column = test.get("column_name") or kwargs.get("column_name")
    severity = (test.get("config") or {}).get("severity", "error").lower()
    if name == "not_null":
        text = f"`{column}` is never null."
    elif name == "unique":
        text = f"`{column}` is unique (no two rows share a value)."
    elif name == "accepted_values":
        text = f"`{column}` is one of: {_quoted(arguments.get('values') or ())}."
    elif name == "relationships":
        to = str(arguments.get("to", "")).replace("ref('", "").replace("')", "")
        text = f"every `{column}` exists in `{to}.{arguments.get('field')}`."
    else:
        text = f"dbt test `{test['name']}`."
    blocking = "fails the run" if severity == "error" else "warns only"
    return f"dbt test: {text} Severity {severity} ({blocking})."


def column_schema(props: Mapping[str, Any]) -> TableSchema:
    """The model's columns from its yml: name, ``data_type`` and description."""
    return TableSchema(
        columns=[
            TableColumn(
                name=name,
                type=column.get("data_type") or "unknown",
                description=" ".join((column.get("description") or "").split()) or None,
            )
            for name, column in (props.get("columns") or {}).items()
        ]
    )


def _code_references(project_dir: Path, props: Mapping[str, Any]) -> CodeReferencesMetadataValue:
    refs = [
        LocalFileCodeReference(
            file_path=str(project_dir / props["original_file_path"]),
            line_number=1,
            label="dbt model SQL",
        )
    ]
    patch = props.get("patch_path") or ""
    if "://" in patch:
        refs.append(
            LocalFileCodeReference(
                file_path=str(project_dir / patch.split("://", 1)[1]),
                line_number=1,
                label="dbt model yml (columns, tests)",
            )
        )
    return CodeReferencesMetadataValue(code_references=refs)


def code_references(project_dir: Path, props: Mapping[str, Any]) -> CodeReferencesMetadataValue:
    """Links to the model's SQL file and to the yml describing it."""
    # Code references are beta in Dagster 1.13; the warning would be printed on every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        return _code_references(project_dir, props)


@dataclass(frozen=True)
class DbtAssetSpecs:
    """The specs of one dbt selection: models as asset specs, their tests as check specs."""

    specs: list[AssetSpec]
    check_specs: list[AssetCheckSpec]


def build_specs(
    manifest: Mapping[str, Any],
    selection: TagSelection,
    *,
    project_dir: Path,
    partitions_def: PartitionsDefinition | None = None,
    automation_condition: Any = None,
) -> DbtAssetSpecs:
    """Asset and check specs of the models and tests ``selection`` picks in ``manifest``.

    ``automation_condition(props) -> AutomationCondition | None`` gives each model's and each
    test's condition (a test's check with a condition runs on its own, not with its model).
    """
    nodes = manifest["nodes"]
    models = {
        uid: props
        for uid, props in nodes.items()
        if props["resource_type"] in _ASSET_TYPES and selection.matches(props.get("tags") or ())
    }
    specs = []
    for uid, props in sorted(models.items()):
        key = node_key(props)
        meta = _dagster_meta(props)
        condition: AutomationCondition | None = (
            automation_condition(props) if automation_condition else None
        )
        specs.append(
            AssetSpec(
                key=key,
                deps=[node_key(_props(manifest, dep)) for dep in props["depends_on"]["nodes"]],
                description=" ".join((props.get("description") or "").split()) or None,
                group_name=meta.get("group") or props["schema"],
                owners=list(meta.get("owners") or ()),
                tags=layer_tags(props["schema"]),
                kinds={"dbt", "iceberg"},
                code_version=(props.get("checksum") or {}).get("checksum"),
                partitions_def=partitions_def,
                automation_condition=condition,
                skippable=True,
                metadata={
                    **TableMetadataSet(
                        column_schema=column_schema(props), table_name=table_identifier(key)
                    ),
                    UNIQUE_ID_KEY: uid,
                    "dagster/code_references": code_references(project_dir, props),
                },
            )
        )
    check_specs = []
    for uid, test in sorted(nodes.items()):
        if test["resource_type"] != "test" or selection.excludes(test.get("tags") or ()):
            continue
        target = tested_model(manifest, test)
        own_tags = TagSelection._tags(selection.select) & set(test.get("tags") or ())
        if target is None or (target not in models and not own_tags):
            continue
        target_key = node_key(nodes[target])
        others = [
            node_key(_props(manifest, dep))
            for dep in test["depends_on"]["nodes"]
            if dep != target and (dep in nodes or dep in manifest["sources"])
        ]
        check_specs.append(
            AssetCheckSpec(
                name=test["name"],
                asset=target_key,
                description=describe_test(test),
                blocking=(test.get("config") or {}).get("severity", "error").lower() == "error",
                additional_deps=[AssetDep(k) for k in others],
                metadata={UNIQUE_ID_KEY: uid},
                automation_condition=automation_condition(test) if automation_condition else None,
            )
        )
    return DbtAssetSpecs(specs=specs, check_specs=check_specs)


def dbt_selection_names(manifest: Mapping[str, Any], unique_ids: Iterable[str]) -> list[str]:
    """dbt node selectors (fully qualified names) of ``unique_ids``, as dagster-dbt selects a
    subset."""
    return sorted(".".join(manifest["nodes"][uid]["fqn"]) for uid in unique_ids)
