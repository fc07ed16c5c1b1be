"""Guards on the private library APIs the platform uses (issue 12 item 15, issue 11).

``shared.iceberg._append_streaming`` calls pyiceberg's private ``_dataframe_to_data_files``: no
public pyiceberg API writes one bin of a stream into data files and hands them back for a fast
append, which is what keeps a large write's memory bounded (docs/benchmarks.md).
``shared.pyiceberg_fixes`` replaces ``Transaction.table_metadata`` with a cached one that reads
the transaction's private ``_table`` and ``_updates`` (pyiceberg 0.12.0 deep-copies the table's
whole metadata on every read, so a commit's cost grew with the snapshots kept). pyiceberg is
pinned exactly (shared/pyproject.toml) and these tests fail, with what to re-check, when the pin
or the private parts change. (Dagster's ``TableMetadataSet``, private too, is no longer
used: the raw assets set the documented ``dagster/column_schema`` and ``dagster/table_name``
metadata keys themselves.)
"""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pyiceberg

SHARED = Path(__file__).resolve().parents[1]
UPGRADE = (
    "pyiceberg was upgraded: shared.iceberg._append_streaming uses its private "
    "pyiceberg.io.pyarrow._dataframe_to_data_files (and bin_pack_record_batches); check that "
    "they still exist with the same arguments and behaviour (one data file per bin, nothing "
    "committed), or switch to a public API if pyiceberg now offers a bounded-memory streaming "
    "append, then update the pin and this guard."
)


def pinned(package: str) -> str:
    deps = tomllib.loads((SHARED / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.fullmatch(rf"{package}(\[[^\]]*\])?==([\w.]+)", dep)
        if match:
            return match.group(2)
    raise AssertionError(f"{package} must be pinned exactly (==) in shared/pyproject.toml")


def test_pyiceberg_is_the_pinned_version():
    assert pyiceberg.__version__ == pinned("pyiceberg") == "0.12.0", UPGRADE


def test_the_private_writer_has_the_signature_the_write_path_calls():
    from pyiceberg.io import pyarrow as pyiceberg_pyarrow

    writer = getattr(pyiceberg_pyarrow, "_dataframe_to_data_files", None)
    assert writer is not None, UPGRADE
    params = inspect.signature(writer).parameters
    assert {"table_metadata", "df", "io", "write_uuid", "counter"} <= set(params), UPGRADE
    assert callable(getattr(pyiceberg_pyarrow, "bin_pack_record_batches", None)), UPGRADE


FIX_UPGRADE = (
    "pyiceberg was upgraded: shared.pyiceberg_fixes caches Transaction.table_metadata for "
    "0.12.0 only. Check whether the release caches it itself (apache/iceberg-python#3784): if "
    "so, delete shared.pyiceberg_fixes and its call in shared.iceberg.open_catalog; if not, "
    "check that Transaction still keeps _table and _updates (rebound, never changed in place) "
    "and move pyiceberg_fixes.FOR_VERSION to the new pin."
)


def test_the_transaction_metadata_fix_is_for_the_pinned_version():
    from shared import pyiceberg_fixes

    assert pyiceberg_fixes.FOR_VERSION == pinned("pyiceberg"), FIX_UPGRADE


def test_a_transaction_keeps_the_parts_the_fix_reads(tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.schema import Schema
    from pyiceberg.table import Transaction
    from pyiceberg.types import LongType, NestedField

    catalog = SqlCatalog("guard", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}")
    catalog.create_namespace("ns")
    table = catalog.create_table("ns.t", Schema(NestedField(1, "a", LongType())))
    tx = Transaction(table)
    assert tx._table is table and tx._updates == (), FIX_UPGRADE  # noqa: SLF001
    staged = tx._updates  # noqa: SLF001
    tx.set_properties({"k": "v"})
    assert tx._updates is not staged and isinstance(tx._updates, tuple), FIX_UPGRADE  # noqa: SLF001
