"""shared.pyiceberg_fixes: a commit reads the transaction's metadata once per staged state, and
every read still sees every update staged before it."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyiceberg
import pyiceberg.table
import pytest

from shared import pyiceberg_fixes
from shared.iceberg import open_catalog, write_table
from shared.settings import load_settings


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    return open_catalog(load_settings())  # installs the fix


@pytest.fixture
def replays(monkeypatch):
    """How many times pyiceberg replayed staged updates onto a table's metadata (each replay
    deep-copies the whole metadata)."""
    count = {"n": 0}
    replay = pyiceberg.table.update_table_metadata

    def counted(*args, **kwargs):
        count["n"] += 1
        return replay(*args, **kwargs)

    monkeypatch.setattr(pyiceberg.table, "update_table_metadata", counted)
    return count


def rows(n: int, day: dt.date) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "day": pa.array([day] * n)})


def test_open_catalog_installs_it(tmp_path, monkeypatch):
    # As in a process where nothing installed it yet (the test session installs it up front).
    original = pyiceberg_fixes._pyiceberg_property  # noqa: SLF001
    monkeypatch.setattr(pyiceberg_fixes, "_installed", False)
    monkeypatch.setattr(pyiceberg.table.Transaction, "table_metadata", original)
    monkeypatch.setenv("DATA_PLATFORM_HOME", str(tmp_path))
    open_catalog(load_settings())
    installed = pyiceberg.table.Transaction.table_metadata
    assert installed is not original
    assert installed.fget.__qualname__.startswith("install.<locals>")
    assert pyiceberg_fixes.install() is True  # idempotent: nothing installed twice
    assert pyiceberg.table.Transaction.table_metadata is installed


def test_a_commit_replays_the_staged_updates_once_per_state_not_per_read(
    catalog, replays, monkeypatch
):
    day = dt.date(2026, 1, 1)
    for _ in range(6):  # a table with history: 12 snapshots (an overwrite is a delete + append)
        write_table(catalog, "staging.t", rows(100, day))
    replays["n"] = 0
    write_table(catalog, "staging.t", rows(50, day))
    fixed = replays["n"]
    # Without the fix: pyiceberg's own property, which replays on every read.
    original = pyiceberg_fixes._pyiceberg_property  # noqa: SLF001
    monkeypatch.setattr(pyiceberg.table.Transaction, "table_metadata", original)
    replays["n"] = 0
    write_table(catalog, "staging.t", rows(60, day))
    assert fixed <= 4 < 20 < replays["n"]  # measured: 3 against 48
    assert catalog.load_table("staging.t").scan().to_arrow().num_rows == 60


def test_a_read_sees_every_update_staged_before_it(catalog):
    write_table(catalog, "staging.u", rows(10, dt.date(2026, 1, 2)))
    table = catalog.load_table("staging.u")
    tx = table.transaction()
    first = tx.table_metadata
    assert tx.table_metadata is first  # an unchanged state: computed once
    tx.set_properties({"owner": "transformation"})
    staged = tx.table_metadata
    assert staged is not first and staged.properties["owner"] == "transformation"
    assert "owner" not in first.properties  # the earlier state's metadata is untouched
    tx.set_properties({"owner": "analytics"})
    assert tx.table_metadata.properties["owner"] == "analytics"
    tx.commit_transaction()
    assert catalog.load_table("staging.u").properties["owner"] == "analytics"
    # After the commit the transaction reads the table's new metadata, not its cached state.
    assert tx.table_metadata.properties["owner"] == "analytics"
    assert tx.table_metadata.metadata_log != first.metadata_log


def test_another_pyiceberg_version_is_left_alone(monkeypatch):
    monkeypatch.setattr(pyiceberg_fixes, "_installed", False)
    monkeypatch.setattr(pyiceberg, "__version__", "9.9.9", raising=False)
    before = pyiceberg.table.Transaction.table_metadata
    assert pyiceberg_fixes.install() is False
    assert pyiceberg.table.Transaction.table_metadata is before
