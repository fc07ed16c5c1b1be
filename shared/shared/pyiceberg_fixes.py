"""A fix for a pyiceberg shortcoming that made every commit's cost grow with the table's history.

``Transaction.table_metadata`` (pyiceberg 0.12.0) replays every staged update through
``update_table_metadata``, which ends in ``model_copy(deep=True)`` of the whole table metadata,
every snapshot kept included, on EVERY read of the property; and one commit reads it dozens of
times (41 reads for an overwrite through :func:`shared.iceberg.write_table`, measured). So a
commit cost about 0.8 ms more per snapshot the table keeps: an overwrite of 5,000 rows took
29 ms with fewer than 20 snapshots kept, 70 ms with 40-59 and 149 ms with 140-159 (35 ms with
this fix), and the platform's retention keeps the newest 16 and every snapshot of the last hour
(``shared.settings.snapshot_retention``). Every raw sync, key-index catch-up, dbt model
and analytics table commits, so that was a cost that grew with history on every step of a day
(docs/benchmarks.md).

The fix: the property's value is cached on the transaction, keyed on the IDENTITY of its two
inputs, the table's metadata object and the tuple of staged updates. Both are immutable and
rebound, never changed in place: staging an update makes a new tuple, and a commit or a retry
gives the table a new metadata object, so a read after either recomputes, and a read of an
unchanged state returns the metadata computed for it. The cache holds both keys, so neither can
be freed and its id reused while cached. The one visible difference: ``last_updated_ms`` of an
unchanged state is the same on every read instead of "now" (the committed metadata's timestamp
is set at commit time, as before).

This is the change apache/iceberg-python#3302 proposed and a maintainer approved (closed
unmerged by the stale bot) and #3784 carries forward; no release has it as of 0.12.0. It is
installed only on the version it was written for (:data:`FOR_VERSION`, the pin in
``shared/pyproject.toml``); ``shared/tests/test_library_guards.py`` fails when the pin moves, so
whoever upgrades checks whether the release fixed it (then this module goes) or not (then
:data:`FOR_VERSION` moves too).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

#: The pyiceberg version this fix was written and measured against.
FOR_VERSION = "0.12.0"
#: Where a transaction keeps its cached metadata (an instance attribute; pyiceberg has none).
_CACHE = "_data_platform_metadata_cache"

_lock = threading.Lock()
_installed = False
#: pyiceberg's own ``Transaction.table_metadata`` (set by :func:`install`; tests compare with it).
_pyiceberg_property: property | None = None


def install() -> bool:
    """Install the cached ``Transaction.table_metadata`` (idempotent; called by
    ``shared.iceberg.open_catalog``, the one place the platform opens a catalog). Returns whether
    it is installed: not on another pyiceberg version than :data:`FOR_VERSION` (logged)."""
    global _installed, _pyiceberg_property
    import pyiceberg
    from pyiceberg.table import Transaction

    with _lock:
        if _installed:
            return True
        if pyiceberg.__version__ != FOR_VERSION:
            log.warning(
                "pyiceberg %s is not %s: its Transaction.table_metadata is left as it is "
                "(shared.pyiceberg_fixes)",
                pyiceberg.__version__,
                FOR_VERSION,
            )
            return False
        _pyiceberg_property = Transaction.table_metadata
        uncached = _pyiceberg_property.fget

        def table_metadata(self: Any) -> Any:
            base, updates = self._table.metadata, self._updates
            cached = self.__dict__.get(_CACHE)
            if cached is not None and cached[0] is base and cached[1] is updates:
                return cached[2]
            metadata = uncached(self)
            self.__dict__[_CACHE] = (base, updates, metadata)
            return metadata

        table_metadata.__doc__ = uncached.__doc__
        Transaction.table_metadata = property(table_metadata)  # type: ignore[method-assign]
        _installed = True
        return True
