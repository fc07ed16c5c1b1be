"""The landing protocol under faults: a batch is loaded exactly once whatever is killed when,
only once complete, never under a reused name with other content; unexpected errors leave it
pending, and the sensor's state does not grow (``ingestion.landing``'s docstring)."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context

from ingestion import landing
from ingestion.definitions import defs
from ingestion.jobs import landing_sensor
from ingestion.landing import load as landing_load
from ingestion.settings import landing_dir
from ingestion.streams import EVENTS, USERS
from shared import iceberg
from shared.resources import ObjectStoreResource
from shared.settings import load_settings

USER = {"id": 1, "email": "a@x.org", "name": "Ann", "country": "DE", "plan": "free",
        "signup_at": "2025-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z"}  # fmt: skip


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def events(n: int, prefix: str = "e") -> bytes:
    return jsonl(
        {
            "event_id": f"{prefix}{i}",
            "user_id": i % 7,
            "event_type": "click",
            "event_ts": "2026-01-02T10:00:00Z",
        }  # fmt: skip
        for i in range(n)
    )


@pytest.fixture
def zone(home):
    settings = load_settings()
    root = landing_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    return iceberg.open_catalog(settings), fsspec.filesystem("file"), root


def drop(root, batch: str, files: dict[str, bytes], complete: bool = True) -> None:
    (root / batch).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / batch / name).write_bytes(data)
    if complete:
        (root / batch / landing.SUCCESS_MARKER).touch()


def tick(instance: DagsterInstance) -> list[RunRequest]:
    context = build_sensor_context(
        resources={"object_store": ObjectStoreResource()}, instance=instance
    )
    result = landing_sensor(context)
    return [r for r in (result if isinstance(result, list) else []) if isinstance(r, RunRequest)]


def run(instance: DagsterInstance, request: RunRequest):
    return defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=instance, tags=request.tags, asset_selection=request.asset_selection,
        raise_on_error=False,
    )  # fmt: skip


def failure(result) -> tuple[str, dict]:
    event = next(e for e in result.all_events if e.is_step_failure)
    data = event.step_failure_data
    meta = data.user_failure_data.metadata if data.user_failure_data else {}
    return data.error.message, {k: v.value for k, v in meta.items()}


def rows_of(catalog, stream, batch: str) -> int:
    table = iceberg.read_table(catalog, stream.identifier, columns=["_airbyte_meta"])
    return sum(f'"landing_batch":"{batch}"' in m for m in table["_airbyte_meta"].to_pylist())


def tick_and_run(instance) -> dict[str, object]:
    return {r.tags[landing.LANDING_BATCH_TAG]: run(instance, r) for r in tick(instance)}


# ---- loaded means committed (issue: the cursor was saved before the load) --------------------


def test_a_failure_before_the_commit_leaves_the_batch_pending_and_it_loads_once(zone,
                                                                                monkeypatch):  # fmt: skip
    catalog, _, root = zone
    drop(root, "b1", {"events.jsonl": events(30)})
    instance = DagsterInstance.ephemeral()

    def outage(*args, **kwargs):
        raise OSError("catalog unreachable")

    with monkeypatch.context() as m:
        m.setattr(iceberg, "write_table", outage)
        [result] = tick_and_run(instance).values()
    assert not result.success
    message, meta = failure(result)
    # Said truthfully: not a rejection, nothing moved, retried.
    assert meta["landing_outcome"] == "pending"
    assert "not a rejection" in message and "retried on the next tick" in message
    assert "catalog unreachable" in message
    assert (root / "b1" / "events.jsonl").exists()
    assert not (root / landing.REJECTED_DIR).exists()
    # The next tick requests it again (a new attempt), and it loads once.
    [again] = tick_and_run(instance).values()
    assert again.success
    assert rows_of(catalog, EVENTS, "b1") == 30
    assert tick(instance) == []


def test_a_kill_after_the_commit_before_the_ledger_does_not_load_twice(zone, monkeypatch):
    catalog, fs, root = zone
    drop(root, "b2", {"events.jsonl": events(20), "users.jsonl": jsonl([USER])})
    instance = DagsterInstance.ephemeral()

    def killed(*args, **kwargs):
        raise OSError("killed before the ledger was written")

    with monkeypatch.context() as m:
        m.setattr(landing_load, "write_ledger", killed)
        [result] = tick_and_run(instance).values()
    assert not result.success
    assert rows_of(catalog, EVENTS, "b2") == 20  # committed, but not recorded as loaded
    [again] = tick_and_run(instance).values()
    assert again.success
    assert rows_of(catalog, EVENTS, "b2") == 20 and rows_of(catalog, USERS, "b2") == 1
    meta = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in again.get_asset_materialization_events()
    }
    assert meta[EVENTS.key]["landing_already_loaded"].value is True
    assert meta[EVENTS.key]["rows_written"].value == 0
    assert landing.read_ledger(fs, str(root), "b2")
    assert tick(instance) == []


def expire_everything_old(catalog) -> None:
    """Every snapshot but the current one and its parent expired (the most the settings allow)."""
    from shared.maintenance import expire_tables
    from shared.settings import SnapshotRetention

    expire_tables(catalog, [EVENTS.identifier, USERS.identifier], SnapshotRetention(2, 0))


def test_a_kill_before_the_ledger_then_expiry_still_loads_once(zone, monkeypatch):
    """The batch's commit is no longer in any snapshot summary: its first row says it was
    committed, with this content."""
    catalog, fs, root = zone
    drop(root, "b3", {"events.jsonl": events(20), "users.jsonl": jsonl([USER])})
    instance = DagsterInstance.ephemeral()

    def killed(*args, **kwargs):
        raise OSError("killed before the ledger was written")

    with monkeypatch.context() as m:
        m.setattr(landing_load, "write_ledger", killed)
        [result] = tick_and_run(instance).values()
    assert not result.success
    # Later commits push b3's out of the kept snapshots (loaded directly: a tick would retry b3).
    for i in range(3):
        drop(root, f"c{i}", {"events.jsonl": events(5, f"c{i}-")})
        files = landing.scan_zone(fs, str(root)).batches[f"c{i}"].data_files
        landing.load_batch(catalog, fs, str(root), f"c{i}", files, dt.datetime.now(dt.UTC))
    expire_everything_old(catalog)
    table = catalog.load_table(EVENTS.identifier)
    assert landing_load.committed_fingerprint(table, "b3") is None  # the summary is gone
    [again] = tick_and_run(instance).values()
    assert again.success
    assert rows_of(catalog, EVENTS, "b3") == 20 and rows_of(catalog, USERS, "b3") == 1
    meta = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in again.get_asset_materialization_events()
    }
    assert meta[EVENTS.key]["landing_already_loaded"].value is True
    assert landing.read_ledger(fs, str(root), "b3")
    assert tick(instance) == []


def test_new_content_under_a_used_name_is_rejected_after_its_snapshot_expired(zone):
    catalog, fs, root = zone
    drop(root, "b9", {"events.jsonl": events(10), "users.jsonl": jsonl([USER])})
    instance = DagsterInstance.ephemeral()
    assert all(r.success for r in tick_and_run(instance).values())
    for i in range(3):
        drop(root, f"d{i}", {"events.jsonl": events(5, f"d{i}-")})
        assert all(r.success for r in tick_and_run(instance).values())
    expire_everything_old(catalog)
    fs.rm(str(root / landing.LOADED_DIR / "b9"), recursive=True)  # the ledger lost too
    users_before = iceberg.read_table(catalog, USERS.identifier).num_rows
    (root / "b9" / "events.jsonl").write_bytes(events(20))
    [result] = tick_and_run(instance).values()
    assert not result.success
    message, meta = failure(result)
    assert "already loaded with different content" in message
    assert meta["landing_outcome"] == "rejected"
    assert rows_of(catalog, EVENTS, "b9") == 10
    assert (
        iceberg.read_table(catalog, USERS.identifier).num_rows == users_before
    )  # no table changed


def test_a_used_name_redropped_with_one_more_file_is_rejected_after_its_snapshot_expired(zone):
    """The batch is looked up by the first row of EVERY file: a re-drop under a used name with a
    file that sorts before the committed one must not load the committed rows again."""
    catalog, fs, root = zone
    drop(root, "b9", {"events.jsonl": events(10)})
    instance = DagsterInstance.ephemeral()
    assert all(r.success for r in tick_and_run(instance).values())
    for i in range(3):
        drop(root, f"d{i}", {"events.jsonl": events(5, f"d{i}-")})
        assert all(r.success for r in tick_and_run(instance).values())
    expire_everything_old(catalog)
    fs.rm(str(root / landing.LOADED_DIR / "b9"), recursive=True)  # the ledger lost too
    (root / "b9" / "events.a.jsonl").write_bytes(events(7, "new-"))  # sorts first
    [result] = tick_and_run(instance).values()
    assert not result.success
    message, meta = failure(result)
    assert "already loaded with different content" in message
    assert meta["landing_outcome"] == "rejected"
    assert rows_of(catalog, EVENTS, "b9") == 10


def test_a_kill_between_two_streams_commits_each_stream_once(zone, monkeypatch):
    catalog, fs, root = zone
    drop(root, "b3", {"events.jsonl": events(10), "users.jsonl": jsonl([USER])})
    real = iceberg.write_table
    written = []

    def second_fails(catalog_, identifier, *args, **kwargs):
        if written:
            raise OSError("killed")
        written.append(identifier)
        return real(catalog_, identifier, *args, **kwargs)

    files = landing.list_batches(fs, str(root))["b3"]
    with monkeypatch.context() as m:
        m.setattr(iceberg, "write_table", second_fails)
        with pytest.raises(OSError):
            landing.load_batch(catalog, fs, str(root), "b3", files, landing_load.dt.datetime.now())
    loads = landing.load_batch(catalog, fs, str(root), "b3", files, landing_load.dt.datetime.now())
    assert sum(load.already_loaded for load in loads.values()) == 1
    assert rows_of(catalog, EVENTS, "b3") == 10 and rows_of(catalog, USERS, "b3") == 1


KILLED_LOADER = textwrap.dedent(
    """
    import datetime as dt, fsspec
    from ingestion import landing
    from ingestion.settings import landing_dir
    from shared import iceberg
    from shared.settings import load_settings
    settings = load_settings()
    root = str(landing_dir(settings))
    fs = fsspec.filesystem("file")
    print("ready", flush=True)
    landing.load_batch(iceberg.open_catalog(settings), fs, root, "big",
                       landing.list_batches(fs, root)["big"], dt.datetime.now(dt.UTC))
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_exactly_one_load(zone):
    """A real SIGKILL of the loading process at several moments (before, during and after the
    commit, as the machine's speed decides); each time the next load leaves exactly the batch's
    rows in the table."""
    catalog, fs, root = zone
    drop(root, "big", {"events.jsonl": events(60_000, "k")})
    for delay in (0.0, 0.4, 0.9, 1.6, 3.0):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_LOADER], env=os.environ.copy(),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        count = rows_of(catalog, EVENTS, "big") if catalog.table_exists(EVENTS.identifier) else 0
        assert count in (0, 60_000)
    landing.load_batch(catalog, fs, str(root), "big", landing.list_batches(fs, str(root))["big"],
                       landing_load.dt.datetime.now())  # fmt: skip
    assert rows_of(catalog, EVENTS, "big") == 60_000


# ---- rejected vs pending ----------------------------------------------------------------------


def test_an_all_null_parquet_column_loads(zone):
    """Parquet's null type (a column null in every row): a declared column takes the stream's
    type, an added one is kept as text (it was a ValueError, reported as a rejection)."""
    catalog, fs, root = zone
    (root / "b4").mkdir()
    pq.write_table(
        pa.table({"event_id": ["n1"], "user_id": [1], "amount": pa.nulls(1), "note": pa.nulls(1)}),
        root / "b4" / "events.parquet",
    )
    loads = landing.load_batch(catalog, fs, str(root), "b4", ["b4/events.parquet"],
                               landing_load.dt.datetime.now())  # fmt: skip
    assert loads["events"].rows == 1
    table = catalog.load_table(EVENTS.identifier).schema().as_arrow()
    assert table.field("amount").type == pa.float64()
    assert pa.types.is_string(table.field("note").type) or pa.types.is_large_string(
        table.field("note").type
    )


def test_a_rejection_is_quarantined_and_said_so(zone):
    _, _, root = zone
    drop(root, "b5", {"events.jsonl": b'{"event_id": "x", "user_id": "abc"}\n'})
    instance = DagsterInstance.ephemeral()
    [result] = tick_and_run(instance).values()
    message, meta = failure(result)
    assert meta["landing_outcome"] == "rejected"
    assert (root / landing.REJECTED_DIR / "b5" / landing.ERROR_FILE).exists()
    assert tick(instance) == []


# ---- completion protocol ------------------------------------------------------------------------


def test_a_folder_without_success_is_never_read(zone):
    catalog, _, root = zone
    drop(root, "b6", {"events.jsonl": events(100)}, complete=False)
    instance = DagsterInstance.ephemeral()
    assert tick(instance) == []
    context = build_sensor_context(
        resources={"object_store": ObjectStoreResource()}, instance=instance
    )
    assert "1 waiting for _SUCCESS" in landing_sensor(context).skip_message
    # A run started by hand for it (or re-executed) does not read it either.
    forced = run(instance, RunRequest(tags={landing.LANDING_BATCH_TAG: "b6"}))
    message, meta = failure(forced)
    assert meta["landing_outcome"] == "pending" and "not complete" in message
    assert not catalog.table_exists(EVENTS.identifier)
    # The producer goes on writing, then marks the batch complete: all of it loads.
    with (root / "b6" / "events.jsonl").open("ab") as f:
        f.write(events(100, "more"))
    (root / "b6" / landing.SUCCESS_MARKER).touch()
    [result] = tick_and_run(instance).values()
    assert result.success
    assert rows_of(catalog, EVENTS, "b6") == 200


def test_a_file_changing_while_it_is_read_is_not_loaded(zone, monkeypatch):
    catalog, fs, root = zone
    (root / "single.jsonl").parent.mkdir(parents=True, exist_ok=True)
    (root / "events.jsonl").write_bytes(events(100))
    real = landing_load.iter_chunks

    def writer_goes_on(f, open_file):
        with (root / "events.jsonl").open("ab") as out:
            out.write(events(100, "late"))
        return real(f, open_file)

    monkeypatch.setattr(landing_load, "iter_chunks", writer_goes_on)
    with pytest.raises(landing.BatchChanged, match="changed while they were read"):
        landing.load_batch(catalog, fs, str(root), "events.jsonl", ["events.jsonl"],
                           landing_load.dt.datetime.now())  # fmt: skip
    assert not catalog.table_exists(EVENTS.identifier)


# ---- re-drops: fingerprints ---------------------------------------------------------------------


@pytest.mark.parametrize("ledger_lost", [False, True])
def test_new_content_under_a_used_name_is_rejected(zone, ledger_lost):
    catalog, fs, root = zone
    drop(root, "b7", {"events.jsonl": events(10)})
    instance = DagsterInstance.ephemeral()
    assert all(r.success for r in tick_and_run(instance).values())
    if ledger_lost:
        fs.rm(str(root / landing.LOADED_DIR), recursive=True)
    # Same name, 10 more rows (the first row's id unchanged).
    (root / "b7" / "events.jsonl").write_bytes(events(20))
    [result] = tick_and_run(instance).values()
    assert not result.success
    message, meta = failure(result)
    assert "already loaded with different content" in message and "new batch name" in message
    assert meta["landing_outcome"] == "rejected"
    assert rows_of(catalog, EVENTS, "b7") == 10
    assert (root / landing.REJECTED_DIR / "b7" / "events.jsonl").read_bytes() == events(20)


def test_an_identical_redrop_is_skipped(zone):
    catalog, fs, root = zone
    drop(root, "b8", {"events.jsonl": events(10)})
    instance = DagsterInstance.ephemeral()
    assert all(r.success for r in tick_and_run(instance).values())
    time.sleep(0.01)
    (root / "b8" / "events.jsonl").unlink()
    (root / "b8" / "events.jsonl").write_bytes(events(10))  # copied again: a new mtime
    [result] = tick_and_run(instance).values()
    assert result.success
    meta = result.get_asset_materialization_events()[0].step_materialization_data
    assert meta.materialization.metadata["landing_already_loaded"].value is True
    assert rows_of(catalog, EVENTS, "b8") == 10
    assert tick(instance) == []


# ---- integer timestamps ---------------------------------------------------------------------------


def test_integer_timestamps_in_parquet_are_rejected_naming_the_column(zone):
    """int64 epoch seconds were cast as microseconds: 2026-01-03 became 1970-01-01 00:29."""
    catalog, fs, root = zone
    (root / "b9").mkdir()
    pq.write_table(
        pa.table(
            {
                "event_id": ["t1"],
                "user_id": [1],
                "event_type": ["purchase"],
                "event_ts": pa.array([1767398400], pa.int64()),
            }
        ),  # fmt: skip
        root / "b9" / "events.parquet",
    )
    with pytest.raises(landing.LandingRejected, match="column event_ts is int64") as info:
        landing.load_batch(catalog, fs, str(root), "b9", ["b9/events.parquet"],
                           landing_load.dt.datetime.now())  # fmt: skip
    assert info.value.column == "event_ts" and "b9/events.parquet" in str(info.value)
    assert not catalog.table_exists(EVENTS.identifier)


def test_the_plausibility_check_flags_values_far_outside_the_earlier_range(zone):
    """A commit whose timestamps sit far from all earlier data (after 1970, so the fixed bounds
    pass) is flagged, naming the column, with examples."""
    from ingestion.checks import check_timestamps_plausible
    from shared.resources import IcebergCatalogResource

    catalog, fs, root = zone
    drop(root, "c1", {"events.jsonl": events(5)})
    landing.load_batch(catalog, fs, str(root), "c1", landing.list_batches(fs, str(root))["c1"],
                       landing_load.dt.datetime.now())  # fmt: skip
    assert check_timestamps_plausible(EVENTS, IcebergCatalogResource()).passed
    misread = {"event_id": "m1", "user_id": 1, "event_type": "click",
               "event_ts": "1970-01-01T00:29:27Z"}  # fmt: skip
    drop(root, "c2", {"events.jsonl": jsonl([misread])})
    landing.load_batch(catalog, fs, str(root), "c2", landing.list_batches(fs, str(root))["c2"],
                       landing_load.dt.datetime.now())  # fmt: skip
    result = check_timestamps_plausible(EVENTS, IcebergCatalogResource())
    assert not result.passed
    assert result.metadata["far_outside_earlier_range_event_ts"].value == 1
    assert result.metadata["before_1970_event_ts"].value == 0
    assert "1970-01-01T00:29:27+00:00" in result.metadata["examples_event_ts"].value


# ---- large files: bounded chunks -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_files_are_read_in_bounded_chunks_with_the_same_result(zone, monkeypatch, fmt):
    """Chunks (here tiny) give the rows, raw ids and metadata of one whole read; a bad value in
    a later chunk is named with its own line."""
    from ingestion.landing import parse as landing_parse

    catalog, fs, root = zone
    rows = [{"event_id": f"c{i}", "user_id": i, "event_type": "click",
             "event_ts": "2026-01-02T10:00:00Z", "referrer": f"r{i}"} for i in range(500)]  # fmt: skip
    (root / "big").mkdir()
    path = root / "big" / f"events.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(jsonl(rows))
    elif fmt == "csv":
        path.write_text("event_id,user_id,event_type,event_ts,referrer\n" + "".join(
            f"{r['event_id']},{r['user_id']},click,{r['event_ts']},{r['referrer']}\n" for r in rows))  # fmt: skip
    else:
        table = pa.Table.from_pylist(rows)
        pq.write_table(table.set_column(3, "event_ts", table["event_ts"].cast(
            pa.timestamp("us", "UTC"))), path)  # fmt: skip
    whole = landing.parse_file(landing.classify(f"big/events.{fmt}"), path.read_bytes())
    monkeypatch.setattr(landing_parse, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(landing_parse, "CHUNK_ROWS", 64)
    chunks = list(landing_parse.iter_chunks(landing.classify(f"big/events.{fmt}"),
                                            lambda: path.open("rb")))  # fmt: skip
    assert len(chunks) > 5
    assert pa.concat_tables([c.data for c in chunks]).to_pylist() == whole.data.to_pylist()
    (root / "big" / landing.SUCCESS_MARKER).touch()
    loads = landing.load_batch(catalog, fs, str(root), "big",
                               landing.list_batches(fs, str(root))["big"],
                               landing_load.dt.datetime.now())  # fmt: skip
    assert loads["events"].rows == 500 and loads["events"].added == ["referrer"]
    landed = iceberg.read_table(catalog, EVENTS.identifier)
    assert sorted(landed["event_id"].to_pylist()) == sorted(r["event_id"] for r in rows)
    ids = landed["_airbyte_raw_id"].to_pylist()
    assert len(set(ids)) == 500
    assert set(ids) == set(landing_load.raw_ids("big", f"big/events.{fmt}", 500).to_pylist())
    if fmt == "jsonl":
        bad = jsonl(rows[:400]) + b'{"event_id": "x", "user_id": "many"}\n'
        with pytest.raises(landing.LandingRejected, match="line 401"):
            list(landing_parse.iter_chunks(landing.classify("b/events.jsonl"),
                                           lambda: __import__("io").BytesIO(bad)))  # fmt: skip


def test_a_json_array_over_the_limit_is_refused(monkeypatch):
    from ingestion.landing import parse as landing_parse

    monkeypatch.setattr(landing_parse, "MAX_JSON_ARRAY_BYTES", 100)
    with pytest.raises(landing.LandingRejected, match="write JSON lines"):
        landing.parse_file(
            landing.classify("b/events.json"), json.dumps([{"event_id": "x" * 200}]).encode()
        )
