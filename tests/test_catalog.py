"""The asset catalog is even across the three locations (issue: the catalog is uneven).

Read from the locations' Definitions objects, as the webserver gets them: every asset has an
owner (its team), a ``layer`` tag equal to its Iceberg namespace, a column schema whose columns
all have a type and a description, ``dagster/table_name`` equal to the Iceberg identifier it
writes, a clean description, code references; every check has a description.
"""

from __future__ import annotations

import importlib

import pytest
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet

from shared.catalog import TEAMS
from shared.keys import table_identifier

LOCATIONS = ("ingestion", "transformation", "analytics")


def _graph(location: str):
    return importlib.import_module(f"{location}.definitions").defs.resolve_asset_graph()


@pytest.mark.parametrize("location", LOCATIONS)
def test_every_asset_is_catalogued(location):
    graph = _graph(location)
    keys = graph.materializable_asset_keys
    assert keys
    for key in keys:
        node = graph.get(key)
        assert node.owners == [TEAMS[location]] or (
            location == "transformation" and TEAMS[location] in node.owners
        ), (key, node.owners)
        assert node.tags.get("layer") == key.path[0], (key, node.tags)
        assert node.description and "``" not in node.description, key
        table = TableMetadataSet.extract(node.metadata)
        assert table.table_name == table_identifier(key), key
        columns = table.column_schema.columns
        assert columns, key
        for column in columns:
            assert column.type and column.type not in ("?", "unknown"), (key, column)
            assert column.description, (key, column.name)
        refs = node.metadata["dagster/code_references"].code_references
        assert refs and all(r.file_path for r in refs), key
        assert any(r.file_path.endswith(f"{location}/assets.py") for r in refs) or location == (
            "transformation"
        ), refs


@pytest.mark.parametrize("location", LOCATIONS)
def test_every_check_has_a_description(location):
    graph = _graph(location)
    assert graph.asset_check_keys
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.description and len(spec.description) > 10, check_key
        assert "``" not in spec.description, check_key


def test_analytics_columns_match_the_frames_declared_schemas():
    from analytics.columns import DAILY_METRICS_COLUMNS, USER_FEATURES_COLUMNS
    from analytics.features import FEATURE_SCHEMA
    from analytics.metrics import METRIC_SCHEMA

    assert [(n, t) for n, t, _ in USER_FEATURES_COLUMNS] == [
        (n, str(t)) for n, t in FEATURE_SCHEMA.items()
    ]
    assert [(n, t) for n, t, _ in DAILY_METRICS_COLUMNS] == [
        (n, str(t)) for n, t in METRIC_SCHEMA.items()
    ]


def test_code_references_link_to_git_when_configured(monkeypatch):
    from dagster import AssetKey, UrlCodeReference

    from shared.catalog import with_code_references

    monkeypatch.setenv("DATA_PLATFORM_GIT_URL", "https://github.com/example/data-platform")
    monkeypatch.setenv("DATA_PLATFORM_GIT_BRANCH", "release")
    analytics_assets = importlib.import_module("analytics.assets")
    (linked,) = with_code_references([analytics_assets.user_features])
    refs = linked.metadata_by_key[AssetKey(["ml", "user_features"])][
        "dagster/code_references"
    ].code_references
    assert refs and all(isinstance(r, UrlCodeReference) for r in refs)
    assert refs[0].url.startswith(
        "https://github.com/example/data-platform/tree/release/locations/analytics/analytics/assets.py"
    )
