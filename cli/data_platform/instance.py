"""The local platform's Dagster instance (``DATA_PLATFORM_HOME/dagster``), safe to open from
several processes at once.

Three ``data-platform demo`` processes started together on a fresh home each created the
instance's SQLite databases, and each stamped Alembic's version table: two version rows, after
which every later run failed at start ("Version table 'alembic_version' has more than one head
present"). Here the instance is created once, under an exclusive file lock (``fcntl.flock`` on
a file beside it, released by the kernel if the process dies), with its ``dagster.yaml``; later
opens find it complete.

The ``dagster.yaml`` written here also sets the instance's concurrency pools: the raw assets
run in pool :data:`ingestion.assets.RAW_SYNC_POOL`, limited to one step at a time (the Helm
instance config of ``deploy/`` sets the same default limit), so two runs never sync the raw
tables at once. The table commit is safe without it (``shared.iceberg.append_new``); the pool
saves the second sync the work of generating and writing what the first already committed.

A run killed while it holds a pool slot would hold it forever on a local instance (no daemon
frees it): :func:`release_dead_runs` marks such runs failed and frees their slots when the next
process opens the instance.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import DagsterInstance

#: The instance's configuration, written as ``dagster.yaml`` when the instance is created (an
#: existing ``dagster.yaml`` is left as it is).
INSTANCE_YAML = """\
# The local platform's Dagster instance (data-platform demo; `dagster dev` with DAGSTER_HOME
# set to this folder). Storage: Dagster's defaults, SQLite in this folder.
concurrency:
  pools:
    # Every pool (the raw syncs' `raw_sync`) runs one step at a time, as in deploy/helm.
    default_limit: 1
"""
#: Run tag naming the process that executes a run in-process (see :func:`release_dead_runs`).
PID_TAG = "data-platform/pid"
LOCK_FILE = ".instance.lock"


@contextmanager
def _locked(instance_dir: Path) -> Iterator[None]:
    instance_dir.mkdir(parents=True, exist_ok=True)
    with (instance_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_instance(instance_dir: Path) -> Path:
    """Create the instance at ``instance_dir`` unless it exists: ``dagster.yaml`` and its
    databases, once, under an exclusive lock (concurrent callers wait, then find it made)."""
    with _locked(instance_dir):
        config = instance_dir / "dagster.yaml"
        if not config.exists():
            partial = config.with_name(f".dagster.yaml.{os.getpid()}")
            partial.write_text(INSTANCE_YAML)
            partial.replace(config)  # atomic: a reader sees no file or the whole file
        # Opening creates the SQLite databases and stamps their schema version; under the lock
        # only one process does it.
        with DagsterInstance.from_config(str(instance_dir)) as instance:
            release_dead_runs(instance)
    return instance_dir


@contextmanager
def open_instance(
    instance_dir: Path, overrides: Mapping[str, Any] | None = None
) -> Iterator[DagsterInstance]:
    """The instance at ``instance_dir`` (created first if needed), with ``overrides`` applied
    over its ``dagster.yaml``."""
    ensure_instance(instance_dir)
    with DagsterInstance.local_temp(tempdir=str(instance_dir), overrides=overrides) as instance:
        yield instance


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the runs left started by a process that no longer exists, and free the pool
    slots they held; returns their ids.

    Only runs tagged with :data:`PID_TAG` (executed in-process by a local command) are
    considered: a run whose process is gone cannot finish, and its slot would block every later
    raw sync of this instance.
    """
    from dagster import DagsterRunStatus, RunsFilter

    released = []
    unfinished = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.QUEUED]
    for run in instance.get_runs(RunsFilter(statuses=unfinished)):
        pid = run.tags.get(PID_TAG)
        if not pid or not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, f"The process that ran it (pid {pid}) ended without finishing the run."
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released
