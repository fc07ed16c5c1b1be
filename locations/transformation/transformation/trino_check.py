"""Check the dbt project's SQL as rendered for Trino, with no Trino server.

``dbt compile --target trino`` needs a live Trino only because dbt opens a connection (to fill
its relation cache and answer introspective queries such as ``is_incremental()``). Here it runs
in-process against a stand-in DB-API connection that answers every query with no rows ("no
relation exists yet"), so dbt renders every model and test exactly as dbt-trino would for
production: real dbt-trino macros, real dispatch of cross-database macros, real configs.

Each rendered statement is then parsed by sqlglot in the Trino dialect with errors raised, and
checked for constructs sqlglot accepts but Trino rejects (see :data:`FORBIDDEN` and the
function allow-list).

It runs twice: a full build (no day window) and a daily window, because the models render
differently with the window vars.

What this does NOT catch (documented in the location README):

* semantic errors: unknown tables/columns, type mismatches (e.g. comparing varchar with bigint),
  functions called with wrong argument types, Trino's stricter implicit casts;
* the incremental branch (``is_incremental()`` is false: the stand-in has no relations), and the
  DDL/DML that dbt-trino wraps around each model (CREATE TABLE AS, DELETE+INSERT), which come from
  dbt-trino itself;
* Iceberg connector limits (table properties, partition transforms) and runtime behaviour.

Usage: ``python -m transformation.trino_check`` (exit code 1 and one line per problem on failure).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: sqlglot expression types that Trino does not support but sqlglot parses in any dialect.
FORBIDDEN = {
    "Qualify": "QUALIFY (DuckDB/Snowflake) is not Trino SQL: filter row_number() in a subquery",
}

#: Functions sqlglot does not model for Trino (parsed as "anonymous") that Trino does have.
#: A function missing from sqlglot's Trino dialect AND from this list fails the check: add it
#: here only after checking it in Trino's function list.
TRINO_EXTRA_FUNCTIONS = {
    "to_utf8",
    "from_utf8",
    "to_hex",
    "from_hex",
    "current_timezone",
    "date_add",
    "date_diff",
    "from_iso8601_timestamp",
    "from_iso8601_date",
    "to_iso8601",
    "at_timezone",
    "with_timezone",
    "last_day_of_month",
    "human_readable_seconds",
    "to_milliseconds",  # dbt-trino's datediff(..., 'day')
}

WINDOW_VARS = {"window_start": "2026-01-01", "window_end": "2026-01-02"}


@dataclass(frozen=True)
class Problem:
    node: str
    variant: str
    message: str

    def __str__(self) -> str:
        return f"{self.node} [{self.variant}]: {self.message}"


class _FakeTrinoCursor:
    """A DB-API cursor that returns no rows for any statement (nothing exists yet)."""

    description = None
    rowcount = -1
    update_type = None
    query_id = "offline"
    query: str | None = None
    stats: dict[str, Any] = {}
    warnings: list[Any] = []

    def execute(self, sql: str, params: Any = None) -> _FakeTrinoCursor:
        self.query = sql
        return self

    def fetchall(self) -> list[Any]:
        return []

    def fetchone(self) -> None:
        return None

    def fetchmany(self, size: int = 1) -> list[Any]:
        return []

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


class _FakeTrinoConnection:
    def cursor(self, *args: Any, **kwargs: Any) -> _FakeTrinoCursor:
        return _FakeTrinoCursor()

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def compile_for_trino(project_dir: Path, dbt_vars: Mapping[str, str] | None = None) -> dict:
    """Run ``dbt compile --target trino`` offline and return the manifest (as a dict)."""
    import trino.dbapi
    from dbt.cli.main import dbtRunner

    original = trino.dbapi.connect
    trino.dbapi.connect = lambda *a, **k: _FakeTrinoConnection()
    try:
        with tempfile.TemporaryDirectory(prefix="dbt-trino-check-") as target:
            args = [
                "compile",
                "--target",
                "trino",
                "--project-dir",
                str(project_dir),
                "--profiles-dir",
                str(project_dir),
                "--target-path",
                target,
                "--no-partial-parse",
                "--quiet",
            ]
            if dbt_vars:
                args += ["--vars", json.dumps(dict(dbt_vars))]
            os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            result = dbtRunner().invoke(args)
            if not result.success:
                raise RuntimeError(f"dbt compile --target trino failed offline: {result.exception}")
            return json.loads((Path(target) / "manifest.json").read_text())
    finally:
        trino.dbapi.connect = original


def rendered_nodes(manifest: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(unique_id, compiled SQL) of every model and test of the project."""
    for unique_id, node in sorted(manifest["nodes"].items()):
        if node["resource_type"] not in ("model", "test"):
            continue
        if node.get("language", "sql") != "sql":
            continue
        sql = node.get("compiled_code")
        if sql is None:
            raise RuntimeError(f"{unique_id} was not compiled for trino")
        yield unique_id, sql


def check_sql(sql: str) -> list[str]:
    """Problems of one rendered statement in the Trino dialect (empty: it is valid)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, ParseError
    from sqlglot.tokens import TokenType

    try:
        tokens = sqlglot.Dialect.get_or_raise("trino").tokenize(sql)
        statements = sqlglot.parse(sql, read="trino", error_level=ErrorLevel.RAISE)
    except (ParseError, sqlglot.errors.TokenError) as err:
        return [f"not valid Trino SQL: {err}"]
    problems = []
    if any(token.token_type == TokenType.DCOLON for token in tokens):
        # sqlglot reads `x::type` in every dialect; Trino has only cast(x as type).
        problems.append("`::` cast (DuckDB/Postgres) is not Trino SQL: use cast(x as type)")
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        problems.append(f"expected one statement, got {len(statements)}")
    for statement in statements:
        for node in statement.walk():
            name = type(node).__name__
            if name in FORBIDDEN:
                problems.append(FORBIDDEN[name])
            if isinstance(node, exp.Anonymous):
                fname = str(node.this).lower()
                if fname not in TRINO_EXTRA_FUNCTIONS:
                    problems.append(
                        f"function {fname}() is not known to sqlglot's Trino dialect nor in "
                        "TRINO_EXTRA_FUNCTIONS (a DuckDB-only function?)"
                    )
            if isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.USERDEFINED:
                problems.append(f"cast to unknown type {node.to.sql('trino')}")
    return problems


def check_project(project_dir: Path) -> tuple[int, list[Problem]]:
    """Compile for Trino (full and windowed) and check every model and test.

    Returns (statements checked, problems).
    """
    checked = 0
    problems: list[Problem] = []
    for variant, dbt_vars in (("full", None), ("window", WINDOW_VARS)):
        manifest = compile_for_trino(project_dir, dbt_vars)
        for unique_id, sql in rendered_nodes(manifest):
            checked += 1
            problems += [Problem(unique_id, variant, m) for m in check_sql(sql)]
    return checked, problems


def main(argv: list[str] | None = None) -> int:
    from transformation.project import DBT_PROJECT_DIR

    checked, problems = check_project(DBT_PROJECT_DIR)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"trino dialect check: {checked} rendered statements, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
