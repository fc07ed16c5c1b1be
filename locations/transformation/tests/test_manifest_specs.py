"""Specs built from the manifest without dbt match what dagster-dbt's ``@dbt_assets`` builds, and
loading the location imports neither dbt nor dagster-dbt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dagster import AssetKey
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet

from transformation.assets import (
    CROSS_PARTITIONING_TAG,
    DAILY_SELECT,
    FULL_SELECTION,
    dbt_daily_models,
    dbt_models,
)
from transformation.manifest import TagSelection, describe_test, load_manifest
from transformation.project import DBT_PROJECT_DIR, MANIFEST_PATH


def _dagster_dbt_assets():
    """The two definitions as ``@dbt_assets`` would build them (the reference)."""
    from dagster_dbt import DbtProject, dbt_assets

    from transformation.dbt_run import TRANSLATOR

    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

    @dbt_assets(
        manifest=MANIFEST_PATH,
        project=project,
        select=DAILY_SELECT,
        exclude=CROSS_PARTITIONING_TAG,
        dagster_dbt_translator=TRANSLATOR,
    )
    def daily(): ...

    @dbt_assets(
        manifest=MANIFEST_PATH,
        project=project,
        select=FULL_SELECTION.select,
        dagster_dbt_translator=TRANSLATOR,
    )
    def full(): ...

    return daily, full


def _graph(assets_def):
    specs = {
        spec.key: (
            sorted(d.asset_key.to_user_string() for d in spec.deps),
            spec.group_name,
            sorted(spec.owners),
        )
        for spec in assets_def.specs
    }
    checks = {
        spec.key: (
            spec.blocking,
            sorted(d.asset_key.to_user_string() for d in spec.additional_deps),
        )
        for spec in assets_def.check_specs
    }
    return specs, checks


@pytest.mark.parametrize("index", [0, 1], ids=["daily", "full"])
def test_specs_match_dagster_dbt(index):
    """Keys, deps, groups, owners, checks (blocking, additional deps) as dagster-dbt has them."""
    ours = (dbt_daily_models, dbt_models)[index]
    reference = _dagster_dbt_assets()[index]
    assert _graph(ours) == _graph(reference)
    assert len(ours.check_specs and list(ours.check_specs)) > 5


def test_every_test_is_a_described_check():
    manifest = load_manifest(str(MANIFEST_PATH))
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    checks = [*dbt_daily_models.check_specs, *dbt_models.check_specs]
    assert len(checks) == len(tests) == 38
    for spec in checks:
        assert spec.description and len(spec.description) > 20, spec.key
        assert "``" not in spec.description


def test_check_descriptions_say_what_is_asserted():
    assert (
        describe_test(
            {
                "name": "accepted_values_x",
                "column_name": "plan",
                "config": {"severity": "ERROR"},
                "test_metadata": {
                    "name": "accepted_values",
                    "kwargs": {"arguments": {"values": ["free", "pro"]}},
                },
            }
        )
        == "dbt test: `plan` is one of: free, pro. Severity error (fails the run)."
    )
    assert (
        describe_test(
            {
                "name": "r",
                "column_name": "user_id",
                "config": {"severity": "warn"},
                "test_metadata": {
                    "name": "relationships",
                    "kwargs": {"to": "ref('stg_users')", "field": "user_id"},
                },
            }
        )
        == "dbt test: every `user_id` exists in `stg_users.user_id`. Severity warn (warns only)."
    )


def test_models_have_typed_columns_iceberg_table_names_and_code_references():
    for assets_def in (dbt_daily_models, dbt_models):
        for spec in assets_def.specs:
            table = TableMetadataSet.extract(spec.metadata)
            schema = table.column_schema
            assert schema.columns and all(c.type != "unknown" for c in schema.columns), spec.key
            assert all(c.description for c in schema.columns), spec.key
            assert table.table_name == ".".join(spec.key.path)
            assert spec.tags["layer"] == spec.key.path[0]
            refs = spec.metadata["dagster/code_references"].code_references
            assert any(r.file_path.endswith(".sql") for r in refs), spec.key


def test_only_tag_selectors_are_accepted():
    with pytest.raises(ValueError, match="only dbt tag selectors"):
        TagSelection(select="path:models/staging").matches(["daily"])
    assert TagSelection("tag:a tag:b", "tag:c").matches(["b"])
    assert not TagSelection("tag:a tag:b", "tag:c").matches(["a", "c"])


def test_loading_the_location_imports_neither_dbt_nor_dagster_dbt():
    code = (
        "import sys, json; import transformation.definitions as d; d.defs.resolve_asset_graph();"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'dbt', 'dagster_dbt', 'networkx', 'agate', 'trino'})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.splitlines()[-1]) == []


def test_a_missing_manifest_is_prepared_in_one_line(tmp_path, monkeypatch):
    """A fresh clone: no dbt/target/manifest.json; loading prepares it and says so once."""
    import transformation.project as project

    moved = tmp_path / "manifest.json"
    manifest = project.MANIFEST_PATH
    manifest.rename(moved)
    try:
        code = "import transformation.definitions as d; print(len(d.defs.resolve_asset_graph().materializable_asset_keys))"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "5"
        lines = [line for line in proc.stderr.splitlines() if "dbt manifest" in line]
        assert lines == [
            f"dbt manifest missing: preparing it (dbt parse, about 10 s) -> {manifest}"
        ]
        assert manifest.exists()
    finally:
        if not manifest.exists():
            moved.rename(manifest)


def test_selection_keys_agree():
    assert {
        AssetKey(["staging", "stg_users"]),
        AssetKey(["staging", "stg_user_versions"]),
        AssetKey(["marts", "dim_users"]),
    } == set(dbt_models.keys)


def _context(assets_def, keys, checks):
    """What ``selection_args`` reads of a step's context, for a subset of ``assets_def``."""
    from types import SimpleNamespace

    subset = assets_def.subset_for(set(keys), set(checks))
    return SimpleNamespace(
        assets_def=subset, selected_asset_keys=set(keys), selected_asset_check_keys=set(checks)
    )


def test_dbt_selection_of_whole_and_subset_runs():
    from transformation.dbt_run import selection_args

    manifest = load_manifest(str(MANIFEST_PATH))
    stg_users = AssetKey(["staging", "stg_users"])
    all_checks = set(dbt_models.check_keys)
    whole = _context(dbt_models, dbt_models.keys, all_checks)
    assert selection_args(whole, manifest, FULL_SELECTION.select, None) == [
        "--select",
        "tag:full tag:cross_partitioning",
        "--indirect-selection",
        "buildable",
    ]
    users_checks = {c for c in all_checks if c.asset_key == stg_users}
    one = _context(dbt_models, [stg_users], users_checks)
    assert selection_args(one, manifest, FULL_SELECTION.select, None) == [
        "--select",
        "data_platform.staging.stg_users",
        "--indirect-selection",
        "buildable",
    ]
    check = next(c for c in users_checks if c.name.startswith("unique_"))
    only_check = _context(dbt_models, [], [check])
    assert selection_args(only_check, manifest, FULL_SELECTION.select, None) == [
        "--select",
        "data_platform.staging.unique_stg_users_user_id",
        "--indirect-selection",
        "empty",
    ]
