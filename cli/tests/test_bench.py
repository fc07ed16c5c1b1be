"""``data-platform bench``: the records' shape and arithmetic, and real measurements end to end on
tiny data. No timing is asserted: figures depend on the machine; what must hold is that each
line is complete, its ratio is figures / baseline as stated, and the baseline did the same work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_platform import bench
from data_platform.bench import Bench, record, run_measurements

KEYS = {"name", "inputs", "figures", "baseline", "ratio", "ratio_of", "target", "met", "mode"}


def check_line(rec: dict) -> None:
    """Every result line: complete, ratio = figures / baseline, met = the target's verdict."""
    assert KEYS <= set(rec), rec
    figure, base = (
        rec["figures"][rec["ratio_of"]["figure"]],
        rec["baseline"][rec["ratio_of"]["baseline"]],
    )
    assert rec["ratio"] == figure / base
    target = rec["target"]
    if target is None:
        assert rec["met"] is None
        return
    conditions = [target, *target.get("and", [])]
    verdicts = []
    for cond in conditions:
        value = rec
        for part in cond.get("of", "ratio").split("."):
            value = value[part]
        expected = cond["value"]
        verdicts.append(
            value == expected
            if cond["op"] == "=="
            else (value >= expected if cond["op"] == ">=" else value <= expected)
        )
    assert rec["met"] is all(verdicts)


def test_record_ratio_and_target_verdicts():
    rec = record(
        "x", {"rows": 10}, {"rows_per_s": 8.0}, {"rows_per_s": 10.0},
        ("rows_per_s", "rows_per_s"), {"op": ">=", "value": 0.7},
    )  # fmt: skip
    assert rec["ratio"] == 0.8 and rec["met"] is True
    check_line({**rec, "mode": "quick"})
    missed = record(
        "y", {}, {"s": 3.0, "added": 2.0, "errors": None}, {"s": 1.0}, ("s", "s"),
        {"op": "<=", "value": 1.5, "of": "figures.added",
         "and": [{"op": "==", "value": None, "of": "figures.errors"}]},
    )  # fmt: skip
    assert missed["ratio"] == 3.0 and missed["met"] is False
    only_and_fails = record(
        "z", {}, {"s": 1.0, "n": 1}, {"s": 1.0}, ("s", "s"),
        {"op": "<=", "value": 1.3, "and": [{"op": "==", "value": 0, "of": "figures.n"}]},
    )  # fmt: skip
    assert only_and_fails["met"] is False
    assert record("t", {}, {"s": 1.0}, {"s": 2.0}, ("s", "s"), None)["met"] is None


def test_disk_usage_counts_hard_links_once(tmp_path):
    data = tmp_path / "a.bin"
    data.write_bytes(os.urandom(256 * 1024))
    os.link(data, tmp_path / "b.bin")
    size, files = bench.disk_usage(tmp_path)
    assert files == 1
    assert 256 * 1024 <= size < 2 * 256 * 1024


def test_import_probe_denies_and_reports_network_calls(tmp_path):
    (tmp_path / "calls_home.py").write_text(
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('example.com', 80), timeout=1)\n"
        "except OSError:\n"
        "    pass\n"
    )
    (tmp_path / "quiet.py").write_text("VALUE = 1\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    noisy = bench._probe_import("calls_home", env)
    quiet = bench._probe_import("quiet", env)
    assert noisy["network_attempts"] and "example.com" in noisy["network_attempts"][0]
    assert quiet["network_attempts"] == [] and quiet["error"] is None


def test_importtime_parsing():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   _io\n"
        "import time:      2500 |       2620 | polars.dataframe\n"
    )
    assert bench._parse_importtime(stderr) == {"_io": 120, "polars.dataframe": 2500}


def run_tiny(tmp_path: Path, names: list[str], scale: float = 0.002) -> list[dict]:
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "results.jsonl"
    b = Bench(quick=True, work=work, log=lambda m: None, scale=scale, repeats=1)
    errors = run_measurements(b, names, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert errors == 0, lines
    return lines


@pytest.mark.slow
def test_ingestion_measurement_end_to_end(tmp_path):
    lines = run_tiny(tmp_path, ["ingestion"])
    assert [r["name"] for r in lines] == ["ingestion_throughput", "ingestion_peak_memory"]
    for rec in lines:
        check_line(rec)
    throughput = lines[0]
    rows = throughput["inputs"]["rows"]
    assert rows == 2000 and throughput["inputs"]["batches"] == 10
    # Both sides wrote the same rows with the same Parquet options, one commit on Iceberg.
    assert throughput["figures"]["rows_per_s"] == rows / throughput["figures"]["seconds"]
    assert throughput["baseline"]["rows_per_s"] == rows / throughput["baseline"]["seconds"]
    assert throughput["inputs"]["parquet_options"]["compression"] == "zstd"
    assert throughput["figures"]["snapshots_committed"] == 1
    assert throughput["figures"]["peak_rss_mib"] > 0


@pytest.mark.slow
def test_analytics_measurement_end_to_end_computes_the_same_result(tmp_path):
    lines = run_tiny(tmp_path, ["analytics"])
    assert [r["name"] for r in lines] == ["analytics_user_features", "analytics_daily_metrics"]
    for rec in lines:
        check_line(rec)
        # The baseline is the same query: same rows out, frame-equal results.
        assert rec["figures"]["results_equal_to_baseline"] is True
        assert rec["figures"]["rows_out"] > 0
    assert lines[0]["inputs"]["stg_events_files"] == 30  # one data file per day partition


def test_unknown_measurement_is_refused(tmp_path, capsys):
    assert bench.run_bench(quick=True, output=str(tmp_path / "r.jsonl"), only=["nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_worker_failure_names_the_task(tmp_path):
    b = Bench(quick=True, work=tmp_path, log=lambda m: None)
    with pytest.raises(bench.BenchError, match="write_parquet"):
        b.worker(
            "write_parquet",
            {"source": str(tmp_path / "missing.arrow"), "path": str(tmp_path / "x.parquet"),
             "parquet_options": {"row_group_size": 10}},
        )  # fmt: skip


def test_incremental_times_the_sync_then_what_the_automation_requests():
    """The raw syncs are the runs reading nothing produced by another location; the rest is
    requested by the automation (see tests/test_automation.py and the demo's planning)."""
    from dagster import AssetKey

    from data_platform.graph import build_location_graph, load_location_defs, plan_runs, sync_runs

    graph = build_location_graph(load_location_defs())
    syncs = sync_runs(graph, plan_runs(graph))
    assert [(r.location, set(r.asset_keys), r.partition_range) for r in syncs] == [
        ("ingestion", {AssetKey(["raw", "events"]), AssetKey(["raw", "users"])}, None)
    ]


@pytest.mark.slow
def test_moved_day_measurement_finds_the_day_the_event_left(tmp_path):
    lines = run_tiny(tmp_path, ["moved_day"])
    assert [r["name"] for r in lines] == ["moved_day_lookup_30d"]
    rec = lines[0]
    check_line(rec)
    # The look-up found exactly the new day and the first day, which the moved event left.
    assert rec["figures"]["days_found_correct"] is True
    assert rec["inputs"]["history_rows"] == 30 * rec["inputs"]["events_per_day"]
    assert rec["inputs"]["added_rows"] == rec["inputs"]["events_per_day"] + 1


@pytest.mark.slow
def test_incremental_measurement_times_a_new_day_after_each_history(tmp_path):
    """The quick incremental measurement end to end, on tiny data: a platform per history length
    (1 and 30 days), a new day timed on each; the automation requests the new day plus the
    late-data lookback of every daily asset, after 1 day as after 30."""
    lines = run_tiny(tmp_path, ["incremental"], scale=0.05)
    assert [(r["name"], r["inputs"]["history_days"]) for r in lines] == [
        ("incremental_cost", 30),
        ("incremental_floor", 1),
        ("incremental_floor", 30),
    ]
    for rec in lines:
        check_line(rec)
    cost = lines[0]
    assert cost["inputs"]["baseline_history_days"] == 1
    assert cost["inputs"]["history_build_seconds"] > 0
    daily = {"staging/stg_events", "marts/fct_daily_events", "analytics/daily_metrics"}
    for side in (cost["figures"], cost["baseline"]):
        assert side["partitions"] == dict.fromkeys(daily, 2)  # the new day + 1 day of lookback
        assert len(side["samples"]) == 1 and side["runs"] > 1
    # The floor did the same day's work: its models, its checks, its analytics.
    for floor in lines[1:]:
        assert set(floor["baseline"]) >= {"raw", "dbt_models", "checks", "analytics"}
        assert floor["baseline"]["seconds"] > 0
    assert not any((tmp_path / "work").glob("incremental-home-*")), "homes deleted after the run"
