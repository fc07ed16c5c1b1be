"""Guards on the one private library API the write path still uses (issue 12 item 15).

``shared.iceberg._append_streaming`` calls pyiceberg's private ``_dataframe_to_data_files``: no
public pyiceberg API writes one bin of a stream into data files and hands them back for a fast
append, which is what keeps a large write's memory bounded (docs/benchmarks.md). pyiceberg is
pinned exactly (shared/pyproject.toml) and these tests fail, with what to re-check, when the pin
or the private function changes. (Dagster's ``TableMetadataSet``, private too, is no longer
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
