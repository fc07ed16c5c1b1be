"""The contract between locations: every key a team reads is produced by exactly one other team."""

from __future__ import annotations

from dagster import AssetKey, AssetSpec, Definitions, asset

from data_platform.graph import build_location_graph, contract_violations, load_location_defs
from shared.keys import NAMESPACES


def test_the_real_locations_keep_the_contract():
    graph = build_location_graph(load_location_defs())
    assert contract_violations(graph) == []
    # Each layer's namespace belongs to one location.
    for loc, keys in graph.produces.items():
        assert keys, f"{loc} produces nothing"
        assert {k.path[0] for k in keys} <= set(NAMESPACES)


def test_the_real_locations_read_across_the_graph():
    graph = build_location_graph(load_location_defs())
    assert AssetKey(["raw", "users"]) in graph.reads["transformation"]
    assert AssetKey(["raw", "events"]) in graph.reads["transformation"]
    assert any(k.path[0] in ("staging", "marts") for k in graph.reads["analytics"])
    assert graph.reads["ingestion"] == set()


def _defs(*keys, reads=()):
    specs = [AssetSpec(list(r)) for r in reads]

    def make(key):
        @asset(key=list(key), deps=[list(r) for r in reads])
        def _a():
            """test asset"""

        return _a

    return Definitions(assets=[make(k) for k in keys] + specs)


def test_a_renamed_upstream_asset_breaks_the_contract():
    graph = build_location_graph(
        {
            "ingestion": _defs(("raw", "customers")),  # renamed from raw/users
            "transformation": _defs(("staging", "stg_users"), reads=[("raw", "users")]),
        }
    )
    problems = contract_violations(graph)
    assert problems == [
        "transformation reads raw/users, produced by no other location (expected exactly one)"
    ]


def test_a_key_defined_twice_breaks_the_contract():
    graph = build_location_graph(
        {"ingestion": _defs(("raw", "users")), "analytics": _defs(("raw", "users"))}
    )
    assert any("produced by 2 locations" in p for p in contract_violations(graph))
