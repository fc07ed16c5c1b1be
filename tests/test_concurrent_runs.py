"""Several runs at once on one lakehouse (issue 16 item 1): nothing doubled, no broken instance.

Three processes each open the local Dagster instance the way ``data-platform demo`` does
(:func:`data_platform.instance.open_instance`) and run the raw syncs, at the same moment, on a
fresh home and again on the existing one; an independent reader (pyiceberg on the catalog) then
counts rows and distinct ``_airbyte_raw_id``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.compute as pc
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from data_platform.instance import PID_TAG, ensure_instance, release_dead_runs
from ingestion.assets import RAW_SYNC_POOL
from shared.iceberg import open_catalog
from shared.settings import load_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

SYNC = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from data_platform.instance import PID_TAG, open_instance
    from ingestion.definitions import defs

    Path(sys.argv[1]).touch()
    while not Path(sys.argv[2]).exists():  # start together
        pass
    job = defs.resolve_job_def("ingestion_job")
    home = Path(os.environ["DATA_PLATFORM_HOME"])
    with open_instance(home / "dagster") as instance:
        result = job.execute_in_process(
            instance=instance, tags={PID_TAG: str(os.getpid())}, raise_on_error=False
        )
    sys.exit(0 if result.success else 1)
    """
)


def run_together(
    tmp_path: Path, home: Path, days: int, n: int = 3
) -> list[subprocess.CompletedProcess]:
    script = tmp_path / "sync.py"
    script.write_text(SYNC)
    go = tmp_path / f"go-{days}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_PLATFORM_", "DAGSTER_"))}
    env.update(
        DATA_PLATFORM_HOME=str(home),
        DATA_PLATFORM_STANDIN_USERS="40",
        DATA_PLATFORM_STANDIN_EVENTS_PER_DAY="60",
        DATA_PLATFORM_STANDIN_DAYS=str(days),
    )
    procs, ready = [], []
    for i in range(n):
        ready.append(tmp_path / f"ready-{days}-{i}")
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(ready[-1]), str(go)],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        )
    while not all(r.exists() for r in ready):
        if any(p.poll() is not None for p in procs):
            break
    go.touch()
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout))
    return out


def raw_counts(home: Path) -> dict[str, tuple[int, int]]:
    catalog = open_catalog(load_settings({"DATA_PLATFORM_HOME": str(home)}))
    counts = {}
    for name in ("raw.users", "raw.events"):
        ids = catalog.load_table(name).scan(selected_fields=("_airbyte_raw_id",)).to_arrow()
        column = ids["_airbyte_raw_id"]
        counts[name] = (len(column), len(pc.unique(column)))
    return counts


def alembic_rows(instance_dir: Path) -> dict[str, int]:
    rows = {}
    for db in instance_dir.rglob("*.db"):
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("select name from sqlite_master")}
            if "alembic_version" in tables:
                rows[db.name] = conn.execute("select count(*) from alembic_version").fetchone()[0]
    return rows


def test_three_raw_syncs_at_once_on_a_fresh_then_an_existing_home(tmp_path):
    home = tmp_path / "home"
    for days in (3, 5):  # fresh home, then new days on the existing one
        results = run_together(tmp_path, home, days)
        assert [r.returncode for r in results] == [0, 0, 0], "\n".join(r.stdout for r in results)
        counts = raw_counts(home)
        for name, (rows, distinct) in counts.items():
            assert rows == distinct, f"{name}: {rows} rows for {distinct} distinct raw ids"
        # Exactly what one sync of `days` days holds: 60 events a day, 40 users + updates.
        assert counts["raw.events"][1] == 60 * days
    assert set(alembic_rows(home / "dagster").values()) == {1}
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert instance.event_log_storage.get_concurrency_info(RAW_SYNC_POOL).slot_count == 1
        runs = instance.get_runs()
        assert len(runs) == 6 and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}


def test_the_instance_is_created_once_by_concurrent_processes(tmp_path):
    instance_dir = tmp_path / "dagster"
    code = "import sys; from pathlib import Path; from data_platform.instance import ensure_instance; ensure_instance(Path(sys.argv[1]))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(instance_dir)], cwd=REPO)
        for _ in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    rows = alembic_rows(instance_dir)
    assert rows and set(rows.values()) == {1}
    assert "default_limit: 1" in (instance_dir / "dagster.yaml").read_text()


def test_a_run_whose_process_died_releases_its_pool_slot(tmp_path):
    instance_dir = ensure_instance(tmp_path / "dagster")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with DagsterInstance.from_config(str(instance_dir)) as instance:
        from dagster._core.test_utils import create_run_for_test

        run = create_run_for_test(
            instance, job_name="ingestion_job", status=DagsterRunStatus.STARTED,
            tags={PID_TAG: str(dead.pid)},
        )  # fmt: skip
        live = create_run_for_test(
            instance, job_name="ingestion_job", status=DagsterRunStatus.STARTED,
            tags={PID_TAG: str(os.getpid())},
        )  # fmt: skip
        instance.event_log_storage.set_concurrency_slots(RAW_SYNC_POOL, 1)
        claim = instance.event_log_storage.claim_concurrency_slot(RAW_SYNC_POOL, run.run_id, "s")
        assert claim.is_claimed
        assert release_dead_runs(instance) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.STARTED
        info = instance.event_log_storage.get_concurrency_info(RAW_SYNC_POOL)
        assert info.active_slot_count == 0
