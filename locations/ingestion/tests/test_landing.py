"""The landing-batch loader (stand-in for Airbyte's file source): parsing, validation, metadata
columns, quarantine, idempotency; and the sensor's handling of quarantined batches.

End-to-end bad batches through the sensor and the job are in ``tests/test_bad_input.py``.
"""

import datetime as dt
import io
import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, RunRequest, build_sensor_context

from ingestion import landing, standin
from ingestion.checks import (
    implausible_timestamps,
    landed_missing_columns,
    oversized_strings,
)
from ingestion.definitions import defs
from ingestion.jobs import landing_sensor
from ingestion.landing import LandingRejected, classify, list_batches, parse_file, plan_batch
from ingestion.settings import StandInSettings, landing_dir
from ingestion.streams import EVENTS, USERS
from shared import iceberg
from shared.resources import ObjectStoreResource
from shared.settings import load_settings

NOW = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
USER = {"id": 1, "email": "a@x.org", "name": "Ann", "country": "DE", "plan": "free",
        "signup_at": "2025-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00+02:00"}  # fmt: skip


def parse(name: str, data: bytes):
    return parse_file(classify(name), data)


def jsonl(*rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


# ---- names -----------------------------------------------------------------------------------


def test_stream_and_format_come_from_the_file_name():
    f = classify("b1/users.part-0.csv")
    assert (f.stream, f.fmt) == (USERS, "csv")
    assert classify("events.JSONL").fmt == "jsonl"
    with pytest.raises(LandingRejected, match="no raw stream named 'orders'"):
        classify("b1/orders.jsonl")
    with pytest.raises(LandingRejected, match="unknown format 'xlsx'"):
        classify("b1/users.xlsx")
    # Markers (_SUCCESS, _error.txt) are skipped, not rejected.
    assert list(plan_batch(["b1/_SUCCESS", "b1/users.csv"])) == ["users"]


# ---- formats ---------------------------------------------------------------------------------


def test_jsonl_csv_json_and_parquet_give_the_same_rows():
    csv_text = "id,email,name,country,plan,signup_at,updated_at\n" + ",".join(
        str(v) for v in USER.values()
    )
    buf = io.BytesIO()
    pq.write_table(
        pa.table(
            {
                "id": pa.array([1], pa.int32()),  # a narrower int casts losslessly
                **{k: [USER[k]] for k in ("email", "name", "country", "plan")},
                "signup_at": pa.array([dt.datetime(2025, 1, 1)], pa.timestamp("ms")),  # naive=UTC
                "updated_at": pa.array([dt.datetime(2026, 1, 1, 22)], pa.timestamp("us", "UTC")),
            }
        ),
        buf,
    )
    tables = [
        parse("users.jsonl", jsonl(USER)).data,
        parse("users.csv", csv_text.encode()).data,
        parse("users.json", json.dumps([USER]).encode()).data,
        parse("users.parquet", buf.getvalue()).data,
    ]
    for t in tables:
        assert t.schema == pa.schema(USERS.source_fields)
        assert t.to_pylist() == tables[0].to_pylist()
    row = tables[0].to_pylist()[0]
    assert row["updated_at"] == dt.datetime(2026, 1, 1, 22, tzinfo=dt.UTC)  # +02:00 -> UTC


def test_added_and_missing_columns_are_reported():
    parsed = parse("users.jsonl", jsonl({**USER, "referrer": 5, "plan": None} | {"tags": ["a"]}))
    parsed_missing = parse("users.jsonl", jsonl({k: v for k, v in USER.items() if k != "name"}))
    assert parsed.added == ["referrer", "tags"]
    assert parsed.data["referrer"].to_pylist() == ["5"]  # JSON text: kept, not typed
    assert parsed.data["tags"].to_pylist() == ['["a"]']
    assert parsed_missing.missing == ["name"]
    assert parsed_missing.data["name"].null_count == 1


@pytest.mark.parametrize(
    ("name", "data", "column", "example"),
    [
        ("users.jsonl", jsonl({**USER, "id": "12a"}), "id", "'12a'"),
        ("users.jsonl", jsonl({**USER, "id": True}), "id", "True"),
        ("users.jsonl", jsonl({**USER, "id": 2**64}), "id", str(2**64)),
        ("users.jsonl", jsonl({**USER, "name": {"first": "A"}}), "name", "{'first': 'A'}"),
        ("users.jsonl", jsonl({**USER, "signup_at": 1700000000}), "signup_at", "1700000000"),
        ("events.csv", b"event_id,amount\ne1,12,5\n", None, "3 cells"),
        ("events.csv", b"event_id,amount\ne1,twelve\n", "amount", "'twelve'"),
        ("events.csv", b"event_id,event_id\ne1,e2\n", "event_id", "repeats"),
        ("events.json", b'{"a": 1}\n[1]\n', None, "not a JSON object"),
        ("events.json", b"[1, 2]", None, "not a JSON array of objects"),
        ("events.jsonl", b'{"event_id": "e\xc3"}\n', "event_id", "not valid UTF-8"),
        ("events.json", b'[{"event_id": "e\xc3"}]', "event_id", "not valid UTF-8"),
        ("events.parquet", b"PAR1garbage", None, "not a readable Parquet file"),
    ],
)
def test_rejections_name_table_column_file_and_value(name, data, column, example):
    with pytest.raises(LandingRejected) as info:
        parse(f"b/{name}", data)
    message = str(info.value)
    stream = USERS if name.startswith("users") else EVENTS
    assert stream.identifier in message and f"b/{name}" in message
    assert example in message
    if column:
        assert f"column {column}" in message or column in message
        assert info.value.column == column


def test_non_utf8_in_parquet_is_rejected_naming_the_column():
    # A string column holding invalid bytes (pyarrow does not validate UTF-8 on write).
    bad = pa.Array.from_buffers(pa.string(), 2, pa.array([b"ok", b"\xff"]).buffers())
    buf = io.BytesIO()
    pq.write_table(pa.table({"event_id": bad}), buf)
    with pytest.raises(LandingRejected, match=r"column event_id .* row 2, is not valid UTF-8"):
        parse("b/events.parquet", buf.getvalue())


def test_empty_files_parse_to_no_rows():
    assert parse("users.jsonl", b"").rows == 0
    assert parse("users.jsonl", b"\n\n").rows == 0
    assert parse("users.csv", b"").rows == 0
    assert parse("users.json", b"[]").rows == 0


# ---- raw rows --------------------------------------------------------------------------------


def test_raw_rows_carry_deterministic_airbyte_columns():
    parsed = parse("b1/users.jsonl", jsonl(USER, {**USER, "id": 2, "x": "y"}))
    raw = landing.to_raw("b1", parsed, NOW)
    assert raw.column_names[: len(USERS.schema)] == USERS.schema.names
    assert raw.column_names[-1] == "x"
    again = landing.to_raw("b1", parse("b1/users.jsonl", jsonl(USER, {**USER, "id": 2})), NOW)
    assert raw["_airbyte_raw_id"].to_pylist() == again["_airbyte_raw_id"].to_pylist()
    assert len(set(raw["_airbyte_raw_id"].to_pylist())) == 2
    meta = json.loads(raw["_airbyte_meta"][0].as_py())
    assert raw["_airbyte_meta"][0].as_py().startswith(landing.LANDING_META_PREFIX)
    assert meta["landing_batch"] == "b1" and meta["landing_file"] == "b1/users.jsonl"
    assert meta["added_columns"] == ["x"] and meta["missing_columns"] == []
    assert set(raw["_airbyte_extracted_at"].to_pylist()) == {NOW}


# ---- loading and quarantine -----------------------------------------------------------------


@pytest.fixture
def zone(home):
    settings = load_settings()
    catalog = iceberg.open_catalog(settings)
    return catalog, fsspec.filesystem("file"), str(landing_dir(settings))


def put(root: str, relative: str, data: bytes) -> None:
    fs = fsspec.filesystem("file")
    fs.makedirs(f"{root}/{relative}".rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(f"{root}/{relative}", data)


def test_a_batch_loads_once_and_an_added_column_is_evolved(zone):
    catalog, fs, root = zone
    put(root, "b1/users.jsonl", jsonl(USER, {**USER, "id": 2}))
    put(root, "b1/events.csv", b"event_id,user_id,event_type,event_ts,amount,referrer\n"
                               b"e1,1,purchase,2026-01-02T10:00:00Z,9.5,ads\n")  # fmt: skip
    files = list_batches(fs, root)["b1"]
    loads = landing.load_batch(catalog, fs, root, "b1", files, NOW)
    assert {n: load.rows for n, load in loads.items()} == {"users": 2, "events": 1}
    events = iceberg.read_table(catalog, EVENTS.identifier)
    assert events["referrer"].to_pylist() == ["ads"]
    # Loading the same batch again (a re-executed run) appends nothing.
    again = landing.load_batch(catalog, fs, root, "b1", files, NOW)
    assert all(load.already_loaded for load in again.values())
    assert iceberg.read_table(catalog, USERS.identifier).num_rows == 2


def test_landed_rows_carry_their_delivery_order(zone):
    """Issue 12 item 10: the rows of one batch share their extraction time; ``_ab_record_index``
    keeps the order they were delivered in (files in name order, rows in file order), which
    staging uses to resolve conflicting duplicates to the record delivered last."""
    catalog, fs, root = zone
    event = {"event_id": "e1", "user_id": 1, "event_type": "purchase",
             "event_ts": "2026-01-02T10:00:00Z"}  # fmt: skip
    put(root, "b3/events.a.jsonl", jsonl({**event, "amount": 1.0}, {**event, "event_id": "e2"}))
    put(root, "b3/events.b.jsonl", jsonl({**event, "amount": 3.0}))
    files = list_batches(fs, root)["b3"]
    landing.load_batch(catalog, fs, root, "b3", files, NOW)
    rows = iceberg.read_table(catalog, EVENTS.identifier).sort_by("_ab_record_index")
    assert rows["_ab_record_index"].to_pylist() == [0, 1, 2]
    assert rows["amount"].to_pylist() == [1.0, None, 3.0]
    assert set(rows["_airbyte_extracted_at"].to_pylist()) == {NOW}
    # The column is the loader's: a file may not bring its own.
    with pytest.raises(LandingRejected, match="_ab_record_index"):
        parse("b4/events.jsonl", jsonl({**event, "_ab_record_index": 7}))


def test_one_bad_file_rejects_the_whole_batch_and_quarantine_keeps_it(zone):
    catalog, fs, root = zone
    put(root, "b2/users.jsonl", jsonl(USER))
    put(root, "b2/sub/events.jsonl", b'{"event_id": "e", "user_id": "x"}\n')
    files = list_batches(fs, root)["b2"]
    with pytest.raises(LandingRejected) as info:
        landing.load_batch(catalog, fs, root, "b2", files, NOW)
    assert [t for ns in catalog.list_namespaces() for t in catalog.list_tables(ns)] == []
    where = landing.quarantine(fs, root, "b2", files, str(info.value))
    assert where.endswith("/_rejected/b2")
    assert fs.exists(f"{where}/users.jsonl") and fs.exists(f"{where}/sub/events.jsonl")
    assert "column user_id" in fs.cat_file(f"{where}/_error.txt").decode()
    assert not fs.exists(f"{root}/b2")
    # The sensor does not take the quarantine for a batch; a second rejection of the same name
    # does not overwrite the first.
    assert list_batches(fs, root) == {}
    put(root, "b2/users.csv", b"id\nx\n")
    second = landing.quarantine(fs, root, "b2", ["b2/users.csv"], "again")
    assert second != where and fs.exists(f"{second}/users.csv")


def test_a_single_file_batch(zone):
    catalog, fs, root = zone
    put(root, "users.jsonl", jsonl(USER))
    batches = list_batches(fs, root)
    assert batches == {"users.jsonl": ["users.jsonl"]}
    loads = landing.load_batch(catalog, fs, root, "users.jsonl", batches["users.jsonl"], NOW)
    assert loads["users"].rows == 1


def test_an_added_column_that_conflicts_with_the_table_is_rejected(zone):
    catalog, fs, root = zone
    buf = io.BytesIO()
    pq.write_table(pa.table({"event_id": ["e1"], "score": pa.array([1.5])}), buf)
    put(root, "b3/events.parquet", buf.getvalue())
    landing.load_batch(catalog, fs, root, "b3", ["b3/events.parquet"], NOW)
    buf = io.BytesIO()
    pq.write_table(pa.table({"event_id": ["e2"], "score": ["high"]}), buf)
    put(root, "b4/events.parquet", buf.getvalue())
    with pytest.raises(LandingRejected, match="column score"):
        landing.load_batch(catalog, fs, root, "b4", ["b4/events.parquet"], NOW)


# ---- the stand-in cursor and the sensor -------------------------------------------------------


def test_landed_rows_do_not_move_the_stand_in_cursor(zone):
    catalog, fs, root = zone
    small = StandInSettings(users=10, events_per_day=10, days=1, seed=1)
    put(root, "b5/users.jsonl", jsonl({**USER, "updated_at": "2999-01-01T00:00:00Z"}))
    landing.load_batch(catalog, fs, root, "b5", ["b5/users.jsonl"], NOW)
    # The table exists, but the stand-in has not loaded its users yet: it still does.
    result = standin.sync_stream(catalog, USERS, small)
    assert result.plan.initial_load and result.plan.days == (0,)
    assert standin.read_cursor(catalog, USERS)[1] < dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def test_the_stand_in_cursor_comes_from_the_manifests_and_agrees_with_the_data(zone, monkeypatch):
    catalog, _, _ = zone
    small = StandInSettings(users=10, events_per_day=10, days=3, seed=1)
    for stream in (USERS, standin.EVENTS):
        standin.sync_stream(catalog, stream, small)
        table = catalog.load_table(stream.identifier)
        values = table.scan(selected_fields=(stream.cursor_field,)).to_arrow()[stream.cursor_field]
        want = max(v for v in values.to_pylist() if v is not None)
        assert standin.cursor_of(table, stream) == want
        # Without bounds (metadata cannot tell), the column is read: the same answer.
        with monkeypatch.context() as patched:
            patched.setattr(standin.iceberg, "column_max", _no_bounds)
            assert standin.cursor_of(table, stream) == want


def _no_bounds(table, column):
    raise LookupError("no bounds")


def test_sensor_selects_the_batch_streams_and_ignores_the_quarantine(home):
    root = landing_dir(load_settings())
    put(str(root), "b1/events.jsonl", b"{}\n")
    put(str(root), "b1/_SUCCESS", b"")
    put(str(root), "b2/orders.jsonl", b"{}\n")
    put(str(root), "b2/_SUCCESS", b"")
    put(str(root), "_rejected/b0/users.jsonl", b"{}\n")
    context = build_sensor_context(
        resources={"object_store": ObjectStoreResource()}, instance=DagsterInstance.ephemeral()
    )
    requests = [r for r in landing_sensor(context) if isinstance(r, RunRequest)]
    assert [r.tags["ingestion/landing_batch"] for r in requests] == ["b1", "b2"]
    assert requests[0].asset_selection == [EVENTS.key]
    assert requests[1].asset_selection is None  # names no stream: the loader will say why


def test_a_run_for_a_vanished_batch_fails_clearly(home):
    job = defs.resolve_job_def("ingestion_job")
    result = job.execute_in_process(
        tags={"ingestion/landing_batch": "gone"}, asset_selection=[USERS.key],
        raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "landing batch 'gone'" in failure.step_failure_data.error.message


# ---- the new checks' pure parts --------------------------------------------------------------


def test_implausible_timestamps_and_oversized_strings():
    ts = pa.array(
        [dt.datetime(1969, 12, 31, tzinfo=dt.UTC), NOW, dt.datetime(2999, 1, 1, tzinfo=dt.UTC)],
        pa.timestamp("us", "UTC"),
    )
    early, late, examples = implausible_timestamps(
        ts, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), NOW + dt.timedelta(days=1)
    )
    assert (early, late, len(examples)) == (1, 1, 2)
    table = pa.table({"a": ["x" * 70_000, "y", None], "b": ["z"] * 3, "n": [1, 2, 3]})
    assert oversized_strings(table) == {"a": (1, 70_000)}
    assert oversized_strings(table, limit=0) == {"a": (2, 70_000), "b": (3, 1)}
    assert landed_missing_columns(
        ['{"landing_batch":"b","missing_columns":["amount"]}', '{"sync_id":1}', None, "{bad"]
    ) == ["amount"]


def test_a_quarantine_interrupted_halfway_is_finished_by_the_next_run(home):
    """Killed while moving a rejected batch: the re-run must not load the files left behind."""
    root = str(landing_dir(load_settings()))
    fs = fsspec.filesystem("file")
    put(root, "b6/events.jsonl", b'{"event_id": "e", "user_id": "x"}\n')
    put(root, "b6/users.jsonl", jsonl(USER))
    # The state a kill after the first move leaves: reason written, events moved, users not.
    put(root, "_rejected/b6/_error.txt", b"raw.events: column user_id cannot hold 'x'\n")
    fs.mv(f"{root}/b6/events.jsonl", f"{root}/_rejected/b6/events.jsonl")
    job = defs.resolve_job_def("ingestion_job")
    result = job.execute_in_process(tags={"ingestion/landing_batch": "b6"}, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "rejected by an earlier run" in failure.step_failure_data.error.message
    assert "column user_id" in failure.step_failure_data.error.message
    assert fs.exists(f"{root}/_rejected/b6/users.jsonl") and not fs.exists(f"{root}/b6")
    catalog = iceberg.open_catalog(load_settings())
    assert [t for ns in catalog.list_namespaces() for t in catalog.list_tables(ns)] == []


def test_csv_cells_over_the_csv_module_limit_are_kept():
    name = "x" * 200_000
    parsed = parse("users.csv", f"id,name\n1,{name}\n".encode())
    assert parsed.data["name"].to_pylist() == [name]
    with pytest.raises(LandingRejected, match="not valid CSV"):
        parse("users.csv", b'id,name\n1,"unterminated\n')


def test_marker_files_are_reported_not_loaded(home):
    """``_SUCCESS`` is the completion marker; any other ``_*`` file is named as not loaded."""
    root = str(landing_dir(load_settings()))
    put(root, "b7/_SUCCESS", b"")
    put(root, "b7/_notes.jsonl", jsonl(USER))
    put(root, "b7/users.jsonl", jsonl(USER))
    job = defs.resolve_job_def("ingestion_job")
    result = job.execute_in_process(
        tags={"ingestion/landing_batch": "b7"}, asset_selection=[USERS.key]
    )
    meta = result.get_asset_materialization_events()[0].step_materialization_data
    assert meta.materialization.metadata["landing_skipped_files"].value == "b7/_notes.jsonl"
    assert meta.materialization.metadata["rows_written"].value == 1
