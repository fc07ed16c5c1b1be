"""The contract between locations: an asset key names an Iceberg table.

Asset key ``raw/users`` is Iceberg table ``raw.users``; ``marts/dim_users`` is ``marts.dim_users``.
Every location builds its keys with :func:`table_key` so the mapping lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetKey

#: Iceberg namespaces, one per layer. Ingestion owns ``raw``; transformation ``staging`` and
#: ``marts``; analytics ``ml`` and ``analytics``.
NAMESPACES = ("raw", "staging", "marts", "ml", "analytics")


def table_key(namespace: str, table: str) -> AssetKey:
    """The asset key of Iceberg table ``namespace.table``."""
    return AssetKey([namespace, table])


def table_identifier(key: AssetKey | Sequence[str] | str) -> str:
    """The Iceberg identifier (``namespace.table``) named by an asset key.

    >>> table_identifier(AssetKey(["raw", "users"]))
    'raw.users'
    """
    if isinstance(key, str):
        parts = key.replace("/", ".").split(".")
    elif isinstance(key, AssetKey):
        parts = list(key.path)
    else:
        parts = list(key)
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"asset key {parts!r} does not name an Iceberg table: expected [namespace, table]"
        )
    return ".".join(parts)


def key_for_identifier(identifier: str) -> AssetKey:
    """The asset key of an Iceberg identifier: ``raw.users`` gives ``raw/users``."""
    namespace, _, table = identifier.partition(".")
    if not namespace or not table or "." in table:
        raise ValueError(f"{identifier!r} is not a 'namespace.table' Iceberg identifier")
    return table_key(namespace, table)
