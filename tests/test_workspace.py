"""The workspace as a user sees it: the real webserver, three locations, edges across them."""

from __future__ import annotations

import time

import pytest
import yaml

from data_platform.graph import workspace_locations
from tests.webserver import ASSET_NODES_QUERY, REPO, running_webserver

pytestmark = pytest.mark.slow

LOCATIONS = {"ingestion", "transformation", "analytics"}


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("webserver")
    with running_webserver(
        REPO / "workspace.yaml", home / "dagster", env={"DATA_PLATFORM_HOME": str(home / "lake")}
    ) as server:
        server.wait_loaded(LOCATIONS)
        yield server


def test_workspace_file_lists_the_three_locations():
    assert set(workspace_locations()) == LOCATIONS


def test_all_three_locations_load_without_errors(webserver):
    entries = webserver.locations()
    for name in LOCATIONS:
        assert entries[name]["loadStatus"] == "LOADED"
        loaded = entries[name]["locationOrLoadError"]
        assert loaded["__typename"] == "RepositoryLocation", f"{name}: {loaded.get('message')}"


def _edges(webserver):
    nodes = webserver.graphql(ASSET_NODES_QUERY)["assetNodes"]
    owner = {
        "/".join(n["assetKey"]["path"]): n["repository"]["location"]["name"]
        for n in nodes
        if n["isMaterializable"]
    }
    edges = set()
    for n in nodes:
        child = "/".join(n["assetKey"]["path"])
        for dep in n["dependencyKeys"]:
            edges.add(("/".join(dep["path"]), child))
    return owner, edges


def test_lineage_crosses_locations(webserver):
    owner, edges = _edges(webserver)
    assert owner["raw/users"] == "ingestion" and owner["raw/events"] == "ingestion"
    assert owner["staging/stg_users"] == "transformation"
    assert owner["ml/user_features"] == "analytics"
    cross = {(a, b) for a, b in edges if a in owner and b in owner and owner[a] != owner[b]}
    assert ("raw/users", "staging/stg_users") in cross
    assert ("raw/events", "staging/stg_events") in cross
    assert any(owner[a] == "transformation" and owner[b] == "analytics" for a, b in cross)


def test_a_broken_location_does_not_take_down_the_others(tmp_path):
    """Location isolation: one location fails to import; the other two load and stay usable."""
    broken = tmp_path / "broken_analytics.py"
    broken.write_text("import analytics.definitions\nraise RuntimeError('deliberately broken')\n")
    doc = yaml.safe_load((REPO / "workspace.yaml").read_text())
    for entry in doc["load_from"]:
        if entry["python_module"]["location_name"] == "analytics":
            entry.clear()
            entry["python_file"] = {"relative_path": str(broken), "location_name": "analytics"}
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(doc))
    with running_webserver(
        workspace, tmp_path / "dagster", env={"DATA_PLATFORM_HOME": str(tmp_path / "lake")}
    ) as server:
        entries = server.wait_loaded({"ingestion", "transformation"})
        deadline = time.monotonic() + 120
        while entries["analytics"]["loadStatus"] != "LOADED" and time.monotonic() < deadline:
            time.sleep(1)
            entries = server.locations()
        error = entries["analytics"]["locationOrLoadError"]
        assert error["__typename"] == "PythonError"
        chain = [error["message"]] + [c["error"]["message"] for c in error["errorChain"]]
        assert any("deliberately broken" in m for m in chain), chain
        owner, _ = _edges(server)
        assert owner["raw/users"] == "ingestion"
        assert owner["staging/stg_users"] == "transformation"
        # ... and keep running: a run of the ingestion location succeeds through the webserver.
        assert server.run_job("ingestion", "ingestion_job") == "SUCCESS"
        assert (tmp_path / "lake" / "warehouse" / "raw" / "events").is_dir()


CATALOG_QUERY = """
{ assetNodes { assetKey { path } isMaterializable description
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    tags { key value }
    metadataEntries { label __typename
        ... on TextMetadataEntry { text }
        ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
        ... on CodeReferencesMetadataEntry { codeReferences {
            __typename ... on LocalFileCodeReference { filePath } ... on UrlCodeReference { url } } }
    }
    assetChecksOrError { ... on AssetChecks { checks { name description } } }
} }
"""


def test_catalog_through_graphql(webserver):
    """What the UI's catalog shows, for every asset of the three locations: an owner team, the
    `layer` tag, typed and described columns, the Iceberg table name, code references, and a
    description on every check."""
    nodes = [n for n in webserver.graphql(CATALOG_QUERY)["assetNodes"] if n["isMaterializable"]]
    assert len(nodes) == 9  # 2 raw, 3 staging, 2 marts, 2 analytics
    checks = 0
    for node in nodes:
        path = node["assetKey"]["path"]
        key = "/".join(path)
        assert any(o.get("team") for o in node["owners"]), key
        assert {"key": "layer", "value": path[0]} in node["tags"], key
        assert node["description"] and "``" not in node["description"], key
        meta = {m["label"]: m for m in node["metadataEntries"]}
        assert meta["dagster/table_name"]["text"] == ".".join(path), key
        columns = meta["dagster/column_schema"]["schema"]["columns"]
        assert columns and all(c["type"] and c["description"] for c in columns), key
        assert meta["dagster/code_references"]["codeReferences"], key
        for check in node["assetChecksOrError"]["checks"]:
            assert check["description"], (key, check["name"])
            checks += 1
    assert checks >= 32 + 12
