"""The demo's landing step (one sensor tick, one run per batch): each batch succeeds or fails
on its own, what is said about a failed batch is true, and log file names stay legal."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance

from data_platform.demo import DemoReport, _load_landing_batches, format_report, landing_log_name
from data_platform.graph import WORKSPACE_FILE, workspace_locations
from data_platform.launch import WorkspaceLauncher


@pytest.fixture
def ingestion_defs(tmp_path, monkeypatch):
    for name in ("DATA_PLATFORM_ENV", "GARAGE_BUCKET", "ICEBERG_REST_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path / "home"))
    from ingestion.definitions import defs

    return defs


def drop(landing, batch: str, name: str, data: bytes) -> None:
    (landing / batch).mkdir(parents=True, exist_ok=True)
    (landing / batch / name).write_bytes(data)
    (landing / batch / "_SUCCESS").touch()


def test_each_batch_on_its_own_and_log_names_bounded(ingestion_defs, tmp_path):
    from ingestion.settings import landing_dir
    from shared.settings import load_settings

    landing = landing_dir(load_settings())
    long_name = "b" * 240  # legal on ext4; "demo-landing-<name>.log" would not be
    event = {"event_id": "e1", "user_id": 1, "event_type": "click",
             "event_ts": "2026-01-02T10:00:00Z"}  # fmt: skip
    drop(landing, long_name, "events.jsonl", json.dumps(event).encode() + b"\n")
    drop(landing, "a-bad", "events.jsonl", b'{"event_id": "x", "user_id": "abc"}\n')
    drop(landing, "c-good", "events.jsonl", json.dumps({**event, "event_id": "e2"}).encode())
    report, lines = DemoReport(), []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with DagsterInstance.ephemeral() as instance:
        # Runs of the ingestion code location, as the demo makes them.
        launcher = WorkspaceLauncher(instance, workspace_locations(), WORKSPACE_FILE.parent)
        _load_landing_batches({"ingestion": ingestion_defs}, launcher, tmp_path, log_dir,
                              lines.append, report)  # fmt: skip
        outcomes = {b["batch"]: (b["success"], b["outcome"]) for b in report.landing}
        assert outcomes == {
            "a-bad": (False, "rejected"),
            long_name: (True, "loaded"),
            "c-good": (True, "loaded"),
        }
        assert all(len(p.name) < 255 for p in log_dir.iterdir())
        assert "REJECTED (quarantined)" in format_report(report)
        # A second demo: nothing left to load (loaded batches are recorded, not re-requested);
        # a folder still being written (no _SUCCESS) is named, not read.
        (landing / "d-incomplete").mkdir()
        (landing / "d-incomplete" / "events.jsonl").write_bytes(b'{"event_id": "e3"}\n')
        again = DemoReport()
        _load_landing_batches({"ingestion": ingestion_defs}, launcher, tmp_path, log_dir,
                              lines.append, again)  # fmt: skip
        assert again.landing == []
        assert any("waiting for _SUCCESS: d-incomplete" in line for line in lines), lines


def test_landing_log_names():
    assert landing_log_name("batch-1") == "demo-landing-batch-1.log"
    long = landing_log_name("x" * 250)
    assert len(long) < 120 and long != landing_log_name("x" * 249)
    assert "/" not in landing_log_name("a/../b")
