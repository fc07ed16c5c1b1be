"""What one benchmark subprocess does: ``python -m data_platform.bench_worker TASK ARGS OUT``.

Each timed piece of work runs in a fresh process so that its peak memory (``ru_maxrss``) and its
imports are its own, and so that the platform path and its baseline start from the same state.
``ARGS`` is a JSON object; the task's result (a JSON object) is written to the file ``OUT``, with
``peak_rss_mib`` of the process (and of its children, e.g. dbt) added. Timings exclude the
process start and imports: they cover the work only, measured with ``time.perf_counter``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def task(fn: Callable[[dict[str, Any]], dict[str, Any]]):
    TASKS[fn.__name__] = fn
    return fn


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of this process and of its largest waited-for child, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mib": round(own, 1), "peak_rss_children_mib": round(children, 1)}


def dir_bytes(path: Path, suffix: str = "") -> tuple[int, int]:
    """(files, bytes) under ``path`` whose name ends with ``suffix``."""
    files = size = 0
    for p in Path(path).rglob(f"*{suffix}"):
        if p.is_file():
            files += 1
            size += p.stat().st_size
    return files, size


# --------------------------------------------------------------------------------------------
# 1. Ingestion throughput
# --------------------------------------------------------------------------------------------


@task
def generate_events(args: dict[str, Any]) -> dict[str, Any]:
    """Generate ``rows`` raw events with the ingestion stand-in, one batch per day, into an
    uncompressed Arrow IPC file: the one source both writers read, batch by batch."""
    import pyarrow as pa

    from ingestion.settings import StandInSettings
    from ingestion.standin import generate_events as gen
    from ingestion.streams import EVENTS

    per_day = int(args["events_per_day"])
    days = int(args["rows"]) // per_day
    standin = StandInSettings(
        users=int(args["users"]), events_per_day=per_day, days=days, seed=int(args["seed"])
    )
    t0 = time.perf_counter()
    nbytes = 0
    with pa.OSFile(args["path"], "wb") as sink:
        with pa.ipc.new_file(sink, EVENTS.schema) as writer:
            for day in range(days):
                table = gen(standin, day).combine_chunks()
                nbytes += table.nbytes
                writer.write_table(table)
    seconds = time.perf_counter() - t0
    # How long merely reading the source takes: part of both writers' time, not writing.
    t0 = time.perf_counter()
    read_rows = sum(b.num_rows for b in ipc_batches(args["path"]))
    return {
        "rows": read_rows,
        "days": days,
        "arrow_bytes": nbytes,
        "seconds": seconds,
        "read_seconds": time.perf_counter() - t0,
    }


def ipc_batches(path: str) -> Iterator[Any]:
    """The source's batches, read one at a time into memory (not memory-mapped: a mapped file's
    pages would count in RSS and hide what the writer itself holds)."""
    import pyarrow as pa

    with pa.OSFile(path, "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def ipc_schema(path: str):
    import pyarrow as pa

    with pa.OSFile(path, "rb") as source:
        return pa.ipc.open_file(source).schema


@task
def write_iceberg(args: dict[str, Any]) -> dict[str, Any]:
    """The platform's write path: ``shared.iceberg.write_table`` with a batches callable."""
    os.environ["DATA_PLATFORM_HOME"] = args["home"]
    from shared.iceberg import ensure_table, open_catalog, write_table
    from shared.settings import load_settings

    settings = load_settings()
    catalog = open_catalog(settings)
    schema = ipc_schema(args["source"])
    # The table exists before the timed write, as it does for every sync after the first: the
    # figure is the steady-state cost of writing data, not of creating a table.
    ensure_table(catalog, args["identifier"], schema)
    t0 = time.perf_counter()
    result = write_table(
        catalog,
        args["identifier"],
        lambda: ipc_batches(args["source"]),
        mode="append",
        schema=schema,
    )
    seconds = time.perf_counter() - t0
    table = catalog.load_table(args["identifier"])
    files = [t.file for t in table.scan().plan_files()]
    return {
        "rows": result.rows_written,
        "seconds": seconds,
        "files": len(files),
        "parquet_bytes": sum(f.file_size_in_bytes for f in files),
        "snapshots": len(table.snapshots()),
    }


def pyiceberg_parquet_options() -> dict[str, Any]:
    """The Parquet writer options pyiceberg uses for a table with default properties, so the
    baseline writes the same format (zstd, same page, dictionary and row-group sizes)."""
    from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs
    from pyiceberg.table import TableProperties

    options = dict(_get_parquet_writer_kwargs({}))
    options["row_group_size"] = TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT
    return options


@task
def write_parquet(args: dict[str, Any]) -> dict[str, Any]:
    """The bound: the same batches straight into one Parquet file with pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    options = dict(args["parquet_options"])
    row_group_size = options.pop("row_group_size")
    schema = ipc_schema(args["source"])
    t0 = time.perf_counter()
    rows = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    with pq.ParquetWriter(args["path"], schema, store_decimal_as_integer=True, **options) as w:
        # Buffer batches up to the row-group size, as a careful pyarrow user would: writing each
        # small batch makes one row group per batch, which is slower (measured: 100k-row row
        # groups were slower than the Iceberg path's ~850k-row ones), not the machine's limit.
        for batch in ipc_batches(args["source"]):
            pending.append(batch)
            pending_rows += batch.num_rows
            rows += batch.num_rows
            if pending_rows >= row_group_size:
                w.write_table(pa.Table.from_batches(pending), row_group_size=row_group_size)
                pending, pending_rows = [], 0
        if pending:
            w.write_table(pa.Table.from_batches(pending), row_group_size=row_group_size)
    seconds = time.perf_counter() - t0
    return {
        "rows": rows,
        "seconds": seconds,
        "files": 1,
        "parquet_bytes": Path(args["path"]).stat().st_size,
    }


# --------------------------------------------------------------------------------------------
# 2. Analytics against bare polars
# --------------------------------------------------------------------------------------------


@task
def analytics_setup(args: dict[str, Any]) -> dict[str, Any]:
    """Materialize analytics' inputs directly with ``shared.iceberg`` from stand-in data:
    ``staging.stg_events`` (deduplicated events, partitioned by day on ``event_date``) and
    ``marts.dim_users`` (latest version per user). No dbt: only the inputs' shape matters."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ingestion.settings import StandInSettings
    from ingestion.standin import generate_events as gen
    from ingestion.standin import generate_users_base
    from shared.iceberg import open_catalog, write_table
    from shared.settings import load_settings

    os.environ["DATA_PLATFORM_HOME"] = args["home"]
    standin = StandInSettings(
        users=int(args["users"]),
        events_per_day=int(args["events_per_day"]),
        days=int(args["days"]),
        seed=int(args["seed"]),
    )
    catalog = open_catalog(load_settings())
    t0 = time.perf_counter()

    def stg_events_days() -> Iterator[pa.Table]:
        for day in range(standin.days):
            raw = gen(standin, day)
            # stg_events keeps one row per event_id (the stand-in re-delivers ~0.4%).
            # Raw ids are unique, so the smallest per event_id picks exactly one version.
            keep = raw.group_by("event_id").aggregate([("_airbyte_raw_id", "min")])
            raw = raw.filter(pc.is_in(raw["_airbyte_raw_id"], keep["_airbyte_raw_id_min"]))
            raw = raw.sort_by("event_ts")
            yield pa.table(
                {
                    "event_id": raw["event_id"],
                    "user_id": raw["user_id"],
                    "event_type": raw["event_type"],
                    "event_ts": raw["event_ts"],
                    "event_date": pc.cast(raw["event_ts"], pa.date32()),
                    "amount": raw["amount"],
                    "airbyte_raw_id": raw["_airbyte_raw_id"],
                    "extracted_at": raw["_airbyte_extracted_at"],
                }
            )

    # One write of every day, as the demo's single backfill run of stg_events writes it (one
    # snapshot, one data file per day). Written day by day in separate commits, the table would
    # carry one manifest per day and pyiceberg's planning and reading would cost more (see
    # docs/benchmarks.md); the Parquet files polars reads would be the same.
    events = write_table(
        catalog,
        "staging.stg_events",
        pa.concat_tables(list(stg_events_days())),
        mode="overwrite",
        partition_by_day="event_date",
    )
    base = generate_users_base(standin)
    users = pa.table(
        {
            "user_id": base["id"],
            "email": base["email"],
            "full_name": base["name"],
            "country": base["country"],
            "plan": base["plan"],
            "signed_up_at": base["signup_at"],
            "updated_at": base["updated_at"],
        }
    )
    dim = write_table(catalog, "marts.dim_users", users, mode="overwrite")
    return {
        "stg_events_rows": events.row_count,
        "dim_users_rows": dim.row_count,
        "seconds": time.perf_counter() - t0,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values)


@task
def analytics(args: dict[str, Any]) -> dict[str, Any]:
    """Set up the inputs, then time: one process for both (the timings exclude the setup)."""
    return {"setup": analytics_setup(args), "timed": analytics_time(args)}


@task
def analytics_time(args: dict[str, Any]) -> dict[str, Any]:
    """Time ``user_features`` and one day of ``daily_metrics``: through pyiceberg and the
    platform's helpers (as the assets read), and as the same polars query on the same Parquet
    files scanned directly. Alternates the two, after one untimed warm-up of each.

    The profile splits the platform's time into reading (``analytics.io.read_upstream``: load
    the table, build the lazy ``pl.scan_iceberg`` query) and computing, times the catalog lookup
    alone (loading both tables, which bare polars skips: it is handed its file list), and times
    the previous reader's approach for comparison ("fix"): pyiceberg plans the scan, polars reads
    the planned files itself.

    One day of metrics takes tens of milliseconds, so on a shared machine one slow sample moves
    a median of five: it is repeated ``day_repeats`` times (default ``repeats``).
    """
    import polars as pl

    from analytics import features as feature_defs
    from analytics import metrics as metric_defs
    from analytics.io import read_upstream
    from analytics.sources import DIM_USERS, STG_EVENTS
    from shared.resources import IcebergCatalogResource

    iceberg = IcebergCatalogResource(home=args["home"])
    as_of = dt.date.fromisoformat(args["as_of"])
    day = dt.date.fromisoformat(args["day"])
    one = dt.timedelta(days=1)
    reps = int(args["repeats"])
    day_reps = int(args.get("day_repeats", reps))

    def files(identifier: str, row_filter=None) -> list[str]:
        scan = iceberg.load_table(identifier).scan(
            **({"row_filter": row_filter} if row_filter is not None else {})
        )
        return [t.file.file_path.removeprefix("file://") for t in scan.plan_files()]

    def physical(upstream) -> dict[str, str]:
        schema = iceberg.load_table(upstream.identifier).schema()
        return upstream.resolve([f.name for f in schema.fields])

    # Resolved once, outside the timings: bare polars knows its files and column names.
    events_files, users_files = files(STG_EVENTS.identifier), files(DIM_USERS.identifier)
    columns = {
        STG_EVENTS.identifier: physical(STG_EVENTS),
        DIM_USERS.identifier: physical(DIM_USERS),
    }

    def scan(paths: list[str], upstream) -> pl.LazyFrame:
        cols = columns[upstream.identifier]
        return pl.scan_parquet(paths).select([pl.col(p).alias(n) for n, p in cols.items()])

    def utc(d: dt.date) -> dt.datetime:
        return dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC)

    def in_window(column: str, start: dt.date | None, end: dt.date) -> pl.Expr:
        expr = pl.col(column) < utc(end)
        return expr if start is None else (pl.col(column) >= utc(start)) & expr

    # Each query: (read through the platform -> frames), compute(frames), bare polars frames.
    def features_read():
        events = read_upstream(
            iceberg, STG_EVENTS, window_column="event_ts", end=as_of + one,
            pruning_column="event_date",
        )  # fmt: skip
        return events.frame, read_upstream(iceberg, DIM_USERS).frame

    def features_compute(events, users) -> pl.DataFrame:
        return feature_defs.user_features(users, events, as_of).collect()

    def features_polars(events_paths=None, users_paths=None):
        events = scan(events_paths or events_files, STG_EVENTS)
        users = scan(users_paths or users_files, DIM_USERS)
        return events.filter(in_window("event_ts", None, as_of + one)), users

    def features_fix():
        from pyiceberg.expressions import LessThan

        prune = LessThan("event_date", (as_of + 2 * one).isoformat())
        return features_polars(files(STG_EVENTS.identifier, prune), files(DIM_USERS.identifier))

    def metrics_read():
        events = read_upstream(
            iceberg, STG_EVENTS, window_column="event_ts", start=day, end=day + one,
            pruning_column="event_date",
        )  # fmt: skip
        users = read_upstream(
            iceberg, DIM_USERS, window_column="signup_at", start=day, end=day + one
        )
        return events.frame, users.frame

    def metrics_compute(events, users) -> pl.DataFrame:
        return metric_defs.daily_metrics(events, users, day, day + one).collect()

    def metrics_polars(events_paths=None, users_paths=None):
        events = scan(events_paths or events_files, STG_EVENTS)
        users = scan(users_paths or users_files, DIM_USERS)
        return (
            events.filter(in_window("event_ts", day, day + one)),
            users.filter(in_window("signup_at", day, day + one)),
        )

    def metrics_fix():
        from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

        prune = And(
            GreaterThanOrEqual("event_date", (day - one).isoformat()),
            LessThan("event_date", (day + 2 * one).isoformat()),
        )
        return metrics_polars(files(STG_EVENTS.identifier, prune), files(DIM_USERS.identifier))

    def catalog_lookup() -> None:
        iceberg.load_table(STG_EVENTS.identifier)
        iceberg.load_table(DIM_USERS.identifier)

    out: dict[str, Any] = {"stg_events_files": len(events_files)}
    for name, read, compute, polars, fix, repeats in (
        ("user_features", features_read, features_compute, features_polars, features_fix, reps),
        ("daily_metrics", metrics_read, metrics_compute, metrics_polars, metrics_fix, day_reps),
    ):
        times: dict[str, list[float]] = {
            k: [] for k in ("platform", "read", "polars", "fix", "lookup")
        }
        results = {}
        for rep in range(repeats + 1):  # rep 0 is the untimed warm-up
            t0 = time.perf_counter()
            frames = read()
            t1 = time.perf_counter()
            results["platform"] = compute(*frames)
            t2 = time.perf_counter()
            results["polars"] = compute(*polars())
            t3 = time.perf_counter()
            results["fix"] = compute(*fix())
            t4 = time.perf_counter()
            catalog_lookup()
            t5 = time.perf_counter()
            if rep == 0:
                cold = {"platform": t2 - t0, "polars": t3 - t2}
                continue
            times["platform"].append(t2 - t0)
            times["read"].append(t1 - t0)
            times["polars"].append(t3 - t2)
            times["fix"].append(t4 - t3)
            times["lookup"].append(t5 - t4)
        lookup = _median(times["lookup"])
        out[name] = {
            "repeats": repeats,
            "rows_out": results["platform"].height,
            "results_equal": results["platform"].equals(results["polars"]),
            "fix_results_equal": results["platform"].equals(results["fix"]),
            "platform_seconds": _median(times["platform"]),
            "polars_seconds": _median(times["polars"]),
            "platform_all": [round(t, 4) for t in times["platform"]],
            "polars_all": [round(t, 4) for t in times["polars"]],
            "platform_cold_seconds": cold["platform"],
            "polars_cold_seconds": cold["polars"],
            "profile": {
                "read_upstream_seconds": round(_median(times["read"]), 4),
                "compute_seconds": round(
                    _median(p - r for p, r in zip(times["platform"], times["read"], strict=True)),
                    4,
                ),
                "catalog_lookup_seconds": round(lookup, 4),
                "ratio_without_catalog_lookup": round(
                    (_median(times["platform"]) - lookup) / _median(times["polars"]), 3
                ),
                "fix_candidate_seconds": round(_median(times["fix"]), 4),
                "fix_candidate": "pyiceberg plan_files (pruned) + pl.scan_parquet of those files",
            },
        }
    return out


# --------------------------------------------------------------------------------------------
# 3. Incremental cost
# --------------------------------------------------------------------------------------------


@task
def incremental(args: dict[str, Any]) -> dict[str, Any]:
    """Build history and time one new day after each history length (see bench_incremental)."""
    from data_platform.bench_incremental import measure_incremental

    return measure_incremental(
        home=args["home"],
        histories=[int(h) for h in args["histories"]],
        users=int(args["users"]),
        events_per_day=int(args["events_per_day"]),
        seed=int(args["seed"]),
        repeats=int(args.get("repeats", 3)),
        without_checks=bool(args.get("without_checks", False)),
    )


@task
def moved_day(args: dict[str, Any]) -> dict[str, Any]:
    """Build history, then time a one-day sync and its look-up of the days its events left."""
    from data_platform.bench_moved import measure_moved_day

    return measure_moved_day(
        home=args["home"],
        events_per_day=int(args["events_per_day"]),
        days=int(args["days"]),
        repeats=int(args["repeats"]),
        users=int(args["users"]),
        seed=int(args["seed"]),
    )


# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    name, raw_args, out = argv
    args = json.loads(raw_args)
    result = TASKS[name](args)
    result.update(peak_rss_mib())
    Path(out).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
