"""The cross-location asset graph, seen from outside the locations.

Loads each location's ``defs`` (the modules named in ``workspace.yaml``), and answers two
questions: which location owns which asset key (the contract between teams), and in which order
runs must go to materialize the whole graph locally (one run per location and partitioning, as
the production deployment would launch them).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from dagster import AssetCheckKey, AssetKey, Definitions

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_FILE = REPO_ROOT / "workspace.yaml"


def workspace_locations(workspace_file: Path = WORKSPACE_FILE) -> dict[str, str]:
    """``{location name: module}`` from ``workspace.yaml``, in file order."""
    doc = yaml.safe_load(workspace_file.read_text())
    out: dict[str, str] = {}
    for entry in doc["load_from"]:
        spec = entry["python_module"]
        out[spec["location_name"]] = spec["module_name"]
    return out


def load_location_defs(workspace_file: Path = WORKSPACE_FILE) -> dict[str, Definitions]:
    """Import every location's ``defs``."""
    return {
        name: importlib.import_module(module).defs
        for name, module in workspace_locations(workspace_file).items()
    }


@dataclass
class LocationGraph:
    """What each location produces and what it reads from outside itself."""

    produces: dict[str, set[AssetKey]] = field(default_factory=dict)
    reads: dict[str, set[AssetKey]] = field(default_factory=dict)
    parents: dict[AssetKey, set[AssetKey]] = field(default_factory=dict)
    partitioned: dict[AssetKey, bool] = field(default_factory=dict)

    @property
    def owner(self) -> dict[AssetKey, str]:
        return {key: loc for loc, keys in self.produces.items() for key in keys}


def build_location_graph(location_defs: dict[str, Definitions]) -> LocationGraph:
    graph = LocationGraph()
    for name, defs in location_defs.items():
        asset_graph = defs.resolve_asset_graph()
        produced = set(asset_graph.materializable_asset_keys)
        graph.produces[name] = produced
        external: set[AssetKey] = set()
        for key in produced:
            node = asset_graph.get(key)
            graph.parents[key] = set(node.parent_keys)
            graph.partitioned[key] = node.partitions_def is not None
            external |= {p for p in node.parent_keys if p not in produced}
        graph.reads[name] = external
    return graph


def contract_violations(graph: LocationGraph) -> list[str]:
    """Every way the locations disagree about who produces what; empty when the contract holds.

    * a key produced by two locations;
    * a key a location reads that no other location produces (a team renamed or dropped it);
    * a key that does not name an Iceberg table (``[namespace, table]``).
    """
    problems: list[str] = []
    producers: dict[AssetKey, list[str]] = {}
    for loc, keys in graph.produces.items():
        for key in keys:
            producers.setdefault(key, []).append(loc)
            if len(key.path) != 2:
                problems.append(
                    f"{loc} produces {key.to_user_string()}, which does not name an Iceberg "
                    "table (expected namespace/table)"
                )
    for key, locs in sorted(producers.items()):
        if len(locs) > 1:
            problems.append(f"{key.to_user_string()} is produced by {len(locs)} locations: {locs}")
    for loc, keys in graph.reads.items():
        for key in sorted(keys):
            others = [p for p in producers.get(key, []) if p != loc]
            if len(others) != 1:
                problems.append(
                    f"{loc} reads {key.to_user_string()}, produced by "
                    f"{others or 'no other location'} (expected exactly one)"
                )
    return problems


@dataclass(frozen=True)
class PlannedRun:
    """One run: a set of assets of one location, all partitioned or all not."""

    location: str
    asset_keys: tuple[AssetKey, ...]
    partitioned: bool


def plan_runs(graph: LocationGraph) -> list[PlannedRun]:
    """Order runs so each starts after everything it reads, fewest runs first.

    Greedy: take the ready keys of one (location, partitioned) group, then keep adding keys of
    the same group whose parents are done or in the batch, so a location's chain runs together.
    A group that could run now only in part (some of its keys wait for another group) waits while
    a group that can run whole is ready: so transformation's unpartitioned models run as one dbt
    invocation after the daily ones, not as two around them (each dbt process costs seconds).
    """
    owner = graph.owner
    remaining = set(owner)
    done: set[AssetKey] = set()
    runs: list[PlannedRun] = []

    def ready(key: AssetKey, batch: set[AssetKey]) -> bool:
        return all(p in done or p in batch or p not in owner for p in graph.parents[key])

    while remaining:
        candidates = sorted(
            (k for k in remaining if ready(k, set())),
            key=lambda k: (owner[k], graph.partitioned[k], k.to_user_string()),
        )
        if not candidates:
            raise RuntimeError(f"cycle in the asset graph among {sorted(remaining)}")

        def grow(
            first: AssetKey, remaining: set[AssetKey]
        ) -> tuple[tuple[str, bool], set[AssetKey]]:
            group = (owner[first], graph.partitioned[first])
            batch = {first}
            grew = True
            while grew:
                grew = False
                for key in sorted(remaining - batch, key=AssetKey.to_user_string):
                    if (owner[key], graph.partitioned[key]) == group and ready(key, batch):
                        batch.add(key)
                        grew = True
            return group, batch

        options = [grow(first, remaining) for first in candidates]
        whole = [
            (group, batch)
            for group, batch in options
            if not any((owner[k], graph.partitioned[k]) == group for k in remaining - batch)
        ]
        group, batch = (whole or options)[0]
        runs.append(
            PlannedRun(group[0], tuple(sorted(batch, key=AssetKey.to_user_string)), group[1])
        )
        done |= batch
        remaining -= batch
    return runs


def workspace_definitions(location_defs: dict[str, Definitions]) -> Definitions:
    """Every location's assets in one graph, as the daemon sees the workspace, to evaluate the
    automation conditions on (nothing runs from it).

    The locations' resources are equal but distinct objects under the same keys (``iceberg``),
    which ``Definitions.merge`` refuses; one of each key is enough to evaluate conditions.
    """
    assets: list = []
    resources: dict = {}
    for defs in location_defs.values():
        assets.extend(defs.assets or [])
        for key, resource in (defs.resources or {}).items():
            resources.setdefault(key, resource)
    return Definitions(assets=assets, resources=resources)


@dataclass(frozen=True)
class RequestedRun:
    """One run the automation asked for: some assets of a planned run, and for partitioned ones
    one contiguous range of days (``first``..``last``, inclusive partition keys); or, with no
    assets, ``check_keys``: checks requested by a condition of their own (a nightly test)."""

    location: str
    asset_keys: tuple[AssetKey, ...]
    partition_range: tuple[str, str] | None = None
    check_keys: tuple[AssetCheckKey, ...] = ()


def contiguous_ranges(partition_keys: set[str]) -> list[tuple[str, str]]:
    """Daily partition keys (ISO dates) grouped into inclusive ``(first, last)`` runs of
    consecutive days: each is one single-run backfill.

    >>> contiguous_ranges({"2026-01-03", "2026-01-01", "2026-01-02", "2026-03-01"})
    [('2026-01-01', '2026-01-03'), ('2026-03-01', '2026-03-01')]
    """
    import datetime as dt

    days = sorted(dt.date.fromisoformat(k) for k in partition_keys)
    ranges: list[tuple[str, str]] = []
    for day in days:
        if ranges and dt.date.fromisoformat(ranges[-1][1]) + dt.timedelta(days=1) == day:
            ranges[-1] = (ranges[-1][0], day.isoformat())
        else:
            ranges.append((day.isoformat(), day.isoformat()))
    return ranges


def plan_requested_runs(
    plan: list[PlannedRun], requested: dict[AssetKey | AssetCheckKey, set[str] | None]
) -> list[RequestedRun]:
    """The runs that carry out one automation tick's requests, in the plan's dependency order.

    ``requested``: per asset key, the requested partition keys (None: an unpartitioned asset).
    Assets of one planned run with the same requested days run together; non-contiguous days
    (a late day and the newest) become one run per contiguous range. Checks requested on their
    own (``AssetCheckKey``s) run after those, without their assets: one run for the checks of
    each planned run's assets.
    """
    checks = sorted((k for k in requested if isinstance(k, AssetCheckKey)), key=str)
    check_runs = [
        RequestedRun(planned.location, (), check_keys=own)
        for planned in plan
        if (own := tuple(c for c in checks if c.asset_key in planned.asset_keys))
    ]
    runs: list[RequestedRun] = []
    for planned in plan:
        keys = [k for k in planned.asset_keys if k in requested]
        if not keys:
            continue
        if not planned.partitioned:
            runs.append(RequestedRun(planned.location, tuple(keys)))
            continue
        by_days: dict[frozenset[str], list[AssetKey]] = {}
        for key in keys:
            by_days.setdefault(frozenset(requested[key] or ()), []).append(key)
        for days, group in sorted(by_days.items(), key=lambda item: sorted(item[0])):
            for first, last in contiguous_ranges(set(days)):
                runs.append(RequestedRun(planned.location, tuple(group), (first, last)))
    return runs + check_runs


def sync_runs(graph: LocationGraph, plan: list[PlannedRun]) -> list[RequestedRun]:
    """The runs whose assets read nothing another location produces: the raw syncs (in a
    deployment the ingestion schedule or the landing sensor starts them; automation the rest)."""
    produced = set(graph.owner)
    return [
        RequestedRun(p.location, p.asset_keys)
        for p in plan
        if not any(graph.parents[k] & produced for k in p.asset_keys)
    ]
