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


def test_raw_tables_read_by_daily_models_record_their_changed_days():
    """The changed-days contract: every raw table a daily asset reads says which days each sync
    changed (``shared.changes``), and the key is documented with the tables."""
    from pathlib import Path

    from ingestion.streams import STREAMS
    from shared.changes import CHANGED_EVENT_DAYS

    graph = build_location_graph(load_location_defs())
    daily_parents = {
        parent
        for key, parents in graph.parents.items()
        if graph.partitioned.get(key)
        for parent in parents
        if parent.path[0] == "raw"
    }
    assert daily_parents == {AssetKey(["raw", "events"])}
    recording = {s.key for s in STREAMS if s.event_time_column}
    assert daily_parents <= recording
    doc = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    assert f"`{CHANGED_EVENT_DAYS}`" in doc


def test_freshness_is_checked_by_the_owner_of_each_raw_table_and_mart():
    """Issue 12 item 13: Dagster freshness checks on the raw tables and the marts, each declared
    by the location that owns the asset (the team that can fix it), with one sensor per
    location that evaluates them on its own schedule."""
    from shared.monitoring import FRESHNESS_CHECK_NAME

    location_defs = load_location_defs()
    graph = build_location_graph(location_defs)
    checked = {}
    for loc, defs in location_defs.items():
        keys = {
            k.asset_key
            for k in defs.resolve_asset_graph().asset_check_keys
            if k.name == FRESHNESS_CHECK_NAME
        }
        assert keys <= graph.produces[loc], f"{loc} checks the freshness of assets it does not own"
        if keys:
            assert f"{loc}_freshness_checks" in {s.name for s in defs.sensors}
        checked.update(dict.fromkeys(keys, loc))
    assert checked == {
        AssetKey(["raw", "users"]): "ingestion",
        AssetKey(["raw", "events"]): "ingestion",
        AssetKey(["marts", "dim_users"]): "transformation",
        AssetKey(["marts", "fct_daily_events"]): "transformation",
    }
