"""Check the dbt project's SQL as rendered for Trino, with no Trino server.

``dbt compile --target trino`` needs a live Trino only because dbt opens a connection (to fill
its relation cache and answer introspective queries such as ``is_incremental()``). Here it runs
in-process against a stand-in DB-API connection that answers every query with no rows ("no
relation exists yet"), so dbt renders every model and test exactly as dbt-trino would for
production: real dbt-trino macros, real dispatch of cross-database macros, real configs.

Each rendered statement is then parsed by sqlglot in the Trino dialect with errors raised, and
checked for constructs sqlglot accepts but Trino rejects (see :data:`FORBIDDEN` and the
function allow-list).

It also runs ``dbt run --target trino`` against a simulated Trino that records every statement
and answers dbt's catalog queries (an empty warehouse, then one where the tables exist), so the
DDL/DML dbt-trino wraps around the models (CREATE TABLE AS with the Iceberg table properties, the
temp table, DELETE and INSERT of ``delete+insert``) is checked too.

What this does NOT catch (documented in the location README):

* semantic errors: unknown tables/columns, type mismatches (e.g. comparing varchar with bigint),
  functions called with wrong argument types, Trino's stricter implicit casts;
* ``is_incremental()`` branches inside model bodies (the models do not use it: the window vars
  decide), and anything that depends on real column types or on query results (the one result a
  model reads while rendering, stg_events' extraction bound, is a fixed answer here:
  :data:`EARLIEST_EXTRACTION`);
* Iceberg connector limits (table properties, partition transforms) and runtime behaviour.

A check tool, not production code: it lives with the tests (``tests/``), outside every installed
package. Usage, from the repository root: ``python -m tests.trino_check`` (exit code 1 and one
line per problem on failure).
"""

from __future__ import annotations

import datetime as dt
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

#: What the simulated Trino answers for the window's earliest extraction that stg_events queries
#: when it executes (dbt/macros/extraction_bound.sql): with a row, the model renders its bound
#: literal, which is then checked too. Below a second, in another zone: the macro floors and
#: converts to UTC.
EARLIEST_EXTRACTION = dt.datetime(
    2026, 1, 2, 1, 5, 0, 123_456, tzinfo=dt.timezone(dt.timedelta(hours=1))
)


def _data_answer(sql: str) -> tuple[list[tuple[str]], list[tuple]]:
    """(description column names, rows) for the queries models send while rendering (none but
    the extraction bound: every other query returns no rows)."""
    low = " ".join(sql.lower().split())
    if "min(_airbyte_extracted_at) as earliest" in low:
        return [("matching_rows",), ("extracted_rows",), ("earliest",)], [
            (2, 2, EARLIEST_EXTRACTION)
        ]
    return [], []


@dataclass(frozen=True)
class Problem:
    node: str
    variant: str
    message: str

    def __str__(self) -> str:
        return f"{self.node} [{self.variant}]: {self.message}"


class _SimulatedTrino:
    """A stand-in Trino for dbt: records every statement and answers catalog queries.

    ``existing`` maps schema -> table -> column names: the relations the warehouse "has". Empty,
    every model is created from scratch; filled, dbt takes the incremental path of daily models
    (temp table, DELETE, INSERT) and replaces the other tables. The extraction bound is answered
    by :func:`_data_answer`; any other statement returns no rows.
    """

    def __init__(self, database: str, existing: Mapping[str, Mapping[str, list[str]]]):
        self.database = database
        self.existing = existing
        self.statements: list[str] = []

    def answer(self, sql: str) -> tuple[list[tuple[str]], list[tuple]]:
        """(description column names, rows) for ``sql``."""
        import re

        low = " ".join(sql.lower().split())
        if ".schemata" in low and "count(*)" in low:
            schema = re.search(r"schema_name = '([^']+)'", low)
            return [("_col0",)], [(1 if schema and schema.group(1) in self.existing else 0,)]
        if ".schemata" in low:
            return [("schema_name",)], [(name,) for name in self.existing]
        if ".tables t" in low:
            schema = re.search(r"t\.table_schema = '([^']+)'", low)
            tables = self.existing.get(schema.group(1), {}) if schema else {}
            rows = [(self.database, name, schema.group(1), "table") for name in tables]
            return [("database",), ("name",), ("schema",), ("table_type",)], rows
        if ".columns" in low and "table_name =" in low:
            schema = re.search(r"table_schema = '([^']+)'", low)
            table = re.search(r"table_name = '([^']+)'", low)
            name = table.group(1).removesuffix("__dbt_tmp") if table else ""
            columns = self.existing.get(schema.group(1) if schema else "", {}).get(name, [])
            return [("column_name",), ("data_type",)], [(c, "varchar") for c in columns]
        return _data_answer(sql)

    def connect(self, *args: Any, **kwargs: Any) -> _FakeTrinoConnection:
        return _FakeTrinoConnection(self)


class _FakeTrinoCursor:
    """A DB-API cursor over :class:`_SimulatedTrino`."""

    rowcount = -1
    update_type = None
    query_id = "offline"
    stats: dict[str, Any] = {}
    warnings: list[Any] = []

    def __init__(self, server: _SimulatedTrino | None = None):
        self.server = server
        self.query: str | None = None
        self.description = None
        self._rows: list[tuple] = []

    def execute(self, sql: str, params: Any = None) -> _FakeTrinoCursor:
        self.query = sql
        if self.server is None:
            names, self._rows = _data_answer(sql)
        else:
            self.server.statements.append(sql)
            names, self._rows = self.server.answer(sql)
        self.description = [(n[0], "varchar", None, None, None, None, None) for n in names] or None
        return self

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int = 1) -> list[Any]:
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


class _FakeTrinoConnection:
    def __init__(self, server: _SimulatedTrino | None = None):
        self.server = server

    def cursor(self, *args: Any, **kwargs: Any) -> _FakeTrinoCursor:
        return _FakeTrinoCursor(self.server)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def _dbt_args(command: str, project_dir: Path, target: str, dbt_vars: Mapping | None) -> list[str]:
    args = [
        command,
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
    return args


def run_against_simulated_trino(
    project_dir: Path,
    existing: Mapping[str, Mapping[str, list[str]]],
    dbt_vars: Mapping[str, str] | None = None,
) -> list[str]:
    """``dbt run --target trino`` against :class:`_SimulatedTrino`; returns every statement sent.

    This renders what dbt-trino really sends around the models: CREATE TABLE AS with the Iceberg
    table properties, and for daily models the temp table, DELETE and INSERT of delete+insert.
    """
    import trino.dbapi
    from dbt.cli.main import dbtRunner

    server = _SimulatedTrino("lakehouse", existing)
    original = trino.dbapi.connect
    trino.dbapi.connect = server.connect
    try:
        with tempfile.TemporaryDirectory(prefix="dbt-trino-run-") as target:
            os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            result = dbtRunner().invoke(_dbt_args("run", project_dir, target, dbt_vars))
            if not result.success:
                raise RuntimeError(f"dbt run --target trino failed offline: {result.exception}")
    finally:
        trino.dbapi.connect = original
    return server.statements


def compile_for_trino(project_dir: Path, dbt_vars: Mapping[str, str] | None = None) -> dict:
    """Run ``dbt compile --target trino`` offline and return the manifest (as a dict)."""
    import trino.dbapi
    from dbt.cli.main import dbtRunner

    original = trino.dbapi.connect
    trino.dbapi.connect = lambda *a, **k: _FakeTrinoConnection()
    try:
        with tempfile.TemporaryDirectory(prefix="dbt-trino-check-") as target:
            args = _dbt_args("compile", project_dir, target, dbt_vars)
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


def check_sql(sql: str, *, single: bool = True) -> list[str]:
    """Problems of rendered SQL in the Trino dialect (empty: it is valid).

    ``single``: the SQL must be exactly one statement (a model or test body).
    """
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
    if single and len(statements) != 1:
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


def existing_relations(manifest: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """schema -> model -> documented columns: the warehouse after a first production run."""
    existing: dict[str, dict[str, list[str]]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            table = node.get("alias") or node["name"]
            existing.setdefault(node["schema"], {})[table] = list(node["columns"])
    return existing


def _statement_label(sql: str) -> str:
    """The dbt node a captured statement belongs to (from dbt's query comment) and its start."""
    import re

    node = re.search(r'"node_id": "([^"]+)"', sql)
    body = " ".join(re.sub(r"/\*.*?\*/", " ", sql, flags=re.S).split())
    return f"{node.group(1) if node else 'dbt'}: {body[:60]}"


def check_project(project_dir: Path) -> tuple[int, list[Problem]]:
    """Render the project for Trino in four ways and check every statement.

    * ``compile/full`` and ``compile/window``: every model and test body (no window; a window);
    * ``run/first``: every statement of ``dbt run`` into an empty warehouse (CREATE TABLE AS);
    * ``run/incremental``: the same once the tables exist (delete+insert of the daily models).

    Returns (statements checked, problems).
    """
    checked = 0
    problems: list[Problem] = []
    manifest: dict = {}
    for variant, dbt_vars in (("compile/full", None), ("compile/window", WINDOW_VARS)):
        manifest = compile_for_trino(project_dir, dbt_vars)
        for unique_id, sql in rendered_nodes(manifest):
            checked += 1
            problems += [Problem(unique_id, variant, m) for m in check_sql(sql)]
    for variant, existing in (("run/first", {}), ("run/incremental", existing_relations(manifest))):
        statements = run_against_simulated_trino(project_dir, existing, WINDOW_VARS)
        if not any(s.lstrip().lower().startswith("insert") for s in statements) and existing:
            problems.append(
                Problem("dbt run", variant, "no INSERT rendered: incremental path not taken")
            )
        for sql in statements:
            checked += 1
            label = _statement_label(sql)
            problems += [Problem(label, variant, m) for m in check_sql(sql, single=False)]
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
