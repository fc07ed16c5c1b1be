"""A throwaway PostgreSQL server for the benchmark's Dagster instance.

The deployment stores Dagster's runs and events in PostgreSQL (the Helm chart's
``postgresql`` storage, ``deploy/helm``); the local demo stores them in SQLite files. The two
differ in what each event costs: Dagster's SQLite event log opens a connection per event, commits
and closes it (and the last close checkpoints the write-ahead log), which on a busy disk costs
tens of milliseconds per event, and a new day's cycle writes about 300 events (most of them the
64 asset checks'). A benchmark of "what production runs" therefore runs its instance on a real
PostgreSQL server: ``pgserver`` (a dev dependency) ships the PostgreSQL binaries as a wheel, and
starts a server on a Unix socket in a scratch folder, deleted when the benchmark ends.

Nothing here is used by the platform itself: the demo keeps its SQLite instance (no server).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def postgres_storage(url: str) -> dict[str, Any]:
    """The instance ``storage`` override of a PostgreSQL URL (dagster-postgres)."""
    return {"storage": {"postgres": {"postgres_url": url}}}


@contextlib.contextmanager
def throwaway_postgres(folder: Path, database: str = "dagster") -> Iterator[str]:
    """Start PostgreSQL with its data in ``folder`` (created), yield a URL of a new ``database``
    on it, stop the server and delete its data at exit.

    Raises ``RuntimeError`` naming the cause when no server can be started (``pgserver`` missing,
    or PostgreSQL refusing to start here).
    """
    try:
        import pgserver
    except ImportError as error:  # pragma: no cover - the dev group installs it
        raise RuntimeError(
            "pgserver is not installed (a dev dependency: `uv sync` installs it)"
        ) from error
    import psycopg2

    folder.mkdir(parents=True, exist_ok=True)
    # pgserver runs PostgreSQL as its own system user when started as root (PostgreSQL refuses
    # to run as root), and deletes the data folder when the last handle is cleaned up.
    server = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        # pgserver's URI names the socket folder as libpq's ``host`` parameter.
        admin = server.get_uri("postgres").replace("postgresql+psycopg://", "postgresql://")
        connection = psycopg2.connect(admin)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'create database "{database}"')
        finally:
            connection.close()
        # The driver named, as the deployment names it (deploy/helm/dagster.values.yaml).
        url = admin.replace("/postgres?", f"/{database}?", 1)
        yield url.replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        server.cleanup()
