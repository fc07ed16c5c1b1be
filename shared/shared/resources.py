"""Dagster resources every location uses.

Each resource reads :func:`shared.settings.load_settings` when a run uses it, not when the
definitions are imported: loading a code location never touches the network or the disk, and a
test changes the environment (``DATA_PLATFORM_HOME``, ``DATA_PLATFORM_ENV``) before a run rather
than patching a module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from shared.settings import Settings, load_settings

# pyarrow, pyiceberg, polars, fsspec and the run-time modules that use them are imported inside
# the functions that need them: loading the definitions must stay cheap (docs/benchmarks.md).
if TYPE_CHECKING:
    import fsspec
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

    from shared import iceberg


class IcebergCatalogResource(ConfigurableResource):
    """The lakehouse's Iceberg catalog: SQLite SQL catalog locally, the REST catalog in prod.

    ``home`` overrides ``DATA_PLATFORM_HOME`` (tests and the CLI use it); leave it unset in
    deployments so the environment decides.
    """

    home: str | None = None

    _catalog: Catalog | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        return load_settings(home=self.home)

    def catalog(self) -> Catalog:
        from shared import iceberg

        if self._catalog is None:
            self._catalog = iceberg.open_catalog(self.settings())
        return self._catalog

    def load_table(self, identifier: str) -> Table:
        return self.catalog().load_table(identifier)

    def write(
        self,
        identifier: str,
        data: pa.Table | Callable[[], Iterable[pa.RecordBatch | pa.Table]],
        **kwargs: Any,
    ) -> iceberg.TableWriteResult:
        """Write through :func:`shared.iceberg.write_table` (one atomic commit, retried)."""
        from shared import iceberg

        return iceberg.write_table(self.catalog(), identifier, data, **kwargs)

    def read(
        self,
        identifier: str,
        *,
        columns: Sequence[str] | None = None,
        row_filter: BooleanExpression | str | None = None,
    ) -> pa.Table:
        """Read with column projection and row filter pushed down to the scan."""
        from shared import iceberg

        return iceberg.read_table(
            self.catalog(), identifier, columns=columns, row_filter=row_filter
        )


class ObjectStoreResource(ConfigurableResource):
    """Object storage: a local folder in local mode, Garage through s3fs in prod.

    Paths given to :meth:`path` are relative to the store's root (the bucket in prod).
    """

    home: str | None = None

    def settings(self) -> Settings:
        return load_settings(home=self.home)

    def filesystem(self) -> fsspec.AbstractFileSystem:
        return filesystem_for(self.settings())

    def path(self, relative: str) -> str:
        return store_path(self.settings(), relative)


class ObjectStoreError(RuntimeError):
    """Object storage could not be reached or answered an error; names the endpoint."""


@contextmanager
def object_store_errors(settings: Settings, what: str) -> Iterator[None]:
    """Turn any failure of ``what`` into one :class:`ObjectStoreError` naming the endpoint.

    The S3 client has already retried (bounded, with backoff) by the time an error reaches here.
    """
    try:
        yield
    except ObjectStoreError:
        raise
    except Exception as exc:
        where = settings.object_store.endpoint or str(settings.object_store.local_root)
        raise ObjectStoreError(f"object store at {where}: {what} failed: {exc}") from exc


def filesystem_for(settings: Settings) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem of the object store (s3fs configured for Garage in prod)."""
    import fsspec

    if settings.is_local:
        settings.object_store.local_root.mkdir(parents=True, exist_ok=True)
        return fsspec.filesystem("file")
    store = settings.object_store
    import s3fs  # imported here: local mode and definitions loading never need it

    return s3fs.S3FileSystem(
        key=store.access_key_id.reveal() if store.access_key_id else None,
        secret=store.secret_access_key.reveal() if store.secret_access_key else None,
        client_kwargs={"endpoint_url": store.endpoint, "region_name": store.region},
        # Garage serves path-style URLs only (no per-bucket DNS names).
        # Bounded retries with backoff on 5xx, throttling and connection errors, then a failure
        # that object_store_errors() turns into a message naming the endpoint.
        config_kwargs={
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 4, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 30,
        },
    )


def store_path(settings: Settings, relative: str) -> str:
    relative = relative.lstrip("/")
    if settings.is_local:
        return str(settings.object_store.local_root / relative)
    return f"{settings.object_store.bucket}/{relative}"
