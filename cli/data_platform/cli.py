"""The ``data-platform`` command: local work on the whole platform (demo, ui, tables, bench).

Options set the same environment variables that ``shared.settings`` reads, so the runs the
command starts (and dbt, in their steps) see one consistent configuration.
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
    from data_platform.demo import (
        EXIT_FAILED,
        DemoFailed,
        format_report,
        partition_range,
        run_demo,
    )
    from ingestion.settings import load_standin_settings
    from shared.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        if not args.json:
            s = load_standin_settings()
            first, last = partition_range(s)
            print(
                f"data-platform demo: home={settings.home} users={s.users} "
                f"events/day={s.events_per_day} days={s.days} ({first}..{last}) seed={s.seed}"
            )
        report = run_demo(log=(lambda _m: None) if args.json else print)
    except (DemoFailed, SettingsError, OSError) as exc:
        # OSError: the disk is full or the home vanished mid-run; one line, not a traceback.
        print(f"demo failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except _storage_errors() as exc:
        # SQLite (the Dagster instance, the Iceberg catalog) reports a full disk as its own
        # error, wrapped by SQLAlchemy; every table is still at its last complete commit.
        reason = getattr(exc, "orig", None) or exc
        print(
            f"demo failed: could not write under {_home_of(args)}: {reason}; free space there "
            "and run again (every table is at its last complete commit)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.as_dict(), default=str))
    else:
        print(format_report(report))
    return report.exit_code()


def _storage_errors() -> tuple[type[BaseException], ...]:
    """The errors a full or failing disk raises through SQLite (and SQLAlchemy around it)."""
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    return (sqlite3.Error, DBAPIError)


def _home_of(args: argparse.Namespace) -> str:
    from shared.settings import SettingsError, load_settings

    try:
        return str(load_settings().home)
    except SettingsError:
        return "DATA_PLATFORM_HOME"


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


def _cmd_ui(args: argparse.Namespace) -> int:
    """``dagster dev -w workspace.yaml`` on the demo's instance, so the UI shows its runs."""
    import shutil

    from data_platform.demo import demo_instance_dir
    from data_platform.graph import WORKSPACE_FILE
    from shared.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    instance_dir = demo_instance_dir(settings.home)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    cmd = [dagster, "dev", "-w", str(WORKSPACE_FILE), "--host", args.host, "--port", str(args.port)]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(instance_dir),
        "DATA_PLATFORM_HOME": str(settings.home),
    }
    # This environment's executables first (dbt for the transformation location), also when the
    # command is run without `uv run`.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # `dagster dev` is what serves workspace.yaml (`dg dev` serves dg.toml); its notice that
    # `dg dev` supersedes it is not news here.
    quiet = "ignore:Function `dev_command` is superseded"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet]))
    print(
        f"data-platform ui: http://{args.host}:{args.port} once the three code locations have "
        f"loaded (about a minute); Dagster instance {instance_dir} (DAGSTER_HOME), shared with "
        "`data-platform demo`. Ctrl-C stops it.",
        flush=True,
    )
    os.execve(dagster, cmd, env)
    return 0  # not reached: exec replaces this process


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
    demo.add_argument("--days", type=int, help="days of events, ending yesterday (default 14)")
    demo.add_argument("--seed", type=int, help="generator seed (default 42)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(func=_cmd_demo)

    tables = sub.add_parser("tables", help="list every Iceberg table of the local lakehouse")
    tables.add_argument("--home", help="local lakehouse folder (DATA_PLATFORM_HOME)")
    tables.add_argument("--json", action="store_true", help="one JSON object per table")
    tables.set_defaults(func=_cmd_tables)

    ui = sub.add_parser(
        "ui", help="the Dagster UI over workspace.yaml, on the demo's instance (dagster dev)"
    )
    ui.add_argument("--home", help="local lakehouse folder (DATA_PLATFORM_HOME)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ui.add_argument("--port", type=int, default=3000, help="port (3000)")
    ui.set_defaults(func=_cmd_ui)

    bench = sub.add_parser("bench", help="run the benchmarks; one JSON line per measurement")
    bench.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes)")
    bench.add_argument("--output", default="bench-results/results.jsonl", help="results file")
    bench.add_argument("--only", action="append", help="run only the named measurement(s)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def _pin_standin_end() -> None:
    """The demo's data ends yesterday unless ``DATA_PLATFORM_STANDIN_END`` says otherwise: set it
    to that day's date for this process and every process it starts (code servers, dbt), so a
    demo crossing midnight writes one range, and the UI's runs agree with the demo's data."""
    from ingestion.settings import STANDIN_END, yesterday
    from shared.settings import env_str, environment

    if not env_str(environment(), STANDIN_END):
        os.environ[STANDIN_END] = yesterday().isoformat()


def main(argv: list[str] | None = None) -> int:
    from data_platform.processes import restore_default_interrupt

    # Before any run: started in the background with SIGINT ignored, the command (and what it
    # starts) would otherwise ignore SIGTERM after its first in-process run (see there).
    restore_default_interrupt()
    # Dagster flags beta/preview parameters (backfill_policy, ...) on every import; they are
    # deliberate choices here, not news for someone running the demo.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=r".*\b(beta|preview)\b")
    args = build_parser().parse_args(argv)
    _apply_env(args)
    if args.command in ("demo", "ui"):
        _pin_standin_end()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
