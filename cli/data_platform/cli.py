"""The ``data-platform`` command: local work on the whole platform (demo, tables, bench).

Options set the same environment variables that ``shared.settings`` reads, so the runs the
command starts (and dbt's subprocesses) see one consistent configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path


def _apply_env(args: argparse.Namespace) -> None:
    mapping = {
        "home": "DATA_PLATFORM_HOME",
        "users": "DATA_PLATFORM_STANDIN_USERS",
        "events_per_day": "DATA_PLATFORM_STANDIN_EVENTS_PER_DAY",
        "days": "DATA_PLATFORM_STANDIN_DAYS",
        "seed": "DATA_PLATFORM_STANDIN_SEED",
    }
    for attr, var in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            os.environ[var] = str(Path(value).resolve()) if attr == "home" else str(value)


def _cmd_demo(args: argparse.Namespace) -> int:
    from data_platform.demo import DemoFailed, format_report, run_demo
    from ingestion.settings import load_standin_settings
    from shared.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        if not args.json:
            s = load_standin_settings()
            print(
                f"data-platform demo: home={settings.home} users={s.users} "
                f"events/day={s.events_per_day} days={s.days} seed={s.seed}"
            )
        report = run_demo(log=(lambda _m: None) if args.json else print)
    except (DemoFailed, SettingsError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), default=str))
    else:
        print(format_report(report))
    return 0 if all(c.passed for c in report.checks) else 2


def _cmd_tables(args: argparse.Namespace) -> int:
    from shared.iceberg import list_tables, open_catalog
    from shared.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        tables = list_tables(open_catalog(settings))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for t in tables:
            print(json.dumps(t))
    else:
        for t in tables:
            print(f"{t['identifier']:<28} rows={t['row_count']:<9} snapshot={t['snapshot_id']}")
            print(f"  {t['metadata_location']}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from data_platform.bench import run_bench

    return run_bench(quick=args.quick, output=args.output, only=args.only)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="materialize the whole cross-location graph locally")
    demo.add_argument("--home", help="local lakehouse folder (DATA_PLATFORM_HOME)")
    demo.add_argument("--users", type=int, help="stand-in users (default 200)")
    demo.add_argument("--events-per-day", type=int, help="stand-in events per day (default 500)")
    demo.add_argument("--days", type=int, help="days of events from 2026-01-01 (default 14)")
    demo.add_argument("--seed", type=int, help="generator seed (default 42)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(func=_cmd_demo)

    tables = sub.add_parser("tables", help="list every Iceberg table of the local lakehouse")
    tables.add_argument("--home", help="local lakehouse folder (DATA_PLATFORM_HOME)")
    tables.add_argument("--json", action="store_true", help="one JSON object per table")
    tables.set_defaults(func=_cmd_tables)

    bench = sub.add_parser("bench", help="run the benchmarks; one JSON line per measurement")
    bench.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes)")
    bench.add_argument("--output", default="bench-results/results.jsonl", help="results file")
    bench.add_argument("--only", action="append", help="run only the named measurement(s)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Dagster flags beta/preview parameters (backfill_policy, ...) on every import; they are
    # deliberate choices here, not news for someone running the demo.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*beta.*")
    args = build_parser().parse_args(argv)
    _apply_env(args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
