"""The asset catalog's conventions, the same in every location: owners, tags, code references.

* **Owners**: each asset names its team (``team:<name>``, :data:`TEAMS`), the team that answers
  for the table.
* **Tags**: ``layer`` is the Iceberg namespace the asset writes (``raw``, ``staging``, ``marts``,
  ``ml``, ``analytics``: :data:`shared.keys.NAMESPACES`), so one filter in the UI shows a layer
  across locations.
* **Code references**: each asset links to the file that defines it (Dagster's
  ``with_source_code_references``; dbt models link their SQL and yml themselves), turned into links
  to the git repository when ``DATA_PLATFORM_GIT_URL`` is set (``link_code_references_to_git``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.keys import NAMESPACES

#: The teams owning assets, by location (README.md's layout).
TEAMS = {
    "ingestion": "team:ingestion",
    "transformation": "team:analytics-engineering",
    "analytics": "team:data-science",
}


def owners(location: str) -> list[str]:
    """The owners of a location's assets."""
    try:
        return [TEAMS[location]]
    except KeyError:
        raise ValueError(f"no team for location {location!r}; known: {', '.join(TEAMS)}") from None


def layer_tags(layer: str) -> dict[str, str]:
    """The catalog tags of an asset writing a table of namespace ``layer``."""
    if layer not in NAMESPACES:
        raise ValueError(
            f"layer {layer!r} is not an Iceberg namespace of the platform {NAMESPACES}"
        )
    return {"layer": layer}


def repository_root() -> Path | None:
    """The checkout's root (the folder holding ``workspace.yaml``) above this file, if any."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "workspace.yaml").exists() and (parent / "pyproject.toml").exists():
            return parent
    return None


def with_code_references(assets: Sequence[Any]) -> list[Any]:
    """``assets`` linked to their source files, and to the git repository when configured.

    Cheap: reads two environment variables through ``shared.settings`` and the assets'
    ``__code__`` locations; no git call.
    """
    from dagster import (
        AnchorBasedFilePathMapping,
        BetaWarning,
        link_code_references_to_git,
        with_source_code_references,
    )

    from shared.settings import load_code_reference_settings

    settings = load_code_reference_settings()
    root = repository_root()
    # Code references are beta in Dagster 1.13; the warning would be printed on every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        linked = with_source_code_references(list(assets))
        if settings.git_url and root is not None:
            linked = link_code_references_to_git(
                linked,
                git_url=settings.git_url,
                git_branch=settings.git_branch,
                file_path_mapping=AnchorBasedFilePathMapping(
                    local_file_anchor=root, file_anchor_path_in_repository=""
                ),
            )
    return list(linked)
